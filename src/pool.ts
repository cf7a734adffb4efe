/**
 * `Pool`: seed 001's `co::pool` with its `pool_guard`. Client coroutines
 * borrow a connection with `using lease = yield* pool.acquire()`, and the
 * lease gives it back when the block ends.
 *
 * How it works, and why:
 * - The pool's connections belong to no coroutine (they are dialled
 *   without adoption), so they outlive the coroutine that acquired them.
 *   A lease does belong to its acquirer: if that coroutine ends without
 *   disposing it, the connection is closed and its slot freed.
 * - An idle connection is watched by a small coroutine on the pool's own
 *   scheduler (with the acquirers' clock): it waits in `recv` with
 *   `idleTimeout` as the timeout. A timeout means the connection expired; a
 *   result (end of stream, reset, unsolicited bytes) means the server
 *   dropped it. Either way it is closed at once. So idle expiry uses the
 *   scheduler's one deadline queue, runs on the virtual clock in tests, and
 *   arms no timer at all while nothing is idle. Acquiring cancels the
 *   watcher; its read stays in flight and the borrower's `recv` gets it.
 * - Idle sockets and the pool's timer are unref'd: an idle pool never keeps
 *   the process alive.
 *
 * @module
 */

import { checkPort, type ConnectOptions, dialUnowned } from "./client.ts";
import type { Connection } from "./connection.ts";
import {
  type Effect,
  Op,
  type Operation,
  type OperationOptions,
  PENDING,
} from "./effects.ts";
import { PoolClosedError, PoolExhaustedError, TimeoutError } from "./errors.ts";
import {
  type Coroutine as CoroutineRecord,
  type Resource,
  Scheduler,
  type Task,
} from "./scheduler.ts";
import { type Clock, systemClock } from "./timers.ts";

/**
 * Where and how a {@linkcode Pool} connects: {@linkcode ConnectOptions}
 * without `deadline` and `signal`, which come from each `acquire()`.
 * `timeout` bounds each connection attempt; `recvTimeout`, `sendTimeout`
 * and `maxLineLength` are the pooled connections' defaults.
 */
export type PoolConnectOptions = Omit<ConnectOptions, "deadline" | "signal">;

/**
 * A custom way to open a pooled connection (TLS, a Unix socket, memory
 * connections in tests): a function giving an operation, or a `function*`,
 * that returns a {@linkcode Connection}. It runs inside the acquiring
 * coroutine and gets the acquire's `deadline` and `signal`. The connection
 * it returns must belong to no coroutine: the pool closes it.
 *
 * @example In-memory connections for a test
 * ```ts
 * import { Pool } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const peers: unknown[] = [];
 * const pool = new Pool({
 *   max: 2,
 *   *dial() {
 *     const [client, server] = memoryConnPair();
 *     peers.push(server);
 *     return client;
 *   },
 * });
 * await pool.close();
 * ```
 */
export type DialFunction = (options: OperationOptions) => {
  [Symbol.iterator](): Iterator<Effect, Connection, unknown>;
};

/** Options for {@linkcode Pool}. */
export interface PoolOptions {
  /**
   * The server to connect to, and the connections' defaults. Give this or
   * `dial`.
   */
  connect?: PoolConnectOptions;
  /** Opens a connection instead of `connect` (see {@linkcode DialFunction}). */
  dial?: DialFunction;
  /** Most connections open at once, idle, lent and being dialled together. */
  max: number;
  /**
   * How long a connection may sit idle before the pool closes it, in ms.
   * @default {30000}
   */
  idleTimeout?: number;
  /**
   * Default timeout of `acquire()`, in ms: waiting for a connection and
   * dialling one together.
   * @default {Infinity}
   */
  acquireTimeout?: number;
  /**
   * Most coroutines waiting for a connection at once; one more fails at
   * once with `PoolExhaustedError`. 0: never wait.
   * @default {Infinity}
   */
  maxWaiting?: number;
}

/**
 * Options for {@linkcode Pool.acquire}: `timeout` (default the pool's
 * `acquireTimeout`), `deadline` and `signal`.
 */
export type AcquireOptions = OperationOptions;

/** Counters of a {@linkcode Pool}; a snapshot. */
export interface PoolStats {
  /** Connections open now: idle plus leased. */
  open: number;
  /** Open connections waiting in the pool. */
  idle: number;
  /** Open connections lent out. */
  leased: number;
  /** Connections being dialled now. */
  connecting: number;
  /** Coroutines waiting in `acquire()`. */
  waiting: number;
  /** Connections dialled so far. */
  created: number;
  /** Connections the pool closed: broken, expired, discarded, or at close. */
  discarded: number;
}

