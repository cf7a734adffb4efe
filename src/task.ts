/**
 * Tasks: how a coroutine's starter joins it, cancels it or awaits it.
 *
 * @module
 */

import { CANCELLED, type Coroutine, DONE, OK } from "./_coroutine.ts";
import {
  Op,
  type Operation,
  type OperationOptions,
  PENDING,
} from "./effects.ts";
import { CancelledError, TimeoutError } from "./errors.ts";

/**
 * A handle on a running coroutine: join it, cancel it, or await it from
 * outside the scheduler. Whoever holds it may: its parent, or another
 * coroutine it was handed to (a session table's entry, cancelled to kick
 * a client). The parent alone owns it: the child is cancelled when the
 * parent ends, and its error nobody joined fails the parent.
 *
 * @example
 * ```ts
 * import { delay, run, spawn } from "@corio/corio";
 *
 * const sum = await run((async function* () {
 *   const a = yield* spawn((function* () { yield* delay(5); return 2; })());
 *   const b = yield* spawn((function* () { yield* delay(1); return 3; })());
 *   return (yield* a.join()) + (yield* b.join());
 * })());
 * console.log(sum); // 5
 * ```
 */
export interface Task<T> {
  /**
   * Waits for the task to end and returns its result.
   *
   * Errors: the task's own error; {@linkcode CancelledError} if it was
   * cancelled; `TimeoutError` at the deadline (the task runs on).
   */
  join(options?: OperationOptions): Operation<T>;
  /**
   * Cancels the task at its current wait: `finally` blocks run, its
   * children are cancelled and what it owns is closed. Idempotent: once
   * cancelled, its waits in `finally` blocks are cleanup, which a second
   * cancel does not cut short. A wait in a `finally` the coroutine entered
   * before the cancel, on an error, is its current wait like any other:
   * the cancel ends it and skips the rest of that block, and the error it
   * was unwinding with is lost (`join()` throws `CancelledError`).
   *
   * The coroutine ends by `return()` at its wait, which no `catch` sees.
   * Two things in its own code can undo that, as in any JavaScript
   * generator: a `finally` that exits with `return`, `break` or `continue`
   * (Deno's lint rule `no-unsafe-finally` flags it), and a wait in the
   * `finally` of a helper it runs with `yield*`: once such a helper has
   * waited there, its end reads to its caller as a normal return, and the
   * caller runs on. Cleanup that waits belongs in the coroutine's own
   * `finally` (the function given to `spawn()`, `serve()`, `run()`), or in
   * a helper run as a child (`yield* (yield* spawn(helper())).join()`);
   * a helper's synchronous `finally` is fine.
   *
   * A wait that ended in the same turn as the cancel, before the coroutine
   * ran again, counts as ended in an `async function*` (its result, a
   * message taken from an inbox say, is handed over and the cancel met at
   * the next operation), and as not yet ended in a `function*` (the cancel
   * is met at it, and the message stays queued).
   */
  cancel(): void;
  /** Settles when the task has ended; for code outside coroutines. */
  readonly finished: Promise<T>;
  /** True once the task, its children and its resources are done. */
  readonly isDone: boolean;
}

export class TaskHandle<T> implements Task<T> {
  #co: Coroutine;
  constructor(co: Coroutine) {
    this.#co = co;
  }
  join(options?: OperationOptions): Operation<T> {
    return new JoinOp<T>(this.#co, options);
  }
  cancel(): void {
    this.#co.scheduler._cancel(this.#co);
  }
  get finished(): Promise<T> {
    return this.#co.scheduler._promise(this.#co) as Promise<T>;
  }
  get isDone(): boolean {
    return this.#co.state === DONE;
  }
}

class JoinOp<T> extends Op<T> {
  get op(): string {
    return "join";
  }
  #isSelfJoin = false;
  constructor(readonly target: Coroutine, options?: OperationOptions) {
    super(options);
    // Any number of coroutines may wait in one join: each is a joiner.
    this.effect.isShareable = true;
  }
  poll(): T | typeof PENDING {
    if (this.#isSelfJoin) {
      this.#isSelfJoin = false;
      throw new TypeError(
        "Cannot join task: it is the coroutine that joins it, which would wait for ever",
      );
    }
    const target = this.target;
    if (target.state !== DONE) return PENDING;
    if (target.outcome === OK) return target.result as T;
    target.isObserved = true;
    if (target.outcome === CANCELLED) throw new CancelledError();
    throw target.result;
  }
  park(co: Coroutine): boolean {
    if (this.target.state === DONE) return true;
    if (co === this.target) {
      this.#isSelfJoin = true; // poll throws it into the coroutine
      return true;
    }
    (this.target.joiners ??= []).push(co);
    return false;
  }
  unpark(co: Coroutine): void {
    const joiners = this.target.joiners;
    const index = joiners ? joiners.indexOf(co) : -1;
    if (index >= 0) joiners!.splice(index, 1);
  }
  timedOut(): T {
    throw new TimeoutError("join", this.effect.timeoutThatFired);
  }
  override get throwsResult(): boolean {
    return true;
  }
}
