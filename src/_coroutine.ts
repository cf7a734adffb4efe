// The scheduler's record of one coroutine, and the states it moves through.
// Internal: shared by the scheduler, tasks and operations.

import { AsyncLocalStorage } from "node:async_hooks";
import type { Coroutine as Generator, OpEffect } from "./effects.ts";
import { CancelledError } from "./errors.ts";
import type { Scheduler } from "./scheduler.ts";
import type { Task } from "./task.ts";
import type { DeadlineEntry } from "./timers.ts";
import { withBit } from "./_bits.ts";

/**
 * Something a coroutine owns and closes when it ends (its connection).
 *
 * @example Anything with close() can be owned by a coroutine
 * ```ts
 * import { delay, type Resource, Scheduler } from "@corio/corio";
 *
 * let isClosed = false;
 * const handle: Resource = { close: () => isClosed = true };
 * const scheduler = new Scheduler();
 * await scheduler.spawn((function* () { yield* delay(1); })(), { owns: [handle] }).finished;
 * console.log(isClosed); // true
 * ```
 */
export interface Resource {
  /**
   * True once closed with nothing of it pending in the runtime: its owner
   * may forget it before it ends (corio's own resources say so).
   */
  readonly isReleased?: boolean;
  /**
   * Closes it. Called once it may have been closed already: be idempotent,
   * or throw `Deno.errors.BadResource` then, as Deno's own resources do
   * (a `Deno.Listener`, a `Deno.FsFile`); that error is ignored.
   */
  close(): void;
  /** Settles once nothing of it is pending in the runtime any more. */
  readonly settled?: Promise<void>;
}

/** Told when a coroutine is done, with its outcome. */
export interface SettleListener {
  onSettled(isOk: boolean, result: unknown): void;
  /**
   * Told, for a top-level coroutine, of an error of a child of it (or of a
   * descendant) that failed under a cancelled parent; without it, the
   * scheduler's `onError` is.
   */
  onChildError?(error: unknown): void;
}

/**
 * How many coroutines have a cancel requested while they ran that they
 * have not met yet (`Coroutine.cancelRequested`). While none have, an
 * operation starting in an `async function*` need not look for one: the
 * look (`AsyncLocalStorage.getStore()`) costs more than the operation.
 */
export const pendingCancels = { count: 0 };

export const NEXT = 0;
export const RETURN = 1;
export const THROW = 2;
export type Mode = typeof NEXT | typeof RETURN | typeof THROW;

export const STARTING = 0;
export const RUNNING = 1;
export const PARKED = 2;
/** Yielded to the host's event loop by `delay(0)`; resumed a turn later. */
export const HOST_TURN = 3;
export const ENDING = 4;
export const DONE = 5;

// Each closure of a generator function gives its generator objects a
// hidden class of their own, so a scheduler that steps coroutines made by
// many closures (`spawn((function* () {...})())` in a loop) would load
// `gen.next` megamorphically on every step and call it through a generic
// path. The prototype's own `next`, called on the object, is one known
// function. Measured (B7's 10k looping delays, each loop its own closure,
// 5 alternated runs): CPU per fire 1.87-2.59 -> 1.33-1.90 µs. An
// `async function*` spends its step in promises: the same change measured
// nothing there (4 alternated runs), so it is stepped as before.
/** `%GeneratorPrototype%.next`, what every `function*` object's `next` is. */
export const generatorNext: (
  this: globalThis.Generator<unknown, unknown, unknown>,
  input: unknown,
) => IteratorResult<unknown, unknown> =
  Object.getPrototypeOf(function* () {}).prototype.next;

/** `Coroutine.kind`: a `function*` object, stepped with `generatorNext`. */
export const GENERATOR = 0;
/** `Coroutine.kind`: any other iterator, stepped with its own `next`. */
export const ITERATOR = 1;
/** `Coroutine.kind`: an async iterator (`async function*`), stepped by promise. */
export const ASYNC = 2;
/** How the scheduler steps a coroutine's generator. */
export type Kind = typeof GENERATOR | typeof ITERATOR | typeof ASYNC;

