/**
 * The effect vocabulary: what a coroutine yields to the scheduler, and the
 * {@linkcode Operation} shape that lets `yield*` return a typed result.
 *
 * An operation is (a)sync iterable: `yield* op` takes its
 * {@linkcode OpEffect} as the iterator and calls its `next()`; when the
 * result is already at hand (bytes buffered, a task finished) it returns
 * at once. Otherwise, in a `function*`, it yields the `OpEffect` as the
 * effect: the scheduler parks the coroutine on it, arms its deadline, and
 * later resumes the generator with one of the {@linkcode Resume} signals;
 * `next()` then polls the operation again, or turns a timeout or abort
 * into the error this operation documents.
 *
 * In an `async function*`, `next()` parks the coroutine in place instead
 * and returns a promise of the result, which `yield*` awaits: one microtask
 * turn per operation instead of three for a yield to the scheduler and
 * back. The scheduler finds the running coroutine through an
 * `AsyncLocalStorage` it enters when it steps the generator, which V8
 * carries across every `await` in it, plain awaits included. Cancelling a
 * coroutine parked in place resolves that promise with a cancel effect,
 * which the coroutine yields, so it still ends by `gen.return()` at its
 * wait. Having `[Symbol.asyncIterator]` matters for both: without it,
 * `yield*` inside an `async function*` wraps the iterator in an
 * async-from-sync adapter (5 turns, measured on Deno 2.9.6).
 *
 * @module
 */

import { pendingCancels, running } from "./_coroutine.ts";
import type { Coroutine as CoroutineRecord } from "./scheduler.ts";
import { withBit } from "./_bits.ts";

/** Why the scheduler resumes a parked operation. */
export type Resume = typeof RESUME | typeof TIMED_OUT | typeof ABORTED;

// The sentinels are frozen objects typed as unique symbols (so `=== PENDING`
// still narrows a union). V8 compiles `x === OBJECT` to one pointer compare
// when x has only ever been an object, null or undefined; a Symbol against
// undefined or a Uint8Array is a call to its generic StrictEqual instead, on
// every step of every operation. Measured (`deno task instructions`): an
// echo message in a function* handler 4,069-4,865 -> 3,935 instructions, in
// an async function* 5,945-6,055 -> 5,394.
function sentinel(name: string): never {
  return Object.freeze({ sentinel: name }) as never;
}

/** The awaited event happened: poll again. */
export const RESUME: unique symbol = sentinel("corio.resume");
/** The operation's deadline passed. */
export const TIMED_OUT: unique symbol = sentinel("corio.timedOut");
/** The operation's `signal` was aborted. */
export const ABORTED: unique symbol = sentinel("corio.aborted");
/** Returned by `poll()` when the operation must wait. */
export const PENDING: unique symbol = sentinel("corio.pending");

/**
 * Options every blocking operation takes. `timeout` is relative,
 * `deadline` absolute (on the scheduler's clock); when both are given the
 * earlier one wins. `Infinity` disables.
 *
 * @example A relative timeout and an absolute deadline: the earlier wins
 * ```ts
 * import { Inbox, type OperationOptions, run, TimeoutError } from "@corio/corio";
 * import { VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock();
 * const inbox = new Inbox<string>();
 * const options: OperationOptions = { timeout: 5000, deadline: 1000 };
 * const error = await run((function* () {
 *   try {
 *     yield* inbox.recv(options);
 *   } catch (error) {
 *     return error;
 *   }
 * })(), { clock });
 * console.log(error instanceof TimeoutError, clock.now()); // true 1000
 * ```
 */
export interface OperationOptions {
  /**
   * Milliseconds the whole operation may take.
   * @default {Infinity} (or the connection's default, e.g. `recvTimeout`)
   */
  timeout?: number;
  /**
   * Absolute time (scheduler clock, ms) by which the operation must finish:
   * `(yield* now()) + ms`. The system clock is `performance.now()`, not
   * `Date.now()`: a deadline made from `Date.now()` lies decades ahead
   * and never comes.
   * @default {Infinity}
   */
  deadline?: number;
  /**
   * Aborting it ends the operation: the signal's `reason` is thrown at its
   * `yield*`, unchanged.
   */
  signal?: AbortSignal;
}

