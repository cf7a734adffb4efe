/**
 * The scheduler's own operations, usable in any coroutine: `delay`, `wait`
 * and `spawn`.
 *
 * @module
 */

import {
  Op,
  type Operation,
  type OperationOptions,
  PENDING,
} from "./effects.ts";
import { TimeoutError } from "./errors.ts";
import type { Coroutine } from "./effects.ts";
import type {
  Coroutine as CoroutineRecord,
  SpawnOptions,
  Task,
} from "./scheduler.ts";

/**
 * Options for {@linkcode delay}.
 *
 * @example Cut a delay short with a signal
 * ```ts
 * import { delay, run, spawn } from "@corio/corio";
 *
 * const controller = new AbortController();
 * const reason = await run((function* () {
 *   yield* spawn((function* () { yield* delay(10); controller.abort("enough"); })());
 *   try {
 *     yield* delay(60_000, { signal: controller.signal });
 *   } catch (reason) {
 *     return reason;
 *   }
 * })());
 * console.log(reason); // enough
 * ```
 */
export interface DelayOptions {
  /** Aborting it ends the delay early: its `reason` is thrown, unchanged. */
  signal?: AbortSignal;
}

// A delay of whole milliseconds under a second, with no signal, is one
// operation per value, shared by every coroutine that waits it. A delay
// keeps nothing of a wait but its deadline: `yield*` clears it, the
// scheduler computes it when the coroutine parks (a delay parks once per
// wait) and keeps it in its queue, per coroutine. B7 (10k loops of
// delay(1..100 ms), hand-driven clock): allocating one per wait cost a
// quarter of the scheduler's time per fire.
const SHARED_DELAYS = 1000;
const sharedDelays: (DelayOp | undefined)[] = [];

class DelayOp extends Op<void> {
  get op(): string {
    return "delay";
  }
  constructor(ms: number, options?: DelayOptions) {
    if (Number.isNaN(ms)) {
      throw new RangeError("Cannot delay: ms is NaN");
    }
    // The delay is the timeout; no options object per delay for B7's loops.
    const signal = options?.signal;
    super(signal === undefined ? undefined : { signal }, Math.max(0, ms));
    // Each waiter's deadline is its own (the scheduler keeps it per coroutine).
    this.effect.isShareable = true;
    this.effect.yieldsToHost = true;
  }
  poll(): typeof PENDING {
    return PENDING;
  }
  park(): boolean {
    return false;
  }
  unpark(): void {}
  timedOut(): void {}
}

/**
 * Pauses the coroutine for `ms` milliseconds on the scheduler's clock
 * (virtual in tests), without a host timer of its own.
 *
 * Deadline: `ms` (negative counts as 0; `Infinity` waits until cancelled).
 * `delay(0)` yields: coroutines already ready run, and then the host's event
 * loop turns once (socket reads and host timers complete), before this one
 * goes on, as asyncio's `sleep(0)` does. A long computation that yields
 * with `delay(0)` now and then keeps a server answering.
 * Errors: the `signal`'s reason, if aborted.
 *
 * @param ms How long to wait.
 * @param options An abort signal.
 * @returns An operation to `yield*`.
 * @throws {RangeError} If `ms` is NaN.
 *
 * @example Wait three virtual seconds, instantly
 * ```ts
 * import { delay, run } from "@corio/corio";
 * import { VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock();
 * await run((function* () { yield* delay(3000); })(), { clock });
 * console.log(clock.now()); // 3000
 * ```
 */
export function delay(ms: number, options?: DelayOptions): Operation<void> {
  if (options?.signal === undefined && ms >= 0 && ms < SHARED_DELAYS) {
    const index = ms | 0;
    if (index === ms) return sharedDelays[index] ??= new DelayOp(ms);
  }
  return new DelayOp(ms, options);
}

/**
 * @internal A wait for a promise; `name` and `where` are what its
 * `TimeoutError` says (`Connection.handshake` waits as `"handshake"`).
 */