/**
 * The coroutine whose code is running. The scheduler enters it when it
 * steps an `async function*`, and V8 carries it across every `await` in
 * that generator, so an operation can park its coroutine without yielding
 * to the scheduler (see `Scheduler._parkHere`). Reading it costs ~6 ns.
 */
export const running: AsyncLocalStorage<Coroutine> = new AsyncLocalStorage();

export const OK = 0;
export const FAILED = 1;
export const CANCELLED = 2;
// The other bits of `Coroutine`'s ending field.
const OUTCOME = 3;
const IS_CANCELLED = 4;
const IS_OBSERVED = 8;

/** Resolves or rejects a coroutine's promise. */
interface Settle {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** What ties a coroutine to others, kept apart: few coroutines have any. */
class Ties {
  children: Set<Coroutine> | null = null;
  failedChildren: Coroutine[] | null = null;
  joiners: Coroutine[] | null = null;
  settle: Settle | null = null;
  promise: Promise<unknown> | null = null;
  task: Task<unknown> | null = null;
  onAbort: (() => void) | null = null;
}

/**
 * The scheduler's record of one coroutine. Internal: users hold a
 * {@linkcode Task}. Operations receive it in `park()` and call `wake()`.
 */
export class Coroutine implements DeadlineEntry {
  // Declared in the order V8 lays the record out: what every wait and
  // wake-up reads first, so a message touches as few cache lines of it as
  // it can (at 1000 connections the records no longer fit in the cache).
  state = STARTING;
  effect: OpEffect<unknown> | null = null;
  /**
   * The operation an `async function*` awaits without having yielded it
   * (parked in place), and how to resume it; null otherwise.
   */
  heldBy: OpEffect<unknown> | null = null;
  resolveHeld: ((r: IteratorResult<unknown, unknown>) => void) | null = null;
  readonly scheduler: Scheduler;
  cancelRequested = false;
  heapIndex = -1;
  /**
   * The deadline of its last wait that had one (only a wait with a
   * deadline writes it: a parked coroutine's is current when its effect
   * `hasDeadline`). It may be later than the one it is queued at (see
   * `Scheduler.#unpark`).
   */
  deadline = Infinity;
  /**
   * Its place among waits with the same deadline: taken when that wait
   * began, kept when its entry is moved there later (see `#onTimeout`), so
   * equal deadlines still wake first come, first served.
   */
  deadlineOrder = 0;
  /** The scheduler's epoch when it last parked (see `_compact`). */
  parkedSince = 0;
  mode: Mode = NEXT;
  input: unknown = undefined;
  /** How the scheduler steps `gen`: {@linkcode GENERATOR} and the rest. */
  readonly kind: Kind;
  readonly gen: Generator<unknown>;
  readonly parent: Coroutine | null;
  // How it ended, read and set through the accessors below: the outcome
  // (OK...) in the low bits, then IS_CANCELLED and IS_OBSERVED. Three fields
  // would cost 16 B more per record.
  #ending = OK;
  result: unknown = undefined;
  /** What it closes when it ends: one resource as is, more in an array. */
  owned: Resource | Resource[] | null = null;
  /** Told when the coroutine is done: cheaper than a promise per task. */
  listener: SettleListener | null = null;
  // Made on first use: most coroutines (a server's idle handlers) have no
  // children, joiners, task handle, promise or signal. Seven null fields
  // less per record: 48 B per idle connection (`deno task heap`).
  // (Not a private accessor for making it: one would cost every record a
  // brand field.)
  #ties: Ties | null = null;
  /**
   * `generatorNext`, read from the prototype, where it is a constant that
   * TurboFan folds: `co.stepNext.call(gen, input)` then calls the builtin
   * directly. Called as the module's `generatorNext`, a value it cannot
   * fold, every step went through the generic call builtin. Measured
   * (`deno task instructions`, old and new tree): a `function*` echo
   * message 3,603 -> 3,409 instructions, a B7 fire 1,886 -> 1,847.
   */
  declare readonly stepNext: typeof generatorNext;
  /** Set when a cancel reached it: it ends `CANCELLED` unless it failed. */
  get isCancelled(): boolean {
    return (this.#ending & IS_CANCELLED) !== 0;
  }
  set isCancelled(value: boolean) {
    this.#ending = withBit(this.#ending, IS_CANCELLED, value);
  }
  /** OK, FAILED or CANCELLED, once it is ending. */
  get outcome(): number {
    return this.#ending & OUTCOME;
  }
  set outcome(value: number) {
    this.#ending = (this.#ending & ~OUTCOME) | value;
  }
  /** Set once someone saw how it ended (a failure is then not unhandled). */
  get isObserved(): boolean {
    return (this.#ending & IS_OBSERVED) !== 0;
  }
  set isObserved(value: boolean) {
    this.#ending = withBit(this.#ending, IS_OBSERVED, value);
  }

  /** Its children, while they run (null when it has none yet). */
  get children(): Set<Coroutine> | null {
    return this.#ties === null ? null : this.#ties.children;
  }
  set children(value: Set<Coroutine> | null) {
    (this.#ties ??= new Ties()).children = value;
  }
  /** Children that failed, for `leaveParent` to report if no one saw it. */
  get failedChildren(): Coroutine[] | null {
    return this.#ties === null ? null : this.#ties.failedChildren;
  }
  set failedChildren(value: Coroutine[] | null) {
    (this.#ties ??= new Ties()).failedChildren = value;
  }
  /** Coroutines parked in `join` on it. */
  get joiners(): Coroutine[] | null {
    return this.#ties === null ? null : this.#ties.joiners;
  }
  set joiners(value: Coroutine[] | null) {
    (this.#ties ??= new Ties()).joiners = value;
  }
  /** Settles `promise`. */
  get settle(): Settle | null {
    return this.#ties === null ? null : this.#ties.settle;
  }
  set settle(value: Settle | null) {
    (this.#ties ??= new Ties()).settle = value;
  }
  /** The promise behind `finished`, made when first asked for. */
  get promise(): Promise<unknown> | null {
    return this.#ties === null ? null : this.#ties.promise;
  }
  set promise(value: Promise<unknown> | null) {
    (this.#ties ??= new Ties()).promise = value;
  }
  /** Its task handle, made when first asked for. */
  get task(): Task<unknown> | null {
    return this.#ties === null ? null : this.#ties.task;
  }
  set task(value: Task<unknown> | null) {
    (this.#ties ??= new Ties()).task = value;
  }
  /**
   * Made once, and only when a signal needs it. An async step's callbacks
   * are shared by all coroutines (see `stepAsync`).
   */
  get onAbort(): () => void {
    return (this.#ties ??= new Ties()).onAbort ??= () =>
      this.scheduler._abort(this);
  }

  constructor(
    gen: Generator<unknown>,
    scheduler: Scheduler,
    parent: Coroutine | null,
  ) {
    this.scheduler = scheduler;
    this.kind = typeof (gen as AsyncGenerator)[Symbol.asyncIterator] ===
        "function"
      ? ASYNC
      : gen.next === generatorNext
      ? GENERATOR
      : ITERATOR;
    this.gen = gen;
    this.parent = parent;
  }

  /** Resumes the coroutine if it is parked: its operation polls again. */
  wake(): void {
    if (this.effect !== null) this.scheduler._wake(this);
  }

  /** Makes `resource` close when this coroutine ends. */
  adopt(resource: Resource): void {
    // A handler owns one connection: held as is, it costs no array (an
    // Array and its elements, 56 B per connection in a heap snapshot).
    const owned = this.owned;
    if (owned === null || isReleased(owned)) this.owned = resource;
    else if (Array.isArray(owned)) {
      owned.push(resource);
      // A coroutine that connects and closes in a loop (a client, a health
      // check) would hold every connection it closed until it ends (1.6 KB
      // of heap each): drop those closed and settled whenever the list
      // reaches a power of two, at most a pass per doubling.
      const n = owned.length;
      if (n >= 8 && (n & (n - 1)) === 0) dropReleased(owned);
    } else this.owned = [owned, resource];
  }

  /** Forgets `resource`: no longer closed when this coroutine ends. */
  disown(resource: Resource): void {
    const owned = this.owned;
    if (owned === resource) this.owned = null;
    else if (Array.isArray(owned)) {
      const index = owned.indexOf(resource);
      if (index >= 0) owned.splice(index, 1);
    }
  }

  /** True once the coroutine and its children have ended. */
  get isDone(): boolean {
    return this.state === DONE;
  }

  // ---- ending: the scheduler calls these in this order

  /**
   * Closes what it owns, reporting errors from `close()` to `onError`.
   * Returns what is still settling in the runtime, or null.
   */
  closeOwned(onError: (error: unknown) => void): Promise<void>[] | null {
    const owned = this.owned;
    if (owned === null) return null;
    let pending: Promise<void>[] | null = null;
    for (const resource of Array.isArray(owned) ? owned : [owned]) {
      try {
        resource.close();
      } catch (error) {
        // Closed already, by its own code: nothing to report.
        if (!(error instanceof Deno.errors.BadResource)) onError(error);
      }
      if (resource.settled) (pending ??= []).push(resource.settled);
    }
    return pending;
  }

  /**
   * True while a coroutine waits in `join()` for it (a join that timed out
   * or was aborted has left the list, which stays behind empty).
   */
  get hasJoiners(): boolean {
    const joiners = this.joiners;
    return joiners !== null && joiners.length > 0;
  }

  /**
   * Once done: takes an unobserved child's failure as its own outcome, and
   * leaves its parent's children. Returns the parent when it was ending
   * and waited only for this child, to be completed now. When it was
   * cancelled, its children's unobserved failures go to `report` (but for
   * a `CancelledError` a child rethrew); when it failed, its error stands
   * for theirs, unless it was a `CancelledError` it rethrew.
   */
  leaveParent(
    report: (error: unknown, parent: Coroutine) => void,
  ): Coroutine | null {
    if (this.failedChildren !== null) {
      for (const child of this.failedChildren) {
        if (child.isObserved) continue;
        child.isObserved = true;
        const error = child.result;
        const isFailed = this.outcome === FAILED;
        if (
          this.outcome === OK ||
          isFailed && this.result instanceof CancelledError
        ) {
          // Nothing to say, or only a cancel it rethrew: the error is news.
          this.outcome = FAILED;
          this.result = error;
        } else if (!isFailed && !(error instanceof CancelledError)) {
          report(error, this); // cancelled: nobody else will see it
        }
        // Failed with an error of its own: that one stands for the family.
      }
    }
    const parent = this.parent;
    if (parent === null) return null;
    parent.children!.delete(this);
    if (this.outcome === FAILED && !this.hasJoiners) {
      (parent.failedChildren ??= []).push(this);
    }
    return parent.state === ENDING && parent.children!.size === 0
      ? parent
      : null;
  }

  /**
   * Tells whoever waits for it (joiners, a listener, `finished`) how it
   * ended. Returns false when it failed and no one will ever see the error.
   */
  notifyWaiters(): boolean {
    if (this.hasJoiners) {
      if (this.outcome !== OK) this.isObserved = true;
      for (const joiner of this.joiners!.splice(0)) joiner.wake();
    }
    if (this.listener !== null) {
      this.isObserved = true;
      this.listener.onSettled(
        this.outcome === OK,
        this.outcome === CANCELLED ? new CancelledError() : this.result,
      );
    }
    if (this.promise !== null) this.resolvePromise();
    else if (this.parent === null && this.outcome === FAILED) {
      return this.isObserved;
    }
    return true;
  }

  /** Settles the promise behind `finished` by the outcome. */
  resolvePromise(): void {
    if (this.outcome === OK) this.settle!.resolve(this.result);
    else if (this.outcome === FAILED) this.settle!.reject(this.result);
    else this.settle!.reject(new CancelledError());
  }
}

Object.defineProperty(Coroutine.prototype, "stepNext", {
  value: generatorNext,
});

/** True for a resource closed that the runtime holds nothing of. */
function isReleased(resource: Resource | Resource[]): boolean {
  return (resource as { isReleased?: boolean }).isReleased === true;
}

/** Removes the released resources from `owned`, in place. */
function dropReleased(owned: Resource[]): void {
  let kept = 0;
  for (const resource of owned) {
    if (!isReleased(resource)) owned[kept++] = resource;
  }
  owned.length = kept;
}