/**
 * What a coroutine yields: an operation waiting for something. Users never
 * build one; they `yield*` operations, and the type shows up only in
 * {@linkcode Coroutine} signatures.
 *
 * @example
 * ```ts
 * import { delay, type Effect } from "@corio/corio";
 *
 * function* sleepy(): Generator<Effect, string, unknown> {
 *   yield* delay(10);
 *   return "awake";
 * }
 * ```
 */
export interface Effect {
  /** The operation's name, as it appears in errors (`"recvLine"`). */
  readonly op: string;
}

/**
 * A typed operation: `const x = yield* op` gives `x` the type `T`, in a
 * `function*` and in an `async function*` alike. A helper of your own that
 * runs operations is a generator, typed `Generator<Effect, T, unknown>`
 * (see {@linkcode Coroutine}), not an `Operation<T>`.
 *
 * One coroutine at a time runs an operation: a second `yield*` of the same
 * object while the first still waits in it throws `TypeError` (a wait keeps
 * its waiter there; the second would take the first one's place). Call
 * `conn.recv()` in each coroutine instead of sharing what it returned.
 * `delay()` and `task.join()` operations are the exception: any number of
 * coroutines may wait in one.
 *
 * @example
 * ```ts
 * import { delay, type Operation, run } from "@corio/corio";
 *
 * function* twice(op: () => Operation<void>): Generator<import("@corio/corio").Effect, void, unknown> {
 *   yield* op();
 *   yield* op();
 * }
 * await run(twice(() => delay(1)));
 * ```
 */
export interface Operation<T> {
  /** Runs the operation inside a `function*` coroutine. */
  [Symbol.iterator](): Iterator<Effect, T, unknown>;
  /** Runs the operation inside an `async function*` coroutine. */
  [Symbol.asyncIterator](): AsyncIterator<Effect, T, unknown>;
}

/**
 * A coroutine: a generator object that yields effects (through `yield*`
 * on operations) and returns `T`. `async function*` is the documented form;
 * `function*` is accepted and cheaper when the body never awaits.
 *
 * A helper that coroutines run with `yield*` is typed by its form, not as
 * `Coroutine<T>` (a union a `function*` cannot `yield*`):
 * `Generator<Effect, T, unknown>` serves both forms,
 * `AsyncGenerator<Effect, T, unknown>` only `async function*` callers.
 *
 * @example
 * ```ts
 * import { type Coroutine, delay, run } from "@corio/corio";
 *
 * async function* tick(): Coroutine<number> {
 *   yield* delay(1);
 *   return 1;
 * }
 * console.log(await run(tick())); // 1
 * ```
 */
export type Coroutine<T = unknown> =
  | Generator<Effect, T, unknown>
  | AsyncGenerator<Effect, T, unknown>;

/** The result of every operation that gives nothing (send, delay). */
export const DONE_VOID: IteratorResult<Effect, undefined> = Object.freeze({
  done: true,
  value: undefined,
});

// The bits of `OpEffect`'s flags.
const EXTERNAL = 1;
const IMMEDIATE = 2;
const REPARK = 4;
const HAS_DEADLINE = 8;
const SHAREABLE = 16;
const SETTLES_LATE = 32;
const YIELDS_TO_HOST = 64;

// `OpEffect.run`, what it is doing: nothing; handed out by a `Connection`,
// not yet run; run by `yield*` in a `function*`, or in an `async function*`.
const IDLE = 0;
const HANDED_OUT = 1;
const SYNC_RUN = 2;
const ASYNC_RUN = 3;

