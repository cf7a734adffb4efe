// The options, counters and defaults of `Pool`: the public types live here
// so that src/pool.ts holds the behaviour. Re-exported by src/pool.ts.

import type { ConnectOptions } from "./client.ts";
import type { Connection } from "./connection.ts";
import type { Effect, OperationOptions } from "./effects.ts";

/**
 * Where and how a {@linkcode Pool} connects: {@linkcode ConnectOptions}
 * without `deadline` and `signal`, which come from each `acquire()`.
 * `timeout` bounds each connection attempt; `recvTimeout`, `sendTimeout`
 * and `maxLineLength` are the pooled connections' defaults.
 *
 * @example The server a pool dials, and its connections' defaults
 * ```ts
 * import { Pool, type PoolConnectOptions } from "@corio/corio";
 *
 * const upstream: PoolConnectOptions = {
 *   hostname: "127.0.0.1",
 *   port: 6379,
 *   timeout: 1000, // each connection attempt
 *   recvTimeout: 5000, // each receive on a pooled connection
 * };
 * await using pool = new Pool({ connect: upstream, max: 8 });
 * console.log(pool.stats.open); // 0: it dials on the first acquire()
 * ```
 */
export type PoolConnectOptions = Omit<ConnectOptions, "deadline" | "signal">;

/**
 * A custom way to open a pooled connection (a greeting or a login after
 * `connect()`, memory connections in tests; TLS and Unix sockets need none:
 * `connect: { tls }`, `connect: { path }`): a function giving an
 * operation, or a `function*`, that returns a {@linkcode Connection}. It
 * runs in a child of the acquiring coroutine, and gets the acquire's
 * `deadline` and `signal` to pass on (to `connect()`, to a greeting's
 * receive), so that they fail with their own errors. One that ignores them
 * is cut off all the same: at the deadline the acquire throws
 * `TimeoutError` and the dial is cancelled (its `finally` blocks run, and
 * the connections it made with `connect()` close). The pool owns the
 * connection it returns, though `connect()` gave it to the dial: the pool
 * closes it. Coroutines the dial spawns end with it: a reader or a
 * keep-alive for the connection belongs to the borrower, not the dial.
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

/**
 * Options for {@linkcode Pool}.
 *
 * @example One connection, and no waiting for it
 * ```ts
 * import { Pool, PoolExhaustedError, type PoolOptions, run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const options: PoolOptions = { max: 1, maxWaiting: 0, idleTimeout: 10_000, *dial() { return conn; } };
 * const pool = new Pool(options);
 * const error = await run((function* () {
 *   using _lease = yield* pool.acquire();
 *   try {
 *     yield* pool.acquire();
 *   } catch (error) {
 *     return error;
 *   }
 * })());
 * await pool.close();
 * peer.close();
 * console.log(error instanceof PoolExhaustedError); // true
 * ```
 */
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
 *
 * @example A timeout and a signal for one acquire
 * ```ts
 * import { type AcquireOptions, Pool, run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const pool = new Pool({ max: 1, *dial() { return conn; } });
 * const controller = new AbortController();
 * const options: AcquireOptions = { timeout: 1000, signal: controller.signal };
 * await run((function* () {
 *   using lease = yield* pool.acquire(options);
 *   yield* lease.conn.send("hi");
 * })());
 * await pool.close();
 * peer.close();
 * ```
 */
export type AcquireOptions = OperationOptions;

/**
 * Counters of a {@linkcode Pool}; a snapshot.
 *
 * @example Read the counters from pool.stats
 * ```ts
 * import { Pool, run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const pool = new Pool({ max: 2, *dial() { return conn; } });
 * await run((function* () {
 *   using _lease = yield* pool.acquire();
 *   console.log(pool.stats.leased, pool.stats.created); // 1 1
 * })());
 * console.log(pool.stats.idle, pool.stats.open); // 1 1
 * await pool.close();
 * peer.close();
 * ```
 */
export interface PoolStats {
  /** Connections open now: idle plus leased. */
  open: number;
  /** Open connections waiting in the pool. */
  idle: number;
  /** Open connections lent out. */
  leased: number;
  /**
   * Connections being dialled now, a dial cut off by an acquire's deadline
   * included until its `finally` blocks have run.
   */
  connecting: number;
  /** Coroutines waiting in `acquire()`. */
  waiting: number;
  /** Connections dialled so far. */
  created: number;
  /** Connections the pool closed: broken, expired, discarded, or at close. */
  discarded: number;
}

export const DEFAULTS = {
  idleTimeout: 30_000,
  acquireTimeout: Infinity,
  maxWaiting: Infinity,
} as const;
