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

import { addressOf } from "./_address.ts";
import { dialUnowned } from "./client.ts";
import { checkConnectOptions } from "./_connect_options.ts";
import type { Connection } from "./connection.ts";
import type { Effect, Operation } from "./effects.ts";
import type { Coroutine as CoroutineRecord } from "./scheduler.ts";
import {
  checkDuration,
  CurrentCoroutineOp,
  LeaseOwner,
  PoolCore,
} from "./_pool_ops.ts";
import {
  type AcquireOptions,
  DEFAULTS,
  type DialFunction,
  type PoolOptions,
  type PoolStats,
} from "./_pool_options.ts";

export type {
  AcquireOptions,
  DialFunction,
  PoolConnectOptions,
  PoolOptions,
  PoolStats,
} from "./_pool_options.ts";

/**
 * A borrowed connection. Disposing it (`using`, or `release()`) gives the
 * connection back to the pool, unless it saw an error, an end of stream
 * (the peer's, or its own `closeWrite()`), a timeout, or still holds bytes
 * received and unread, or sent since a receive last returned data (a
 * request whose reply was not read: its borrower threw between the two,
 * say), or the coroutine that acquired it is being cancelled (it may have
 * stopped between a request and its reply): then it is closed. `discard()`
 * closes it in any case. A protocol whose requests get no reply pays a
 * new connection per lease.
 *
 * The pool sees only bytes that have reached the connection, and counts
 * no requests: the rest of a reply read in part, the replies to pipelined
 * requests after the first one read, or a reply the peer sends unasked,
 * still on its way when the lease ends, go to the next borrower. If the
 * peer may send more than was read (a reply left half read, pipelined
 * requests, a late or extra reply), call `discard()` instead of releasing
 * unless every reply was read. A view from a borrowing receive
 * (`borrow: true`, `peek()`) ends with the lease.
 *
 * Changes to the connection's `recvTimeout`, `sendTimeout` or
 * `maxLineLength` last as long as the lease: the next borrower gets the
 * connection as it was dialled.
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
  /**
   * True when the connection was lent before (idle in the pool since): the
   * server may have closed it meanwhile, so a request that fails on it
   * before any reply byte (`null`, `ConnectionResetError`) is worth one
   * retry if it is safe to repeat. False for a connection dialled for this
   * lease, where such a failure is the server's answer.
   */
  readonly isReused: boolean;
  /** @internal */ owner: LeaseOwner | null = null;
  #pool: Pool;
  #isEnded = false;

  /**
   * @internal Leases come from {@linkcode Pool.acquire}.
   * @param conn The connection lent.
   * @param pool The pool it goes back to.
   * @param isReused Whether it was lent before.
   */
  constructor(conn: Connection, pool: Pool, isReused = false) {
    this.conn = conn;
    this.#pool = pool;
    this.isReused = isReused;
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
 * A client connection pool (seed 001's `co::pool`): at most `max`
 * connections to one server, lent to coroutines one at a time and reused.
 *
 * - `yield* pool.acquire()` gives a {@linkcode Lease}: an idle connection
 *   (most recently used first), else a new one if fewer than `max` are
 *   open, else it waits. Waiters are served first come, first served.
 * - Idle connections are closed after `idleTimeout`, or as soon as the
 *   server closes them. None is lent that the pool knows to be dead: one
 *   given back a moment ago is lent again only once a read has looked at
 *   what the kernel holds for it, so that a server that hangs up right
 *   after its reply (one that answers once and closes) is seen, the
 *   connection closed and a new one dialled. A server may still close a
 *   connection at any later moment (an idle timeout of its own), and the
 *   borrower find it dead at its first receive (`null`, or
 *   `ConnectionResetError`): retry a request that is safe to repeat.
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
  readonly #core: PoolCore;
  #owners = new WeakMap<CoroutineRecord, LeaseOwner>();
  // Connections lent at least once, for `Lease.isReused`.
  #lent = new WeakSet<Connection>();

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
    const idleTimeout = checkDuration(
      "idleTimeout",
      options.idleTimeout ?? DEFAULTS.idleTimeout,
    );
    const acquireTimeout = checkDuration(
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
    let where: string;
    let dialConnection: DialFunction;
    if (connect !== undefined) {
      checkConnectOptions(connect);
      const connectOptions = connect;
      dialConnection = (acquire) =>
        dialUnowned({ ...connectOptions, ...acquire });
      where = addressOf(connect);
    } else {
      if (typeof dial !== "function") {
        throw new TypeError("Cannot create pool: dial must be a function");
      }
      dialConnection = dial;
      where = "dial()";
    }
    this.#core = new PoolCore({
      where,
      max,
      idleTimeout,
      acquireTimeout,
      maxWaiting,
      dial: dialConnection,
    });
  }

  /** The pool's counters, as of now. */
  get stats(): PoolStats {
    return this.#core.stats;
  }

  /** True once {@linkcode Pool.close} was called. */
  get isClosed(): boolean {
    return this.#core.isClosed;
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
    const conn = yield* this.#core.acquire(co, options);
    return this.#lend(conn, co);
  }

  #lend(conn: Connection, co: CoroutineRecord): Lease {
    conn.isAwaitingReply = false; // counts from here (a dial's greeting)
    const lent = this.#lent;
    const lease = new Lease(conn, this, lent.has(conn));
    lent.add(conn);
    let owner = this.#owners.get(co);
    if (owner === undefined) {
      owner = new LeaseOwner(co);
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
    return this.#core.close();
  }

  /** Same as {@linkcode Pool.close}: what `await using` calls. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** @internal A lease ended: reuse, hand over, or close its connection. */
  _return(lease: Lease, isDiscard: boolean): void {
    const owner = lease.owner!;
    lease.owner = null;
    owner.leases.delete(lease);
    // Given back by a coroutine being cancelled (`using` disposes in its
    // cleanup): it stopped at an unknown point of its exchange, maybe
    // between a request and its reply, which the next borrower would read.
    this.#core.giveBack(lease.conn, isDiscard || owner.co.isCancelled);
  }
}
