/**
 * The scheduler: drives generator coroutines, parks them on operations,
 * keeps every deadline in one queue with one armed host timer, cancels
 * them at their current wait, and ends what they own when they end.
 *
 * @module
 */

import {
  ASYNC,
  CANCELLED,
  Coroutine as CoroutineRecord,
  DONE,
  ENDING,
  FAILED,
  GENERATOR,
  HOST_TURN,
  type Mode,
  NEXT,
  OK,
  PARKED,
  pendingCancels,
  type Resource,
  RETURN,
  RUNNING,
  running,
  type SettleListener,
  STARTING,
  THROW,
} from "./_coroutine.ts";
import {
  ABORTED,
  type Coroutine,
  type Effect,
  Op,
  OpEffect,
  RESUME,
  type Resume,
  TIMED_OUT,
} from "./effects.ts";
import { type Task, TaskHandle } from "./task.ts";
import { Alarm, type Clock, systemClock } from "./timers.ts";
import { callOnError } from "./_on_error.ts";
import { hold, settleHeld, stepAsync } from "./_async_step.ts";
import type { SchedulerOptions, SpawnOptions } from "./_scheduler_options.ts";
import { setImmediate } from "node:timers";

export { CoroutineRecord as Coroutine, type Resource, type Task };
export type { SchedulerOptions, SpawnOptions };

/** Yielded by a coroutine cancelled while parked in place: return now. */
const CANCEL_EFFECT: Effect = { op: "cancel" };
const CANCEL_RESULT: IteratorResult<Effect> = {
  done: false,
  value: CANCEL_EFFECT,
};
/** `#park` could not park: the deadline has passed already. */
const EXPIRED = Symbol("corio.expired");

/**
 * The engine: runs coroutines, performs their operations, times them out
 * and cancels them. Most programs use `serve` or `run`, which make one.
 *
 * @example Two top-level coroutines on one scheduler
 * ```ts
 * import { delay, Scheduler } from "@corio/corio";
 *
 * const scheduler = new Scheduler();
 * const a = scheduler.spawn((function* () { yield* delay(2); return "a"; })());
 * const b = scheduler.spawn((function* () { yield* delay(1); return "b"; })());
 * console.log(await Promise.all([a.finished, b.finished])); // ["a", "b"]
 * ```
 */
export class Scheduler {
  /** The clock this scheduler reads and arms. */
  readonly clock: Clock;
  #onError: (error: unknown) => void;
  #timers: Alarm<CoroutineRecord>;
  #live = 0;
  #busy = 0;
  #externalWaits = 0;
  #ready: CoroutineRecord[] = [];
  /** Waiting for a turn of the event loop (see `#yieldToHost`). */
  #yielded = new Set<CoroutineRecord>();
  #epoch = 0;
  #isDriving = false;
  #isIdle = (): boolean =>
    this.#live === 0 || (this.#busy === 0 && this.#externalWaits === 0);

  /**
   * Creates a scheduler; it runs nothing until `spawn`.
   *
   * @param options The clock and the error sink.
   */
  constructor(options: SchedulerOptions = {}) {
    this.clock = options.clock ?? systemClock;
    const onError = options.onError ?? ((error) => console.error(error));
    this.#onError = (error) => callOnError(onError, error);
    this.#timers = new Alarm(this.clock, this.#onTimeout);
  }

  /** The current time on this scheduler's clock, in ms. */
  now(): number {
    return this.clock.now();
  }

  /** How many coroutines are alive (started and not yet done). */
  get size(): number {
    return this.#live;
  }

  /**
   * Starts a top-level coroutine.
   * @param coroutine A generator object, e.g. `handler(conn)`.
   * @param options What it owns.
   * @returns Its task.
   */
  spawn<T>(
    coroutine: Coroutine<T>,
    options?: SpawnOptions,
  ): Task<T> {
    const co = this._start(coroutine, null);
    if (options?.owns) {
      for (const resource of options.owns) {
        co.adopt(resource);
      }
    }
    return this._task(co) as Task<T>;
  }

  // ---- internals used by operations and tasks (underscore: not public API)

