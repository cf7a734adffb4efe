// The machinery behind `Pool` (src/pool.ts): the connection slots, the
// waiters' queue, the acquire and dial operations, the idle watcher and the
// lease tracker. Internal to src/pool.ts.

import { Connection } from "./connection.ts";
import { type Effect, Op, type OperationOptions, PENDING } from "./effects.ts";
import {
  CancelledError,
  PoolClosedError,
  PoolExhaustedError,
  TimeoutError,
} from "./errors.ts";
import { delay, wait } from "./operations.ts";
import type { AcquireOptions, DialFunction, Lease, PoolStats } from "./pool.ts";
import {
  type Coroutine as CoroutineRecord,
  type Resource,
  Scheduler,
  type Task,
} from "./scheduler.ts";
import type { SettleListener } from "./_coroutine.ts";
import { type Clock, systemClock } from "./timers.ts";

/** Given to a waiter: "dial a connection yourself, in this reserved slot". */
const SLOT: unique symbol = Symbol("corio.pool.slot");
type Grant = Connection | typeof SLOT;

/** The system clock, with the pool's one host timer unref'd. */
const unrefSystemClock: Clock = {
  now: () => systemClock.now(),
  setTimer(at: number, callback: () => void): unknown {
    const handle = systemClock.setTimer(at, callback);
    Deno.unrefTimer(handle as number);
    return handle;
  },
  clearTimer: (handle: unknown) => systemClock.clearTimer(handle),
};

/**
 * Marks the read an idle connection's watcher left in flight when the
 * connection is lent: any receive of the borrower's clears it (`ReadOp`),
 * whether it waits or not. So at release, a read still in flight with the
 * mark in place is the watcher's (harmless); without it, the borrower's
 * receive timed out or was cancelled, and its reply may still arrive.
 */
const UNTOUCHED_READ = {
  wake(): void {},
} as unknown as CoroutineRecord;

interface RefCounted {
  ref?(): void;
  unref?(): void;
}

interface IdleEntry {
  readonly conn: Connection;
  isIdle: boolean;
  watcher: Task<void> | null;
}

/** A connection's settings as dialled, which each lease starts from. */
interface Settings {
  readonly recvTimeout: number;
  readonly sendTimeout: number;
  readonly maxLineLength: number;
}

/** What a {@linkcode PoolCore} needs, checked by `Pool`'s constructor. */
export interface PoolCoreOptions {
  /** The server's address, or `"dial()"`: for errors. */
  where: string;
  max: number;
  idleTimeout: number;
  acquireTimeout: number;
  maxWaiting: number;
  dial: DialFunction;
}

/**
 * The leases one coroutine holds from one pool: discarded when the
 * coroutine ends without disposing them.
 */