/**
 * Refuses a second run of an operation that is running, unless coroutines
 * may share it. Out of `start()`, which calls it only then: written inline,
 * the check and its message made an echo message in a `function*` handler
 * cost 3,671-3,712 instructions against 3,636-3,664 this way, and 3,603
 * before the check (`deno task instructions echo:corio-sync`).
 */
function checkSecondRun(effect: OpEffect<unknown>): void {
  if (effect.isShareable) return;
  const op = effect.op;
  throw new TypeError(
    `Cannot run ${op}: the operation is already running in another coroutine; make one for each (call ${op}() in each coroutine)`,
  );
}

/** The relative timeout `options` give, `undefined` for none. */
function effectiveTimeout(
  options: OperationOptions | undefined,
  defaultTimeout: number | undefined,
): number | undefined {
  const timeout = options?.timeout ??
    (options?.deadline === undefined ? defaultTimeout : undefined);
  return timeout === Infinity ? undefined : timeout;
}

/**
 * What the scheduler and `yield*` see of an operation, and what a waiting
 * coroutine yields: its options, the state of its current run, and the
 * iterator protocol. Every operation has one, all of this one class, so the
 * code every operation shares (each step, the scheduler's park and resume)
 * reads one hidden class. With that state on the operations themselves, a
 * class per kind, a program that had waited on more than four kinds of
 * operation made each such read a megamorphic lookup: an echo message in a
 * `function*` handler took 8,056 instructions after ten kinds against
 * 3,965 before any (`deno task instructions echo:corio-sync-mixed
 * echo:corio-sync`); with this class, 5,073 and 3,822. What differs
 * between kinds (`poll`, `park`, `unpark`) is the `owner`'s.
 */