  /**
   * @internal Starts a top-level coroutine that owns `resource` and tells
   * `listener` when done (a server's handlers: no promise, no closure and
   * no task object per connection).
   */
  _spawnSettled(
    coroutine: Coroutine<unknown>,
    resource: Resource,
    listener: SettleListener,
  ): CoroutineRecord {
    const co = this._start(coroutine, null);
    co.adopt(resource);
    co.listener = listener;
    return co;
  }

  /** @internal */
  _start(
    gen: Coroutine<unknown>,
    parent: CoroutineRecord | null,
  ): CoroutineRecord {
    if (
      gen === null || typeof gen !== "object" ||
      typeof (gen as { next?: unknown }).next !== "function"
    ) {
      throw new TypeError(
        `Cannot start coroutine: expected a generator object (call the function*), got ${typeof gen}`,
      );
    }
    const co = new CoroutineRecord(gen, this, parent);
    if (parent) (parent.children ??= new Set()).add(co);
    this.#busy++;
    // A clock that jumps must know every scheduler on it from its first
    // coroutine on, not from its first idle moment: one whose waits are
    // all external (a socket) would never be asked, and another's jump
    // would time its waits out early.
    if (this.#live++ === 0) this.clock.poke?.(this.#isIdle);
    this.#enqueue(co);
    return co;
  }

  /** @internal */
  _task(co: CoroutineRecord): Task<unknown> {
    return co.task ??= new TaskHandle(co);
  }

  /** @internal */
  _promise(co: CoroutineRecord): Promise<unknown> {
    if (co.promise === null) {
      co.promise = new Promise((resolve, reject) => {
        co.settle = { resolve, reject };
      });
      co.isObserved = true;
      if (co.state === DONE) co.resolvePromise();
    }
    return co.promise;
  }

  /**
   * A child's error under a cancelled `parent`: to the listener of the
   * top-level coroutine above it (a server's connection slot, which adds
   * the connection's info), else to `onError`.
   */
  #reportChild = (error: unknown, parent: CoroutineRecord): void => {
    let top = parent;
    while (top.parent !== null) top = top.parent;
    if (top.listener?.onChildError) top.listener.onChildError(error);
    else this.#onError(error);
  };

  /** @internal Reports a child's error that nobody will see. */
  _reportChild(error: unknown, parent: CoroutineRecord): void {
    this.#reportChild(error, parent);
  }

  /** @internal */
  _wake(co: CoroutineRecord): void {
    this.#unpark(co);
    this.#resume(co, NEXT, RESUME);
  }

  /** @internal */
  _abort(co: CoroutineRecord): void {
    if (co.effect === null) return;
    co.effect.owner.unpark(co);
    this.#unpark(co);
    this.#resume(co, NEXT, ABORTED);
  }

  /** @internal */
  _cancel(co: CoroutineRecord): void {
    switch (co.state) {
      case STARTING:
        co.isCancelled = true;
        co.mode = RETURN;
        return;
      case RUNNING:
        // Idempotent: a cancelled coroutine's cleanup waits are its own.
        if (!co.isCancelled && !co.cancelRequested) {
          co.cancelRequested = true;
          pendingCancels.count++;
        }
        return;
      case PARKED:
        if (co.isCancelled) return;
        co.effect!.owner.unpark(co);
        this.#unpark(co);
        co.isCancelled = true;
        this.#resume(co, RETURN, undefined);
        return;
      case HOST_TURN:
        // At once, as a parked one: a server closes a running handler's
        // connection soon after cancelling it, and its `finally` may send.
        if (co.isCancelled) return;
        this.#yielded.delete(co);
        co.isCancelled = true;
        this.#resume(co, RETURN, undefined, true);
        return;
      default: // ENDING, DONE: children already cancelled
    }
  }