export class LeaseOwner implements Resource {
  readonly leases: Set<Lease> = new Set();
  /** The coroutine that acquired them. */
  readonly co: CoroutineRecord;
  #settled: Promise<void>[] | null = null;
  constructor(co: CoroutineRecord) {
    this.co = co;
  }
  close(): void {
    for (const lease of this.leases) {
      lease.discard();
      (this.#settled ??= []).push(lease.conn.settled);
    }
  }
  get settled(): Promise<void> | undefined {
    return this.#settled === null
      ? undefined
      : Promise.all(this.#settled).then(() => {});
  }
}

/**
 * A dial run in a child: what it gave, once it gave it, and the end of its
 * slot. The slot is free once the child has ended and the acquire gave up
 * on it (a failure, a timeout, a cancel), whichever comes last: a dial
 * cut off keeps its sockets until its `finally` blocks have run.
 */
class DialRun implements SettleListener {
  dialled: unknown = undefined;
  /** Set when the acquire got the dial's outcome (its join gave it). */
  isSeen = false;
  #isChildDone = false;
  #isAbandoned = false;
  #failure: unknown = undefined;
  /** The coroutine it runs in, once started. */
  child: CoroutineRecord | null = null;
  constructor(readonly release: (dialled: unknown) => void) {}
  onSettled(isOk: boolean, result: unknown): void {
    this.#isChildDone = true;
    if (!isOk && !(result instanceof CancelledError)) this.#failure = result;
    if (this.#isAbandoned) this.#end();
  }
  /** The acquire took no connection from it. */
  abandon(): void {
    this.#isAbandoned = true;
    // Its failure is not the acquirer's, which has its own error (or was
    // cancelled): it must not fail the acquirer as that ends.
    this.child!.isObserved = true;
    if (this.#isChildDone) this.#end();
  }
  #end(): void {
    // A failure nobody saw (its `finally` threw after the acquire gave up)
    // goes where a cancelled parent's child's error goes.
    if (this.#failure !== undefined && !this.isSeen) {
      const child = this.child!;
      child.scheduler._reportChild(this.#failure, child.parent!);
    }
    this.release(this.dialled);
  }
}

/**
 * Runs `dial` as a child of the acquirer. A dial that used `connect()`
 * gave the connection to this coroutine, whose end would close it: the
 * pool owns it instead (the next borrower may have it).
 */
function* dialInChild(
  dial: DialFunction,
  options: OperationOptions,
  run: DialRun,
): Generator<Effect, unknown, unknown> {
  const self = yield* new CurrentCoroutineOp();
  const dialled: unknown = yield* dial(options);
  if (dialled instanceof Connection) self.disown(dialled);
  run.dialled = dialled;
  return dialled;
}

/**
 * Joins a dial, cut off at the deadline: unless it ends at that instant,
 * as an operation of its own does when it completes at its deadline (the
 * join's timer may have come up first among those due then).
 */
function* joinDial(
  task: Task<unknown>,
  child: CoroutineRecord,
  options: OperationOptions,
): Generator<Effect, unknown, unknown> {
  try {
    return yield* task.join(options);
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
  }
  // What else is due now runs (virtual time holds still meanwhile).
  if (!child.isDone) yield* delay(0);
  return yield* task.join({ timeout: 0 });
}

/** Internal: gives the running coroutine's record, without waiting. */
export class CurrentCoroutineOp extends Op<CoroutineRecord> {
  get op(): string {
    return "acquire";
  }
  #co: CoroutineRecord | null = null;
  constructor() {
    super(undefined);
    this.effect.immediate = true;
  }
  override perform(co: CoroutineRecord): void {
    this.#co = co;
  }
  poll(): CoroutineRecord | typeof PENDING {
    return this.#co ?? PENDING;
  }
  park(): boolean {
    return true;
  }
  unpark(): void {}
  timedOut(): CoroutineRecord {
    throw new TimeoutError(this.op);
  }
}

/**
 * Internal: waits for an idle connection or a free slot, first come first
 * served. A releasing coroutine hands its connection straight to the
 * first waiter (`give`), so nobody can barge in between.
 */
class WaitForConnectionOp extends Op<Grant> {
  get op(): string {
    return "acquire";
  }
  waiter: CoroutineRecord | null = null;
  #grant: Grant | Error | null = null;
  #isExhausted = false;
  constructor(
    readonly pool: PoolCore,
    options: OperationOptions,
    readonly reportedTimeout: number | undefined,
  ) {
    super(options);
  }
  override begin(): void {
    this.#grant = null;
    this.#isExhausted = false;
  }
  /** Hands this waiter a connection, a slot, or an error; wakes it. */
  give(grant: Grant | Error): void {
    this.#grant = grant;
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.wake();
  }
  poll(): Grant | typeof PENDING {
    const grant = this.#grant;
    if (grant !== null) {
      this.#grant = null;
      if (grant instanceof Error) throw grant;
      return grant;
    }
    const pool = this.pool;
    if (this.#isExhausted) {
      throw new PoolExhaustedError(pool.maxWaiting, pool.where);
    }
    const taken = pool.tryTake();
    // Checked here too, not only in park(): a deadline already past
    // (`timeout: 0`) never parks, and would say TimeoutError.
    if (
      taken === PENDING && this.waiter === null &&
      pool.waitingCount >= pool.maxWaiting
    ) {
      throw new PoolExhaustedError(pool.maxWaiting, pool.where);
    }
    return taken;
  }
  park(co: CoroutineRecord): boolean {
    const pool = this.pool;
    if (pool.canServe()) return true;
    // Still queued (woken by something else, parked again): keep its
    // place, and do not count it against maxWaiting as a newcomer.
    if (this.waiter !== null) {
      this.waiter = co;
      return false;
    }
    if (pool.waitingCount >= pool.maxWaiting) {
      this.#isExhausted = true;
      return true;
    }
    this.waiter = co;
    pool.enqueue(this);
    return false;
  }
  unpark(): void {
    this.waiter = null;
    this.pool.dequeue(this);
  }
  // Cancelled after `give()` woke it but before it ran (a `function*`
  // waiter queued to resume, cancelled by the same step that released the
  // connection): what it was given goes back, or the pool loses it.
  override cancelled(): void {
    const grant = this.#grant;
    this.#grant = null;
    if (grant !== null && !(grant instanceof Error)) {
      this.pool.takeBack(grant);
    }
  }
  timedOut(): Grant {
    throw new TimeoutError(
      this.op,
      this.reportedTimeout,
      `from pool of ${this.pool.where}`,
    );
  }
}

/**
 * A pool's connections and waiters: at most `max` slots (open connections
 * plus dials in progress), idle connections each watched by a coroutine on
 * the pool's own scheduler, waiters served first come, first served.
 * `Pool` adds the public checks and the leases.
 */
export class PoolCore {
  readonly where: string;
  readonly maxWaiting: number;
  readonly #max: number;
  readonly #idleTimeout: number;
  readonly #acquireTimeout: number;
  readonly #dial: DialFunction;
  #housekeeper: Scheduler | null = null;
  #idle: IdleEntry[] = [];
  #waiters = new Set<WaitForConnectionOp>();
  #closing = new Set<Promise<void>>();
  // What a borrower changes of a connection (`conn.recvTimeout = ...`) ends
  // with its lease: the next borrower gets the connection as dialled.
  #settings = new Map<Connection, Settings>();
  // Given back less than a turn of the event loop ago: a peer that closed
  // it right after its last reply (a server that answers once and closes)
  // has not been seen yet. Whoever takes it next looks after a turn
  // (`#verify`); an idle one's watcher does, if it is not taken first.
  #unverified = new Set<Connection>();
  #isClosed = false;
  // Counts against max: open connections plus dials in progress.
  #slotsTaken = 0;
  #connecting = 0;
  #leased = 0;
  #created = 0;
  #discarded = 0;

  constructor(options: PoolCoreOptions) {
    this.where = options.where;
    this.maxWaiting = options.maxWaiting;
    this.#max = options.max;
    this.#idleTimeout = options.idleTimeout;
    this.#acquireTimeout = options.acquireTimeout;
    this.#dial = options.dial;
  }

  get stats(): PoolStats {
    const idle = this.#idle.length;
    return {
      open: idle + this.#leased,
      idle,
      leased: this.#leased,
      connecting: this.#connecting,
      waiting: this.#waiters.size,
      created: this.#created,
      discarded: this.#discarded,
    };
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  get waitingCount(): number {
    return this.#waiters.size;
  }

  /**
   * Waits for an idle connection or a slot, and dials in the slot. The
   * connection it gives counts as leased.
   */
  *acquire(
    co: CoroutineRecord,
    options: AcquireOptions | undefined,
  ): Generator<Effect, Connection, unknown> {
    const scheduler = co.scheduler;
    this.#housekeeper ??= new Scheduler({
      clock: scheduler.clock === systemClock
        ? unrefSystemClock
        : scheduler.clock,
    });
    const timeout = options?.timeout ??
      (options?.deadline === undefined ? this.#acquireTimeout : undefined);
    let deadline = options?.deadline ?? Infinity;
    // What a TimeoutError names: the timeout, unless the deadline is first.
    let reported: number | undefined;
    if (timeout !== undefined && timeout !== Infinity) {
      const relative = scheduler.now() + timeout;
      if (relative < deadline) {
        deadline = relative;
        reported = timeout;
      }
    }
    const signal = options?.signal;
    const grant = yield* new WaitForConnectionOp(
      this,
      { deadline, signal },
      reported,
    );
    // A dead connection found by `#verify` leaves its slot to its taker,
    // who takes the next idle one, if any, or dials in it.
    for (let taken = grant; taken !== SLOT; taken = this.#takeAfterDead()) {
      if (!(yield* this.#verify(taken))) continue;
      if (this.#isClosed) {
        // Closed during the look, as a dial's acquire would be.
        this.#leased--;
        this.#discard(taken);
        throw new PoolClosedError(this.where);
      }
      return taken;
    }
    let conn: Connection | null = null;
    // In a child, so that the deadline and the signal cut off a dial that
    // ignores them (a greeting read without them): cancelled, its
    // `finally` blocks run and what it connected closes with it. Its slot
    // stays taken until it has ended, however the acquire ends.
    const dial = new DialRun((dialled) => this.#dialEnded(dialled));
    const child = scheduler._start(
      dialInChild(this.#dial, { deadline, signal }, dial),
      co,
    );
    dial.child = child;
    child.listener = dial;
    try {
      const dialled = yield* joinDial(
        scheduler._task(child),
        child,
        { deadline, signal },
      );
      if (!(dialled instanceof Connection)) {
        throw new TypeError(
          `Cannot acquire from pool of ${this.where}: dial() gave ${
            typeof dialled === "object" ? String(dialled) : typeof dialled
          }, not a Connection`,
        );
      }
      if (dialled.isClosed) {
        throw new TypeError(
          `Cannot acquire from pool of ${this.where}: dial() gave a closed connection (did a coroutine that has ended own it? connect in the acquiring coroutine itself)`,
        );
      }
      conn = dialled;
      dial.isSeen = true;
      this.#connecting--;
    } catch (error) {
      // The dial's own failure, or one of the acquire's checks of what it
      // gave; else the acquire gave up on it (a timeout, its signal).
      dial.isSeen = child.isDone;
      if (
        error instanceof TimeoutError && error.op !== "acquire" &&
        scheduler.now() >= deadline
      ) {
        // Said apart from a wait for a connection: a backend that accepts
        // and never greets looks like a busy pool otherwise.
        throw new TimeoutError(
          "acquire",
          reported,
          `from pool of ${this.where} while dialling`,
        );
      }
      throw error;
    } finally {
      // No wait here: a `finally` that waits in a cancelled coroutine
      // would resume the code that delegated to this one.
      if (conn === null) {
        scheduler._cancel(child);
        dial.abandon();
      }
    }
    this.#created++;
    this.#leased++;
    this.#settings.set(conn, {
      recvTimeout: conn.recvTimeout,
      sendTimeout: conn.sendTimeout,
      maxLineLength: conn.maxLineLength,
    });
    if (this.#isClosed) {
      this.#leased--;
      this.#discard(conn);
      throw new PoolClosedError(this.where);
    }
    return conn;
  }

  /**
   * True when `conn`, just taken, is fit to lend. One given back less than
   * a turn of the event loop ago gets a read in flight and a few microtask
   * turns, in which a read of what the kernel already holds completes: the
   * end of stream of a server that hung up right after its reply (through
   * a `Connection`, 2 turns on Deno 2.9.6, 200 of 200 times: Deno polls a
   * read once as it starts it). A host turn instead cost a pool of 10
   * shared by 50 clients 10-14% of its requests/s (`bench/pool_bench.ts`).
   * The read starts past the read pacer's budget too. A dead one is
   * closed, its slot kept for the caller (`#takeAfterDead`); false.
   */
  *#verify(conn: Connection): Generator<Effect, boolean, unknown> {
    if (!this.#unverified.has(conn)) return true;
    let hasWaited = false;
    try {
      if (!conn.hasPendingRead) {
        conn.startRead(1, false);
        conn.readWaiter = UNTOUCHED_READ;
      }
      yield* wait(readsAtHandDone());
      hasWaited = true;
    } finally {
      // Cancelled meanwhile: it goes on to the next taker, still unverified.
      if (!hasWaited) this.giveBack(conn, false);
    }
    this.#unverified.delete(conn);
    if (isFitWhileIdle(conn)) return true;
    this.#leased--;
    this.#close(conn);
    return false;
  }

  /**
   * For an acquirer whose connection `#verify` found dead, its slot still
   * taken: the next idle connection (the slot then freed), or the slot to
   * dial in.
   */
  #takeAfterDead(): Grant {
    if (this.#isClosed) {
      this.#slotsTaken--;
      throw new PoolClosedError(this.where);
    }
    const conn = this.#takeIdle();
    if (conn === null) {
      this.#connecting++;
      return SLOT;
    }
    this.#slotsTaken--;
    this.#slotFreed();
    return conn;
  }

  /** Fails every waiter, closes the idle connections. Idempotent. */
  close(): Promise<void> {
    if (!this.#isClosed) {
      this.#isClosed = true;
      const error = new PoolClosedError(this.where);
      const waiters = [...this.#waiters];
      this.#waiters.clear();
      for (const waiter of waiters) waiter.give(error);
      const idle = this.#idle;
      this.#idle = [];
      for (const entry of idle) {
        // Its read is unref'd: ref'd again, its end (which the promise
        // below waits for) keeps the event loop running until it comes.
        // Left unref'd, a process with nothing else to do let the loop end
        // first, and `await pool.close()` never settled (`deno test`:
        // "Promise resolution is still pending but the event loop has
        // already resolved").
        (entry.conn.transport as RefCounted).ref?.();
        this.#discardIdle(entry);
      }
    }
    return Promise.all(this.#closing).then(() => {});
  }

  /** True when `tryTake` would not wait. */
  canServe(): boolean {
    return this.#isClosed ||
      (this.#waiters.size === 0 &&
        (this.#idle.length > 0 || this.#slotsTaken < this.#max));
  }

  /** An idle connection, a reserved slot to dial in, or PENDING. */
  tryTake(): Grant | typeof PENDING {
    if (this.#isClosed) throw new PoolClosedError(this.where);
    if (this.#waiters.size > 0) return PENDING; // first come, first served
    const conn = this.#takeIdle();
    if (conn !== null) return conn;
    if (this.#slotsTaken < this.#max) {
      this.#slotsTaken++;
      this.#connecting++;
      return SLOT;
    }
    return PENDING;
  }

  /** The most recently used idle connection still fit, now leased. */
  #takeIdle(): Connection | null {
    const idle = this.#idle;
    while (idle.length > 0) {
      const entry = idle.pop()!; // most recently used: the rest may expire
      entry.isIdle = false;
      entry.watcher?.cancel();
      entry.watcher = null;
      const conn = entry.conn;
      if (!isFitWhileIdle(conn)) {
        this.#discard(conn); // the server dropped it: dial a replacement
        continue;
      }
      (conn.transport as RefCounted).ref?.();
      if (conn.hasPendingRead) conn.readWaiter = UNTOUCHED_READ;
      this.#leased++;
      return conn;
    }
    return null;
  }

  enqueue(waiter: WaitForConnectionOp): void {
    this.#waiters.add(waiter);
  }

  dequeue(waiter: WaitForConnectionOp): void {
    this.#waiters.delete(waiter);
  }

  /**
   * A grant its waiter never took (cancelled between `give()` and its
   * poll): the slot is free again, the connection goes to the next waiter
   * or back to idle.
   */
  takeBack(grant: Grant): void {
    if (grant === SLOT) {
      this.#connecting--;
      this.#slotsTaken--;
      this.#slotFreed();
      return;
    }
    this.giveBack(grant, false);
  }

  /** A lease ended: reuse, hand over, or close its connection. */
  giveBack(conn: Connection, isDiscard: boolean): void {
    this.#leased--;
    if (isDiscard || this.#isClosed || !isFitForReuse(conn)) {
      this.#discard(conn);
      return;
    }
    const settings = this.#settings.get(conn);
    if (settings !== undefined) {
      conn.recvTimeout = settings.recvTimeout;
      conn.sendTimeout = settings.sendTimeout;
      conn.maxLineLength = settings.maxLineLength;
    }
    this.#unverified.add(conn);
    const waiter = this.#firstWaiter();
    if (waiter !== undefined) {
      this.#leased++;
      waiter.give(conn);
      return;
    }
    if (conn.readWaiter === UNTOUCHED_READ) conn.readWaiter = null;
    (conn.transport as RefCounted).unref?.();
    const entry: IdleEntry = { conn, isIdle: true, watcher: null };
    this.#idle.push(entry);
    entry.watcher = this.#housekeeper!.spawn(this.#watch(entry));
  }

  /** Watches an idle connection: expiry, or the server dropping it. */
  *#watch(entry: IdleEntry): Generator<Effect, void, unknown> {
    const conn = entry.conn;
    try {
      if (this.#unverified.has(conn)) {
        // See `#verify`: its read, started now, sees an end that came
        // right after the last reply (nobody waits for it here: a turn).
        conn.startRead(1, false);
        yield* delay(0);
        this.#unverified.delete(conn);
      }
      yield* conn.recv({ timeout: this.#idleTimeout });
    } catch {
      // TimeoutError: expired. Reset or closed: broken. Closed below.
    }
    // Any result but cancellation (acquire took it) ends the connection.
    if (!entry.isIdle) return;
    const index = this.#idle.indexOf(entry);
    if (index >= 0) this.#idle.splice(index, 1);
    entry.watcher = null;
    this.#discardIdle(entry);
  }

  #discardIdle(entry: IdleEntry): void {
    entry.isIdle = false;
    entry.watcher?.cancel();
    entry.watcher = null;
    this.#discard(entry.conn);
  }

  #discard(conn: Connection): void {
    this.#slotsTaken--;
    this.#close(conn);
    this.#slotFreed();
  }

  /** Closes a connection of the pool's; its slot is the caller's affair. */
  #close(conn: Connection): void {
    this.#settings.delete(conn);
    this.#unverified.delete(conn);
    this.#discarded++;
    conn.close();
    const settled = conn.settled;
    this.#closing.add(settled);
    settled.then(() => this.#closing.delete(settled));
  }

  /**
   * A dial whose connection nobody took has ended: its slot is free. One
   * that dialled as its acquirer gave up (cancelled, aborted) was made and
   * is discarded.
   */
  #dialEnded(dialled: unknown): void {
    this.#connecting--;
    if (dialled instanceof Connection && !dialled.isClosed) {
      this.#created++;
      this.#discard(dialled);
      return;
    }
    this.#slotsTaken--;
    this.#slotFreed();
  }

  /** A slot came free: the first waiter may dial in it. */

  #slotFreed(): void {
    if (this.#isClosed || this.#slotsTaken >= this.#max) return;
    const waiter = this.#firstWaiter();
    if (waiter === undefined) return;
    this.#slotsTaken++;
    this.#connecting++;
    waiter.give(SLOT);
  }

  #firstWaiter(): WaitForConnectionOp | undefined {
    for (const waiter of this.#waiters) {
      this.#waiters.delete(waiter);
      return waiter;
    }
    return undefined;
  }
}

function noop(): void {}

/** Settles once a read started now of bytes the kernel holds has ended. */
function readsAtHandDone(): Promise<void> {
  return Promise.resolve().then(noop).then(noop);
}

/**
 * Fit to go back to the pool: nothing in flight and nothing unread, no
 * error, no end of stream either way (the peer's, or our `closeWrite()`),
 * and no send since the last receive that returned data: a request whose
 * reply was never read (its borrower threw between the two, under `using`)
 * would hand that reply to the next borrower. A receive that timed out
 * leaves its read in flight, a failed send closes: both fail this test.
 */
function isFitForReuse(conn: Connection): boolean {
  return !conn.isClosed && !conn.isEof && !conn.isWriteClosed &&
    !conn.isAwaitingReply &&
    conn.readError === null &&
    conn.writeError === null && conn.buffered === 0 &&
    (!conn.hasPendingRead || conn.readWaiter === UNTOUCHED_READ) &&
    conn.writer === null && !conn.writeQueue?.length &&
    conn.readOwner === null;
}

/** Fit to lend after sitting idle (its watcher's read may be in flight). */
function isFitWhileIdle(conn: Connection): boolean {
  return !conn.isClosed && !conn.isEof && conn.readError === null &&
    conn.buffered === 0;
}

/** For `Pool`'s constructor: a duration option must be >= 0. */
export function checkDuration(name: string, value: number): number {
  if (!(value >= 0)) {
    throw new RangeError(
      `Cannot create pool: ${name} must be >= 0 ms, got ${value}`,
    );
  }
  return value;
}