const DEFAULTS = {
  idleTimeout: 30_000,
  acquireTimeout: Infinity,
  maxWaiting: Infinity,
} as const;

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
 * connection is lent: a borrower's `recv` that parks replaces it as the
 * connection's read waiter. So at release, a read still in flight with the
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

/**
 * A borrowed connection. Disposing it (`using`, or `release()`) gives the
 * connection back to the pool, unless it saw an error, an end of stream, a
 * timeout, or still has bytes in flight: then it is closed. `discard()`
 * closes it in any case.
 *
 * If a coroutine fails between sending a request and reading its reply,
 * call `discard()` (the reply is still on its way; the next borrower would
 * read it).
 *
 * @example
 * ```ts
 * import { Pool, run, serve } from "@corio/corio";
 *
 * await using server = serve({ hostname: "127.0.0.1" }, function* (conn) {
 *   for (let line; (line = yield* conn.recvLine()) !== null;) {
 *     yield* conn.send(line.toUpperCase() + "\n");
 *   }
 * });
 * await using pool = new Pool({ connect: { port: server.addr.port }, max: 2 });
 * const reply = await run((function* () {
 *   using lease = yield* pool.acquire({ timeout: 1000 });
 *   yield* lease.conn.send("hello\n");
 *   return yield* lease.conn.recvLine({ timeout: 1000 });
 * })());
 * console.log(reply); // HELLO
 * ```
 */
export class Lease implements Disposable {
  /** The borrowed connection; do not use it after the lease ends. */
  readonly conn: Connection;
  /** @internal */ owner: LeaseOwner | null = null;
  #pool: Pool;
  #isEnded = false;

  /**
   * @internal Leases come from {@linkcode Pool.acquire}.
   * @param conn The connection lent.
   * @param pool The pool it goes back to.
   */
  constructor(conn: Connection, pool: Pool) {
    this.conn = conn;
    this.#pool = pool;
  }

  /** True once the lease was released or discarded. */
  get isEnded(): boolean {
    return this.#isEnded;
  }