  /** @internal */
  _afterAsyncStep(
    co: CoroutineRecord,
    r: IteratorResult<unknown, unknown>,
  ): void {
    if (this.#afterYield(co, r)) this.#resume(co, co.mode, co.input, true);
  }

  /** @internal */
  _afterAsyncFailure(co: CoroutineRecord, error: unknown): void {
    this.#end(co, FAILED, error);
  }

  /**
   * @internal Parks the running `async function*` coroutine `co` on `op`
   * without a yield: returns the promise its `yield*` awaits, a result at
   * once, or null when only the scheduler's own path will do (a pending
   * cancel, a deadline already past).
   */
  _parkHere(
    co: CoroutineRecord,
    op: OpEffect<unknown>,
  ): IteratorResult<unknown> | Promise<IteratorResult<unknown>> | null {
    if (co.state !== RUNNING || co.cancelRequested || co.heldBy !== null) {
      return null;
    }
    for (;;) {
      let signal: Resume;
      if (op.immediate) {
        op.owner.perform(co);
        signal = RESUME;
      } else {
        const why = this.#park(co, op);
        if (why === null) {
          co.heldBy = op;
          return hold(co);
        }
        if (why === EXPIRED) return null; // over at once: see #afterYield
        signal = why;
      }
      const r = op._step(signal);
      if (r !== (op as unknown)) return r; // done (see `OpEffect._step`)
    }
  }

  /**
   * @internal Returns true when `co` has waited on a receive since before
   * the last call, so that what its connection keeps for the next message
   * can go. If it waits in place, also moves that wait to a yield: a
   * coroutine parked in place holds more (the promise `yield*` awaits, its
   * resolving functions, the pending `agen.next()`) than one that yielded.
   * The operation stays registered meanwhile, so no wake-up is lost; the
   * coroutine yields it, and the scheduler parks it again. A server calls
   * this for its handlers a few times a second.
   */
  _compact(co: CoroutineRecord): boolean {
    if (co.state !== PARKED || co.parkedSince === this.#epoch) return false;
    const op = co.effect!;
    if (!op.isRepark) return false;
    if (co.heldBy !== null) {
      this.#unpark(co);
      this.#busy++;
      settleHeld(co, { done: false, value: op });
    }
    return true;
  }

  /** @internal Starts a new epoch for `_compact`. */
  _nextEpoch(): void {
    this.#epoch++;
  }

  // ---- driving

  #enqueue(co: CoroutineRecord): void {
    this.#ready.push(co);
    if (!this.#isDriving) queueMicrotask(this.#drain);
  }

  #drain = (): void => {
    if (this.#isDriving) return;
    this.#isDriving = true;
    try {
      this.#stepReady();
    } finally {
      this.#isDriving = false;
    }
  };

  /**
   * Steps the coroutines queued while driving, then empties the queue. An
   * empty queue is left alone: `length = 0` is a call into the runtime even
   * then (`deno task instructions`, an echo message in a function* handler:
   * 3,935 -> 3,595-3,785 instructions).
   */
  #stepReady(): void {
    const ready = this.#ready;
    if (ready.length === 0) return;
    for (let i = 0; i < ready.length; i++) this.#step(ready[i]);
    ready.length = 0;
  }

  /**
   * Resumes `co`. Re-entrant calls (a coroutine waking another while it
   * runs) queue instead of nesting, so stacks stay flat.
   */
  #resume(
    co: CoroutineRecord,
    mode: Mode,
    input: unknown,
    isBusy = false,
  ): void {
    if (co.heldBy !== null) return this.#resumeHeld(co, mode, input, isBusy);
    co.mode = mode;
    co.input = input;
    if (!isBusy) this.#busy++;
    if (this.#isDriving) {
      this.#ready.push(co);
      return;
    }
    this.#isDriving = true;
    try {
      this.#step(co);
      this.#stepReady();
    } finally {
      this.#isDriving = false;
    }
  }