export class OpEffect<T> implements Effect, Iterator<Effect, T, unknown> {
  // The fields every message reads come first. An operation without a
  // deadline reads no double (NaN, Infinity: V8 keeps a double field in a
  // box of its own, one more load): parking reads `hasDeadline`, and a run
  // starts by clearing `activeDeadline` to `undefined`, not NaN.
  /** The operation this is the effect of. */
  readonly owner: Op<T>;
  /**
   * IDLE, HANDED_OUT, SYNC_RUN or ASYNC_RUN: a small integer, not bits of
   * `#flags`, so that a run costs one store at each end. A run is from
   * `yield*` taking its iterator to a result, an error or a cancel.
   */
  run = IDLE;
  // What it is, fixed when it is made, a bit each (EXTERNAL...), read
  // through the accessors below: five boolean fields would cost 32 B more
  // per operation, and a connection keeps its receive. (Its run state as
  // bits too cost each echo message ~90 instructions more.)
  #flags = 0;
  /** Abort signal from the options. */
  readonly signal: AbortSignal | undefined;
  /** The options' `timeout` as given, `undefined` for none (`Op.hasOptions`). */
  readonly givenTimeout: number | undefined;
  /** The options' `deadline`, `undefined` when they gave none. */
  readonly givenDeadline: number | undefined;
  /** The default it was made with (the connection's `recvTimeout`...). */
  readonly defaultTimeout: number | undefined;
  /**
   * Absolute deadline of the current run, fixed at its first park;
   * `undefined` before.
   */
  activeDeadline: number | undefined = undefined;
  /** Relative timeout from the options, if any. */
  readonly timeout: number | undefined;
  /** Absolute deadline from the options (Infinity when none). */
  readonly deadline: number;
  /**
   * What a `TimeoutError` of this run names: its relative timeout, or
   * `undefined` when the absolute deadline came first (it wins ties).
   */
  get timeoutThatFired(): number | undefined {
    return this.activeDeadline === this.deadline ? undefined : this.timeout;
  }
  /** True when only the outside world (a socket, a promise) can wake it. */
  get external(): boolean {
    return (this.#flags & EXTERNAL) !== 0;
  }
  set external(value: boolean) {
    this.#flags = withBit(this.#flags, EXTERNAL, value);
  }
  /** True when the scheduler should `perform()` it and resume at once. */
  get immediate(): boolean {
    return (this.#flags & IMMEDIATE) !== 0;
  }
  set immediate(value: boolean) {
    this.#flags = withBit(this.#flags, IMMEDIATE, value);
  }
  /**
   * True when parking it again after a wake-up that found it still pending
   * is harmless (`park()` is idempotent), so the scheduler may move a long
   * wait from in place to a yield (see `Scheduler._compact`).
   */
  get isRepark(): boolean {
    return (this.#flags & REPARK) !== 0;
  }
  set isRepark(value: boolean) {
    this.#flags = withBit(this.#flags, REPARK, value);
  }
  /** True when a timeout or a deadline applies: parking reads the clock. */
  get hasDeadline(): boolean {
    return (this.#flags & HAS_DEADLINE) !== 0;
  }
  /**
   * True from when a `Connection` hands it out, or a run starts, to the end
   * of a run: `Connection.recv()`, `recvLine()` and `send()` hand out again
   * only an idle operation. Not one handed out and not yet run either: two
   * receives taken before either runs are two operations, so the second to
   * wait gets `BusyError`. (One object run by two coroutines at once is
   * refused at `start()`.)
   */
  get isInUse(): boolean {
    return this.run !== IDLE;
  }
  /** Marks it handed out by a `Connection` (see `isInUse`). */
  handOut(): void {
    this.run = HANDED_OUT;
  }
  /**
   * True when coroutines may run it at once: it keeps no state of a run
   * that a second run would overwrite (a delay, a join). Any other
   * operation refuses a second run while one is going on.
   */
  get isShareable(): boolean {
    return (this.#flags & SHAREABLE) !== 0;
  }
  set isShareable(value: boolean) {
    this.#flags = withBit(this.#flags, SHAREABLE, value);
  }
  /**
   * True when its result may be there before it can see it: a promise
   * settled already tells `wait()` a microtask later. A deadline already
   * past when it parks then times it out at the next timer turn, not at
   * once, so `wait(settled, { timeout: 0 })` gives the value.
   */
  get settlesLate(): boolean {
    return (this.#flags & SETTLES_LATE) !== 0;
  }
  set settlesLate(value: boolean) {
    this.#flags = withBit(this.#flags, SETTLES_LATE, value);
  }
  /**
   * True for a delay: over at once (`delay(0)`), it resumes after a turn
   * of the host's event loop, not at once (see `Scheduler.#yieldToHost`).
   */
  get yieldsToHost(): boolean {
    return (this.#flags & YIELDS_TO_HOST) !== 0;
  }
  set yieldsToHost(value: boolean) {
    this.#flags = withBit(this.#flags, YIELDS_TO_HOST, value);
  }

  /**
   * A pending wait is its own `{ done: false, value: this }` (no result
   * object per wait).
   */
  declare readonly done: false;
  get value(): this {
    return this;
  }
  /** The operation's name, as it appears in errors. */
  get op(): string {
    return this.owner.op;
  }

  constructor(
    owner: Op<T>,
    options: OperationOptions | undefined,
    defaultTimeout: number | undefined,
  ) {
    this.owner = owner;
    const timeout = options?.timeout;
    const deadline = options?.deadline ?? Infinity;
    if (timeout !== undefined && !(timeout >= 0)) {
      throw new RangeError(
        `Cannot start operation: timeout must be >= 0, got ${timeout}`,
      );
    }
    if (Number.isNaN(deadline)) {
      throw new RangeError("Cannot start operation: deadline is NaN");
    }
    const effective = effectiveTimeout(options, defaultTimeout);
    if (effective !== undefined || deadline !== Infinity) {
      this.#flags = HAS_DEADLINE;
    }
    this.signal = options?.signal;
    this.givenTimeout = timeout;
    this.givenDeadline = options?.deadline;
    this.defaultTimeout = defaultTimeout;
    this.timeout = effective;
    this.deadline = deadline;
  }

  /**
   * Starts a run (`yield*` took the operation's iterator). An operation
   * keeps the state of its run (a waiter, bytes written so far), so a
   * second coroutine running it at once would take the first one's place
   * and leave it waiting for ever: refused, as a generator refuses a
   * `next()` while it runs.
   */
  start(run: typeof SYNC_RUN | typeof ASYNC_RUN): this {
    if (this.run > HANDED_OUT) checkSecondRun(this);
    this.activeDeadline = undefined;
    this.run = run;
    this.owner.begin();
    return this;
  }

  /** Fixes the run's absolute deadline from the options and the clock. */
  resolveDeadline(now: number): number {
    let active = this.activeDeadline;
    if (active === undefined) {
      const relative = this.timeout === undefined
        ? Infinity
        : now + this.timeout;
      active = relative < this.deadline ? relative : this.deadline;
      this.activeDeadline = active;
    }
    return active;
  }

  /**
   * @internal One step: the result, or `{ done: false, value: this }` when
   * it must wait. The scheduler steps operations it parked in place.
   */
  _step(signal: unknown): IteratorResult<Effect, T> {
    let r: IteratorResult<Effect, T>;
    try {
      r = this._settle(signal);
    } catch (error) {
      this.run = IDLE;
      throw error;
    }
    // `_settle` returns the effect itself exactly when it must wait: a
    // pointer compare, where `r.done` is a load from one of three shapes.
    if (r !== (this as unknown)) this.run = IDLE;
    return r;
  }

  /**
   * @internal `_step` without its bookkeeping. Not a private method: one
   * would cost every operation a brand field (8 B).
   */
  _settle(signal: unknown): IteratorResult<Effect, T> {
    if (signal === TIMED_OUT) {
      const value = this.owner.timedOut();
      if (value === undefined) return DONE_VOID as IteratorResult<Effect, T>;
      return { done: true, value };
    }
    // Aborted already at its start: refused even when its result is at
    // hand (a buffered line, a queued message), as `fetch` refuses an
    // aborted signal, so a handler given `info.signal` stops at shutdown.
    if (
      signal === ABORTED ||
      (signal === undefined && this.signal !== undefined &&
        this.signal.aborted)
    ) {
      // As for a cancel: leave no trace in queues joined by poll().
      this.owner.cancelled();
      throw this.signal!.reason;
    }
    const value = this.owner.poll();
    if (value === PENDING) {
      return this as unknown as IteratorResult<Effect, T>;
    }
    if (value === undefined) return DONE_VOID as IteratorResult<Effect, T>;
    return { done: true, value };
  }

  next(signal?: unknown): IteratorResult<Effect, T> {
    const isAsyncRun = this.run === ASYNC_RUN;
    // Cancelled in a plain `await` since its last operation: this one
    // hands itself to the scheduler, which cancels the coroutine here, even
    // if its result is at hand (buffered bytes, a queued message).
    // Not a join: a child's error is news the cancel must not drop.
    if (
      isAsyncRun && pendingCancels.count > 0 && !this.owner.throwsResult &&
      running.getStore()?.cancelRequested
    ) return this as unknown as IteratorResult<Effect, T>;
    let r: IteratorResult<Effect, T>;
    try {
      r = this._step(signal);
    } catch (error) {
      // A cancel requested while an `async function*` ran (in a plain
      // `await`, say) takes effect at its next operation, before what that
      // operation would throw: a server that cancels a handler closes its
      // connection at once, and the handler is cancelled, not failed by
      // ConnectionClosedError. Waiting hands the operation to the scheduler,
      // which sees the cancel first. A joined child's error is no such
      // consequence: it is delivered (else no one would ever see it).
      if (
        isAsyncRun && !this.owner.throwsResult &&
        running.getStore()?.cancelRequested
      ) {
        return this as unknown as IteratorResult<Effect, T>;
      }
      throw error;
    }
    if (r !== (this as unknown) || !isAsyncRun) return r;
    // In an async function*, park the running coroutine right here and hand
    // `yield*` a promise of the result: one microtask turn per operation
    // instead of the three a yield to the scheduler and back costs.
    const co = running.getStore();
    if (co === undefined) return r;
    return (co.scheduler._parkHere(co, this) ?? r) as IteratorResult<
      Effect,
      T
    >;
  }

  return(value?: unknown): IteratorResult<Effect, T> {
    this.run = IDLE;
    this.owner.cancelled();
    return { done: true, value: value as T };
  }

  throw(error?: unknown): IteratorResult<Effect, T> {
    // The scheduler throws what an immediate operation's `perform` threw.
    this.run = IDLE;
    throw error;
  }
}

Object.defineProperty(OpEffect.prototype, "done", { value: false });

/**
 * The base of every operation. Subclasses implement `poll()` (is the result
 * at hand?), `park()`/`unpark()` (register and forget a waiter) and, where
 * a timeout means something other than an error, `timedOut()`. `yield*`
 * runs the operation's {@linkcode OpEffect}.
 */
export abstract class Op<T> implements Operation<T> {
  abstract readonly op: string;
  /** Its options and run state, as the scheduler sees them. */
  readonly effect: OpEffect<T>;

  constructor(options: OperationOptions | undefined, defaultTimeout?: number) {
    this.effect = new OpEffect(this, options, defaultTimeout);
  }

  /**
   * @internal True when `options` (with `defaultTimeout`) give this
   * operation's timeout, deadline and signal now. An idle operation is
   * reused only then: an options object can change between calls.
   */
  hasOptions(
    options: OperationOptions | undefined,
    defaultTimeout?: number,
  ): boolean {
    // Compared as given, not as the effective timeout they make: working
    // that out again on every call cost an echo message in a function*
    // handler 3,806 instructions against 3,364 now, in an async function*
    // 5,760 against 5,606 (`deno task instructions`), for three fields more
    // per operation (24 B).
    const effect = this.effect;
    return effect.givenTimeout === options?.timeout &&
      effect.givenDeadline === options?.deadline &&
      effect.signal === options?.signal &&
      effect.defaultTimeout === defaultTimeout;
  }

  /** The value if the operation can complete now, else `PENDING`. */
  abstract poll(): T | typeof PENDING;
  /**
   * Starts waiting: arrange for `co.wake()` when worth polling again.
   * Returns true instead if that moment already came between `poll()` and
   * now (a runtime op can settle within the turns an async generator takes
   * to hand the effect over), so no wake-up is lost.
   */
  abstract park(co: CoroutineRecord): boolean;
  /** Stops waiting (timeout, abort, cancel): forget `co`. */
  abstract unpark(co: CoroutineRecord): void;
  /** For immediate operations: act for `co`, then `poll()` gives the result. */
  perform(_co: CoroutineRecord): void {}
  /** Called once per run, before the first poll. */
  begin(): void {}
  /** What a timeout means: by default a {@linkcode TimeoutError}. */
  abstract timedOut(): T;
  /**
   * Called when the coroutine is cancelled while in this operation, or its
   * signal aborts it: undo what `poll()` set up (a place in a queue).
   */
  cancelled(): void {}
  /**
   * True when what `poll()` throws is the result itself (a joined
   * coroutine's error), not a failure of the operation: a pending cancel
   * must not drop it (`OpEffect.next`).
   */
  get throwsResult(): boolean {
    return false;
  }

  [Symbol.iterator](): Iterator<Effect, T, unknown> {
    return this.effect.start(SYNC_RUN);
  }

  [Symbol.asyncIterator](): AsyncIterator<Effect, T, unknown> {
    return this.effect.start(ASYNC_RUN) as unknown as AsyncIterator<
      Effect,
      T,
      unknown
    >;
  }
}