export class WaitOp<T> extends Op<T> {
  get op(): string {
    return this.name;
  }
  #state = 0; // 0 pending, 1 fulfilled, 2 rejected
  #result: unknown = undefined;
  #waiter: CoroutineRecord | null = null;
  constructor(
    promise: PromiseLike<T>,
    options?: OperationOptions,
    readonly name = "wait",
    readonly where = "for promise",
  ) {
    super(options);
    this.effect.external = true;
    this.effect.settlesLate = true;
    // Subscribe at once so a rejection after a timeout is still handled.
    Promise.resolve(promise).then(
      (value) => this.#settle(1, value),
      (error) => this.#settle(2, error),
    );
  }
  #settle(state: number, result: unknown): void {
    this.#state = state;
    this.#result = result;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.wake();
  }
  poll(): T | typeof PENDING {
    if (this.#state === 1) return this.#result as T;
    if (this.#state === 2) throw this.#result;
    return PENDING;
  }
  park(co: CoroutineRecord): boolean {
    if (this.#state !== 0) return true;
    this.#waiter = co;
    return false;
  }
  unpark(): void {
    this.#waiter = null;
  }
  timedOut(): T {
    throw new TimeoutError(this.name, this.effect.timeoutThatFired, this.where);
  }
}

/**
 * Waits for a promise under a deadline, cancellation and an abort signal:
 * the covered form of `await` inside a coroutine.
 *
 * Deadline: `timeout`/`deadline`. Errors: the promise's rejection;
 * `TimeoutError` (the promise runs on, its result is dropped); the
 * `signal`'s reason. A deadline already past (`timeout: 0`) times out at the
 * next timer turn, so a promise settled already still gives its value.
 * A wait that ends early (timeout, signal, cancel) drops what the promise
 * gives later: if that is something to close (a socket from a
 * `Deno.Listener`'s `accept()`), close it yourself, e.g.
 * `accepting.then((conn) => conn.close(), () => {})` in a `finally`.
 *
 * @param promise What to wait for.
 * @param options Deadline and signal.
 * @returns An operation that gives the promise's value.
 *
 * @example
 * ```ts
 * import { run, wait } from "@corio/corio";
 *
 * const text = await run((async function* () {
 *   return yield* wait(Promise.resolve("done"), { timeout: 1000 });
 * })());
 * console.log(text); // done
 * ```
 */
export function wait<T>(
  promise: PromiseLike<T>,
  options?: OperationOptions,
): Operation<T> {
  return new WaitOp(promise, options);
}

class SpawnOp<T> extends Op<Task<T>> {
  get op(): string {
    return "spawn";
  }
  #task: Task<T> | null = null;
  constructor(
    readonly coroutine: Coroutine<T>,
    readonly options: SpawnOptions | undefined,
  ) {
    super(undefined);
    this.effect.immediate = true;
  }
  override perform(co: CoroutineRecord): void {
    const scheduler = co.scheduler;
    const child = scheduler._start(this.coroutine, co);
    for (const resource of this.options?.owns ?? []) child.adopt(resource);
    this.#task = scheduler._task(child) as Task<T>;
  }
  poll(): Task<T> | typeof PENDING {
    return this.#task ?? PENDING;
  }
  park(): boolean {
    return true;
  }
  unpark(): void {}
  timedOut(): Task<T> {
    throw new TimeoutError("spawn");
  }
}

/**
 * Starts a child coroutine that runs alongside its parent: one child can
 * read a connection while the parent writes it (full duplex). The child
 * never outlives its parent: when the parent ends, the child is cancelled,
 * and the parent's end waits for the child's `finally` blocks. A child's
 * error reaches whoever joins it; if nobody does, the parent fails with it
 * when the parent ends: its own code runs on meanwhile, so a parent that
 * must stop when a child fails joins it (or the child catches its own
 * errors). Cancelling a child that has already failed keeps its error.
 *
 * @param coroutine A generator object, e.g. `reader(conn)`.
 * @param options `owns`: resources the child closes when it ends (a
 *   connection it serves, as `serve()` gives each handler its own). One
 *   the parent owns already (from `connect()` or `listen()`) is then owned
 *   by both, and closed as the first of them ends: the child.
 * @returns An operation that gives the child's {@linkcode Task}.
 *
 * @example
 * ```ts
 * import { delay, run, spawn } from "@corio/corio";
 *
 * const order: string[] = [];
 * await run((function* () {
 *   const child = yield* spawn((function* () {
 *     yield* delay(10);
 *     order.push("child");
 *   })());
 *   order.push("parent");
 *   yield* child.join();
 * })());
 * console.log(order); // ["parent", "child"]
 * ```
 *
 * @example A child that owns the connection it serves
 * ```ts
 * import { run, spawn } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * await run((function* () {
 *   const child = yield* spawn((function* () {
 *     yield* conn.send("bye\n");
 *   })(), { owns: [conn] });
 *   yield* child.join();
 *   console.log(conn.isClosed); // true: closed as its child ended
 * })());
 * peer.close();
 * ```
 */
export function spawn<T>(
  coroutine: Coroutine<T>,
  options?: SpawnOptions,
): Operation<Task<T>> {
  return new SpawnOp(coroutine, options);
}

class NowOp extends Op<number> {
  get op(): string {
    return "now";
  }
  #now = NaN;
  constructor() {
    super(undefined);
    this.effect.immediate = true;
  }
  override begin(): void {
    this.#now = NaN; // each run reads the clock afresh
  }
  override perform(co: CoroutineRecord): void {
    this.#now = co.scheduler.now();
  }
  poll(): number | typeof PENDING {
    return Number.isNaN(this.#now) ? PENDING : this.#now;
  }
  park(): boolean {
    return true;
  }
  unpark(): void {}
  timedOut(): number {
    throw new TimeoutError("now");
  }
}

/**
 * The time on the running coroutine's clock, in ms: what `deadline`
 * options are measured on. Use it, not `Date.now()` or
 * `performance.now()`, to work out a deadline in a coroutine, so that it
 * holds on a `VirtualClock` in tests too. On the system clock it has a
 * fraction (`performance.now()`'s): round it before a protocol that wants
 * whole milliseconds sees it.
 *
 * @returns An operation that gives the time.
 *
 * @example One deadline for a whole exchange, on the virtual clock
 * ```ts
 * import { delay, now, run } from "@corio/corio";
 * import { VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock();
 * const left = await run((function* () {
 *   const deadline = (yield* now()) + 5000;
 *   yield* delay(1200); // a first step
 *   return deadline - (yield* now());
 * })(), { clock });
 * console.log(left); // 3800
 * ```
 */
export function now(): Operation<number> {
  return new NowOp();
}