  /** Gives the connection back (closed instead if unfit). Idempotent. */
  release(): void {
    if (this.#isEnded) return;
    this.#isEnded = true;
    this.#pool._return(this, false);
  }

  /** Closes the connection instead of giving it back. Idempotent. */
  discard(): void {
    if (this.#isEnded) return;
    this.#isEnded = true;
    this.#pool._return(this, true);
  }

  /** Same as {@linkcode Lease.release}: what `using` calls. */
  [Symbol.dispose](): void {
    this.release();
  }
}

/**
 * The leases one coroutine holds from one pool: discarded when the
 * coroutine ends without disposing them.
 */
class LeaseOwner implements Resource {
  readonly leases: Set<Lease> = new Set();
  #settled: Promise<void>[] | null = null;
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

/** Internal: gives the running coroutine's record, without waiting. */
class CurrentCoroutineOp extends Op<CoroutineRecord> {
  readonly op = "acquire";
  #co: CoroutineRecord | null = null;
  constructor() {
    super(undefined);
    this.immediate = true;
  }
  override perform(co: CoroutineRecord): void {
    this.#co = co;
  }
  protected poll(): CoroutineRecord | typeof PENDING {
    return this.#co ?? PENDING;
  }
  park(): boolean {
    return true;
  }
  unpark(): void {}
  protected timedOut(): CoroutineRecord {
    throw new TimeoutError(this.op);
  }
}

/**
 * Internal: waits for an idle connection or a free slot, first come first
 * served. A releasing coroutine hands its connection straight to the
 * first waiter (`give`), so nobody can barge in between.
 */
class WaitForConnectionOp extends Op<Grant> {
  readonly op = "acquire";
  waiter: CoroutineRecord | null = null;
  #grant: Grant | Error | null = null;
  #isExhausted = false;
  constructor(
    readonly pool: Pool,
    options: OperationOptions,
    readonly reportedTimeout: number | undefined,
  ) {
    super(options);
  }
  protected override begin(): void {
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
  protected poll(): Grant | typeof PENDING {
    const grant = this.#grant;
    if (grant !== null) {
      this.#grant = null;
      if (grant instanceof Error) throw grant;
      return grant;
    }
    if (this.#isExhausted) {
      throw new PoolExhaustedError(this.pool._maxWaiting, this.pool._where);
    }
    return this.pool._tryTake();
  }
  park(co: CoroutineRecord): boolean {
    const pool = this.pool;
    if (pool._canServe()) return true;
    if (pool._waitingCount >= pool._maxWaiting) {
      this.#isExhausted = true;
      return true;
    }
    this.waiter = co;
    pool._enqueue(this);
    return false;
  }
  unpark(): void {
    this.waiter = null;
    this.pool._dequeue(this);
  }
  protected timedOut(): Grant {
    throw new TimeoutError(
      this.op,
      this.reportedTimeout,
      `from pool of ${this.pool._where}`,
    );
  }
}

/**
 * A client connection pool (seed 001's `co::pool`): at most `max`
 * connections to one server, lent to coroutines one at a time and reused.
 *
 * - `yield* pool.acquire()` gives a {@linkcode Lease}: an idle connection
 *   (most recently used first), else a new one if fewer than `max` are
 *   open, else it waits. Waiters are served first come, first served.
 * - Idle connections are closed after `idleTimeout`, or as soon as the
 *   server closes them; a dead one is never handed out.
 * - `close()` (or `await using`) closes idle connections, fails waiters
 *   with `PoolClosedError`, and closes lent ones when they come back.
 *
 * The pool's timers run on the clock of the first coroutine that acquires
 * (a `VirtualClock` in tests); use one clock per pool.
 *
 * @example Ten client coroutines sharing two connections
 * ```ts
 * import { Pool, run, serve, spawn } from "@corio/corio";
 *
 * await using server = serve({ hostname: "127.0.0.1" }, function* (conn) {
 *   for (let chunk; (chunk = yield* conn.recv()) !== null;) yield* conn.send(chunk);
 * });
 * await using pool = new Pool({ connect: { port: server.addr.port }, max: 2 });
 *
 * function* client(id: number) {
 *   using lease = yield* pool.acquire({ timeout: 1000 });
 *   yield* lease.conn.send(`client ${id}\n`);
 *   return yield* lease.conn.recvLine({ timeout: 1000 });
 * }
 * const replies = await run((function* () {
 *   const tasks = [];
 *   for (let id = 0; id < 10; id++) tasks.push(yield* spawn(client(id)));
 *   const replies = [];
 *   for (const task of tasks) replies.push(yield* task.join());
 *   return replies;
 * })());
 * console.log(replies.length, pool.stats.created); // 10 2
 * ```
 */
export class Pool implements AsyncDisposable {
  /** @internal */ readonly _where: string;
  /** @internal */ readonly _maxWaiting: number;
  readonly #max: number;
  readonly #idleTimeout: number;
  readonly #acquireTimeout: number;
  readonly #dial: DialFunction;
  #housekeeper: Scheduler | null = null;
  #idle: IdleEntry[] = [];
  #waiters = new Set<WaitForConnectionOp>();
  #owners = new WeakMap<CoroutineRecord, LeaseOwner>();
  #closing = new Set<Promise<void>>();
  #isClosed = false;
  // Counts against max: open connections plus dials in progress.
  #slotsTaken = 0;
  #connecting = 0;
  #leased = 0;
  #created = 0;
  #discarded = 0;

  /**
   * Makes an empty pool; it dials on demand, from the first `acquire()`.
   *
   * @param options The server (or a dial function), `max`, and timeouts.
   * @throws {TypeError} Without `connect` or `dial`, or with both.
   * @throws {RangeError} For `max` < 1, a negative timeout, a bad port.
   */
  constructor(options: PoolOptions) {
    const { connect, dial, max } = options ?? {};
    if ((connect === undefined) === (dial === undefined)) {
      throw new TypeError(
        "Cannot create pool: give either connect ({ hostname, port }) or dial",
      );
    }
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(
        `Cannot create pool: max must be an integer >= 1, got ${max}`,
      );
    }
    this.#max = max;
    this.#idleTimeout = checkDuration(
      "idleTimeout",
      options.idleTimeout ?? DEFAULTS.idleTimeout,
    );
    this.#acquireTimeout = checkDuration(
      "acquireTimeout",
      options.acquireTimeout ?? DEFAULTS.acquireTimeout,
    );
    const maxWaiting = options.maxWaiting ?? DEFAULTS.maxWaiting;
    if (
      !(maxWaiting === Infinity || Number.isInteger(maxWaiting)) ||
      maxWaiting < 0
    ) {
      throw new RangeError(
        `Cannot create pool: maxWaiting must be an integer >= 0, got ${maxWaiting}`,
      );
    }
    this._maxWaiting = maxWaiting;
    if (connect !== undefined) {
      checkPort(connect.port);
      const connectOptions = connect;
      this.#dial = (acquire) => dialUnowned({ ...connectOptions, ...acquire });
      this._where = `${connect.hostname ?? "127.0.0.1"}:${connect.port}`;
    } else {
      if (typeof dial !== "function") {
        throw new TypeError("Cannot create pool: dial must be a function");
      }
      this.#dial = dial;
      this._where = "dial()";
    }
  }

  /** The pool's counters, as of now. */
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

  /** True once {@linkcode Pool.close} was called. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /**
   * Borrows a connection: an idle one, a new one, or the next one given
   * back. Use it with `using lease = yield* pool.acquire()`.
   *
   * Deadline: `timeout` (default `acquireTimeout`) or `deadline` bounds the
   * wait and the dial together; `signal` aborts both.
   * Errors: `TimeoutError` (op `"acquire"`, or `"connect"` when the
   * connect `timeout` struck first); `ConnectError` from the dial;
   * `PoolExhaustedError` at once when `maxWaiting` coroutines already wait;
   * `PoolClosedError`; the signal's reason.
   * State after failure: the pool is unchanged, a failed dial frees its slot.
   *
   * @param options Deadline and signal.
   * @returns An operation that gives a {@linkcode Lease}.
   * @throws {RangeError} For a negative or NaN timeout.
   *
   * @example Give up after 100 ms
   * ```ts
   * import { Pool, run, TimeoutError } from "@corio/corio";
   * import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
   *
   * const [conn, peer] = memoryConnPair();
   * const pool = new Pool({ max: 1, *dial() { return conn; } });
   * const clock = new VirtualClock();
   * const error = await run((function* () {
   *   using _held = yield* pool.acquire();
   *   try {
   *     yield* pool.acquire({ timeout: 100 });
   *   } catch (error) {
   *     return error;
   *   }
   * })(), { clock });
   * await pool.close();
   * peer.close();
   * console.log(error instanceof TimeoutError, clock.now()); // true 100
   * ```
   */
  acquire(options?: AcquireOptions): Operation<Lease> {
    const timeout = options?.timeout;
    if (timeout !== undefined && !(timeout >= 0)) {
      throw new RangeError(
        `Cannot acquire: timeout must be >= 0, got ${timeout}`,
      );
    }
    if (options?.deadline !== undefined && Number.isNaN(options.deadline)) {
      throw new RangeError("Cannot acquire: deadline is NaN");
    }
    // Each `yield*` runs afresh; a sync generator serves `yield*` in async
    // coroutines as well (its results are plain objects), as Op does.
    return {
      [Symbol.iterator]: () => this.#acquire(options),
      [Symbol.asyncIterator]: () =>
        this.#acquire(options) as unknown as AsyncIterator<
          Effect,
          Lease,
          unknown
        >,
    };
  }

  *#acquire(
    options: AcquireOptions | undefined,
  ): Generator<Effect, Lease, unknown> {
    const co = yield* new CurrentCoroutineOp();
    const scheduler = co.scheduler;
    this.#housekeeper ??= new Scheduler({
      clock: scheduler.clock === systemClock
        ? unrefSystemClock
        : scheduler.clock,
    });
    const timeout = options?.timeout ??
      (options?.deadline === undefined ? this.#acquireTimeout : undefined);
    let deadline = options?.deadline ?? Infinity;
    if (timeout !== undefined && timeout !== Infinity) {
      deadline = Math.min(deadline, scheduler.now() + timeout);
    }
    const signal = options?.signal;
    const reported = timeout === Infinity ? undefined : timeout;
    const grant = yield* new WaitForConnectionOp(
      this,
      { deadline, signal },
      reported,
    );
    if (grant !== SLOT) return this.#lend(grant, co);
    let conn: Connection | null = null;
    try {
      conn = yield* this.#dial({ deadline, signal });
    } catch (error) {
      if (
        error instanceof TimeoutError && error.op !== "acquire" &&
        scheduler.now() >= deadline
      ) {
        throw new TimeoutError(
          "acquire",
          reported,
          `from pool of ${this._where}`,
        );
      }
      throw error;
    } finally {
      this.#connecting--;
      if (conn === null) {
        this.#slotsTaken--;
        this.#slotFreed();
      }
    }
    this.#created++;
    this.#leased++;
    if (this.#isClosed) {
      this.#leased--;
      this.#discard(conn);
      throw new PoolClosedError(this._where);
    }
    return this.#lend(conn, co);
  }

  #lend(conn: Connection, co: CoroutineRecord): Lease {
    const lease = new Lease(conn, this);
    let owner = this.#owners.get(co);
    if (owner === undefined) {
      owner = new LeaseOwner();
      this.#owners.set(co, owner);
      co.adopt(owner);
    }
    owner.leases.add(lease);
    lease.owner = owner;
    return lease;
  }

  /**
   * Closes the idle connections, fails every waiter with
   * `PoolClosedError`, and marks the pool so that lent connections are
   * closed when they come back. Idempotent.
   *
   * @returns Settles once every connection the pool closed is released by
   *   the runtime.
   *
   * @example
   * ```ts
   * import { Pool } from "@corio/corio";
   *
   * const pool = new Pool({ connect: { port: 9999 }, max: 4 });
   * await pool.close();
   * console.log(pool.isClosed); // true
   * ```
   */
  close(): Promise<void> {
    if (!this.#isClosed) {
      this.#isClosed = true;
      const error = new PoolClosedError(this._where);
      const waiters = [...this.#waiters];
      this.#waiters.clear();
      for (const waiter of waiters) waiter.give(error);
      const idle = this.#idle;
      this.#idle = [];
      for (const entry of idle) this.#discardIdle(entry);
    }
    return Promise.all(this.#closing).then(() => {});
  }

  /** Same as {@linkcode Pool.close}: what `await using` calls. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---- internals used by Lease and WaitForConnectionOp

  /** @internal */
  get _waitingCount(): number {
    return this.#waiters.size;
  }

  /** @internal True when `_tryTake` would not wait. */
  _canServe(): boolean {
    return this.#isClosed ||
      (this.#waiters.size === 0 &&
        (this.#idle.length > 0 || this.#slotsTaken < this.#max));
  }

  /** @internal An idle connection, a reserved slot to dial in, or PENDING. */
  _tryTake(): Grant | typeof PENDING {
    if (this.#isClosed) throw new PoolClosedError(this._where);
    if (this.#waiters.size > 0) return PENDING; // first come, first served
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
    if (this.#slotsTaken < this.#max) {
      this.#slotsTaken++;
      this.#connecting++;
      return SLOT;
    }
    return PENDING;
  }

  /** @internal */
  _enqueue(waiter: WaitForConnectionOp): void {
    this.#waiters.add(waiter);
  }

  /** @internal */
  _dequeue(waiter: WaitForConnectionOp): void {
    this.#waiters.delete(waiter);
  }

  /** @internal A lease ended: reuse, hand over, or close its connection. */
  _return(lease: Lease, isDiscard: boolean): void {
    lease.owner?.leases.delete(lease);
    lease.owner = null;
    const conn = lease.conn;
    this.#leased--;
    if (isDiscard || this.#isClosed || !isFitForReuse(conn)) {
      this.#discard(conn);
      return;
    }
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
    try {
      yield* entry.conn.recv({ timeout: this.#idleTimeout });
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
    this.#discarded++;
    conn.close();
    const settled = conn.settled;
    this.#closing.add(settled);
    settled.then(() => this.#closing.delete(settled));
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

/**
 * Fit to go back to the pool: nothing in flight and nothing unread, no
 * error, no end of stream. A receive that timed out leaves its read in
 * flight, a failed send closes: both fail this test.
 */
function isFitForReuse(conn: Connection): boolean {
  return !conn.isClosed && !conn.isEof && conn.readError === null &&
    conn.writeError === null && conn.buffered === 0 &&
    (!conn.hasPendingRead || conn.readWaiter === UNTOUCHED_READ) &&
    conn.writer === null && conn.writeQueue.length === 0 &&
    conn.readOwner === null;
}

/** Fit to lend after sitting idle (its watcher's read may be in flight). */
function isFitWhileIdle(conn: Connection): boolean {
  return !conn.isClosed && !conn.isEof && conn.readError === null &&
    conn.buffered === 0;
}

function checkDuration(name: string, value: number): number {
  if (!(value >= 0)) {
    throw new RangeError(
      `Cannot create pool: ${name} must be >= 0 ms, got ${value}`,
    );
  }
  return value;
}