  /**
   * Resumes a coroutine parked in place: steps its operation here and
   * settles the promise its `yield*` awaits (no generator step, no yield).
   */
  #resumeHeld(
    co: CoroutineRecord,
    mode: Mode,
    input: unknown,
    isBusy: boolean,
  ) {
    if (!isBusy) this.#busy++;
    const op = co.heldBy!;
    let result = CANCEL_RESULT as IteratorResult<unknown>;
    if (mode !== RETURN) {
      try {
        for (;;) {
          result = op._step(input);
          if (result !== (op as unknown)) break; // done
          // Woken before it could complete: wait again.
          const why = this.#park(co, op);
          if (why === null) return;
          input = why === EXPIRED ? TIMED_OUT : why;
        }
      } catch (error) {
        settleHeld(co, error, true);
        return;
      }
    }
    // RETURN: the coroutine yields CANCEL_EFFECT, and #afterYield returns it.
    settleHeld(co, result);
  }

  #step(co: CoroutineRecord): void {
    if (co.state === DONE || co.state === ENDING) return;
    co.state = RUNNING;
    // Cancelled while queued to resume (woken, not yet run): it meets the
    // cancel at the wait it is leaving, not after what it would do next.
    if (co.cancelRequested && co.mode === NEXT) meetCancel(co);
    const gen = co.gen;
    if (co.kind === ASYNC) {
      // Entered as the running coroutine, which every await in the
      // generator then carries: its operations can park in place. Already
      // in its context (a step's callback, a wake-up by a reaction it
      // registered), it is stepped as it is: entering costs ~200 ns.
      if (running.getStore() === co) stepAsync(co);
      else running.run(co, stepAsync, co);
      return;
    }
    const sgen = gen as globalThis.Generator<unknown, unknown, unknown>;
    for (;;) {
      let r: IteratorResult<unknown, unknown>;
      try {
        r = co.mode === NEXT
          ? (co.kind === GENERATOR
            ? co.stepNext.call(sgen, co.input)
            : sgen.next(co.input))
          : co.mode === RETURN
          ? sgen.return(undefined)
          : sgen.throw(co.input);
      } catch (error) {
        this.#end(co, FAILED, error);
        return;
      }
      co.input = undefined;
      if (!this.#afterYield(co, r)) return;
    }
  }

  /**
   * Handles what a coroutine yielded. Returns true when it should be
   * resumed at once (with `co.mode`/`co.input` set), false when it parked
   * or ended.
   */
  #afterYield(
    co: CoroutineRecord,
    r: IteratorResult<unknown, unknown>,
  ): boolean {
    if (r.done) {
      this.#end(co, OK, r.value);
      return false;
    }
    const effect = r.value;
    if (effect === CANCEL_EFFECT) {
      co.mode = RETURN;
      return true;
    }
    if (!(effect instanceof OpEffect)) {
      co.mode = THROW;
      co.input = new TypeError(
        `Cannot run coroutine: it yielded ${
          describe(effect)
        }; use yield* with an operation (yield* conn.recv(), yield* delay(ms))`,
      );
      return true;
    }
    if (co.cancelRequested) {
      meetCancel(co);
      return true;
    }
    co.mode = NEXT;
    if (effect.immediate) {
      try {
        effect.owner.perform(co);
        co.input = RESUME;
      } catch (error) {
        co.mode = THROW;
        co.input = error;
      }
      return true;
    }
    const why = this.#park(co, effect);
    if (why === null) return false;
    if (why === EXPIRED) {
      co.input = TIMED_OUT;
      if (effect.yieldsToHost) {
        this.#yieldToHost(co);
        return false;
      }
      // Any other operation that ends before it waits (`recv({ timeout:
      // 0 })`, `inbox.poll()`) only lets the coroutines already queued run
      // first.
      if (this.#isDriving) {
        this.#ready.push(co);
        return false;
      }
      return true;
    }
    co.input = why;
    return true;
  }

  /**
   * Parks `co` on `effect`, arming its deadline; returns null. Or returns
   * why it cannot: its deadline passed (EXPIRED), its signal was aborted,
   * or it became ready meanwhile (RESUME: poll again).
   */
  #park(
    co: CoroutineRecord,
    effect: OpEffect<unknown>,
  ): Resume | typeof EXPIRED | null {
    // An aborted signal wins over a deadline already past, as it does
    // once waiting: `delay(0, { signal })` throws the reason too.
    const signal = effect.signal;
    if (signal?.aborted) return ABORTED;
    // Read the clock only for operations that have a deadline.
    let deadline = Infinity;
    let isNewWait = false;
    if (effect.hasDeadline) {
      const now = this.clock.now();
      isNewWait = effect.activeDeadline === undefined; // not a re-park
      deadline = effect.resolveDeadline(now);
      if (deadline <= now && !effect.settlesLate) return EXPIRED;
    }
    if (effect.owner.park(co)) return RESUME;
    co.state = PARKED;
    co.effect = effect;
    co.parkedSince = this.#epoch;
    if (deadline !== Infinity) {
      const timers = this.#timers;
      // A wait parked again after a wake-up that found it pending keeps
      // its place among ties; a new one goes behind those queued before.
      // (A shared delay's deadline can be set by another coroutine between
      // this one's start and park: the deadline tells a new wait too.)
      const isNewPlace = isNewWait || deadline !== co.deadline;
      if (isNewPlace) {
        co.deadline = deadline;
        co.deadlineOrder = timers.takeOrder();
      }
      // An entry left queued by an earlier wait (see `#unpark`) before
      // this deadline stays as it is: it comes up first, and `#onTimeout`
      // moves it here then, at this wait's place among ties.
      const queuedAt = timers.keyOf(co);
      if (deadline < queuedAt || (deadline === queuedAt && isNewPlace)) {
        timers.set(co, deadline, co.deadlineOrder);
      }
    }
    if (signal) signal.addEventListener("abort", co.onAbort, { once: true });
    if (effect.external) this.#externalWaits++;
    this.#busy--;
    if (this.#busy === 0 && this.#externalWaits === 0) {
      this.#pokeIdle();
    }
    return null;
  }

  /** Bookkeeping when a parked coroutine is about to run again. */
  #unpark(co: CoroutineRecord): void {
    const effect = co.effect!;
    co.effect = null;
    co.state = RUNNING;
    // Its deadline stays queued: the next wait of a loop like
    // `recv({ timeout })` is later, and moving the entry when it comes up
    // costs one heap update per timeout period instead of a removal per
    // wait (each moving other coroutines' entries, whose records are cold
    // at 1000 connections), as Go's runtime timers did from 1.14
    // (`timerModifiedLater`, `timerDeleted`). `#onTimeout` drops an entry
    // whose wait ended.
    if (effect.signal) effect.signal.removeEventListener("abort", co.onAbort);
    if (effect.external) this.#externalWaits--;
  }

  /**
   * Resumes `co`, whose delay was over at once (`delay(0)`), after a turn
   * of the host's event loop, behind the coroutines already ready. Resumed
   * at once, a coroutine looping on `delay(0)` would keep the event loop
   * from ever running: no socket read, no host timer would complete, which
   * is what such a loop yields for. `setImmediate` is a turn of the loop
   * (3.5 µs on Deno 2.9.6); `setTimeout(0)` nested is clamped to 4 ms. It
   * stays busy meanwhile: virtual time holds still.
   */
  #yieldToHost(co: CoroutineRecord): void {
    co.state = HOST_TURN;
    co.mode = NEXT;
    co.input = TIMED_OUT;
    this.#yielded.add(co);
    if (this.#yielded.size === 1) setImmediate(this.#afterHostTurn);
  }

  #afterHostTurn = (): void => {
    const yielded = this.#yielded;
    this.#yielded = new Set();
    for (const co of yielded) {
      // Cancelled by one resumed before it in this batch (its parent's
      // end, a signal), it ran already: in its finally, done, or in a new
      // host turn of its own (in the new set).
      if (co.state !== HOST_TURN || this.#yielded.has(co)) continue;
      this.#resume(co, NEXT, TIMED_OUT, true);
    }
  };

  // ---- time

  /**
   * Tells a clock that jumps (a virtual one) that this scheduler waits only
   * on time now. Its queue first drops the deadlines of waits that ended
   * (left queued on purpose, see `#unpark`): the clock jumps to the host
   * timer, which must be a deadline something still waits on.
   */
  #pokeIdle(): void {
    const clock = this.clock;
    if (clock.poke === undefined) return;
    this.#timers.tidy(liveDeadline, deadlineOrderOf);
    clock.poke(this.#isIdle);
  }

  #onTimeout = (co: CoroutineRecord, now: number): void => {
    // Left queued by a wait that has ended (see `#unpark`): the coroutine
    // runs, waits without a deadline, or waits for a later one.
    if (co.state !== PARKED || !co.effect!.hasDeadline) return;
    if (co.deadline > now) {
      return this.#timers.set(co, co.deadline, co.deadlineOrder);
    }
    co.effect!.owner.unpark(co);
    this.#unpark(co);
    this.#resume(co, NEXT, TIMED_OUT);
  };

  // ---- ending

  #end(co: CoroutineRecord, outcome: number, result: unknown): void {
    this.#busy--;
    // Ending, like parking, can leave only time to wait on: tell the clock.
    if (this.#busy === 0 && this.#externalWaits === 0) {
      this.#pokeIdle();
    }
    co.state = ENDING;
    if (co.cancelRequested) {
      co.cancelRequested = false;
      pendingCancels.count--;
    }
    co.outcome = outcome === OK && co.isCancelled ? CANCELLED : outcome;
    co.result = result;
    if (co.children !== null && co.children.size > 0) {
      // The last child to settle completes this one (`#settle`), maybe
      // before this loop is done: one not driven from here (an `async
      // function*` ends in a promise callback) runs to its end at once.
      for (const child of co.children) this._cancel(child);
      return;
    }
    this.#complete(co);
  }

  #complete(co: CoroutineRecord): void {
    if (this.#closeOwned(co)) this.#settle(co);
  }

  /**
   * Closes what `co` owns: true when that is done at once, else it settles
   * once the resources have.
   */
  #closeOwned(co: CoroutineRecord): boolean {
    const pending = co.closeOwned(this.#onError);
    if (pending === null) return true;
    this.#busy++; // finishing is work: keep virtual time still meanwhile
    const done = () => {
      this.#busy--;
      this.#settle(co);
      if (this.#busy === 0 && this.#externalWaits === 0) {
        this.#pokeIdle();
      }
    };
    // A resource whose `settled` rejects has settled all the same: report
    // why, and finish (left waiting, the coroutine would never end).
    Promise.all(pending).then(done, (error) => {
      this.#onError(error);
      done();
    });
    return false;
  }

  #settle(co: CoroutineRecord): void {
    // A parent that waited only for this child settles with it, and so on
    // up: in a loop, as a chain of thousands of nested spawns would
    // overflow the stack by recursion. Waiters are told top down.
    let below: CoroutineRecord[] | null = null;
    let top = co;
    for (;;) {
      top.state = DONE;
      this.#live--;
      if (top.heapIndex >= 0) this.#timers.delete(top);
      const parent = top.leaveParent(this.#reportChild);
      if (parent === null || !this.#closeOwned(parent)) break;
      (below ??= []).push(top);
      top = parent;
    }
    if (!top.notifyWaiters()) this.#onError(top.result);
    if (below !== null) {
      for (let i = below.length - 1; i >= 0; i--) {
        if (!below[i].notifyWaiters()) this.#onError(below[i].result);
      }
    }
    if (this.#live === 0) this.#timers.stop();
  }
}

/** Its wait's place among equal deadlines (see `CoroutineRecord.deadlineOrder`). */
function deadlineOrderOf(co: CoroutineRecord): number {
  return co.deadlineOrder;
}

/** The deadline `co` waits for now: what `#onTimeout` would act on. */
function liveDeadline(co: CoroutineRecord): number {
  return co.state === PARKED && co.effect!.hasDeadline ? co.deadline : Infinity;
}

/** `co` meets the cancel requested while it ran: it returns from its wait. */
function meetCancel(co: CoroutineRecord): void {
  co.cancelRequested = false;
  pendingCancels.count--;
  co.isCancelled = true;
  co.mode = RETURN;
  co.input = undefined;
}

function describe(value: unknown): string {
  if (value === undefined) return "undefined (a bare `yield`)";
  if (typeof value === "string") return JSON.stringify(value);
  if (value instanceof Promise) return "a Promise (use yield* wait(promise))";
  if (value instanceof Op) {
    return `the operation ${value.op} itself (yield without *)`;
  }
  if (value !== null && typeof value === "object") {
    if (Symbol.iterator in value && Symbol.asyncIterator in value) {
      return "an operation (yield without *)";
    }
    const { next, throw: throwIt } = value as Partial<Generator>;
    if (typeof next === "function" && typeof throwIt === "function") {
      return "a generator (yield without *)";
    }
  }
  return typeof value === "object"
    ? Object.prototype.toString.call(value)
    : String(value);
}
