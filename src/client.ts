/**
 * The client side: `connect` to a server, and `run` a top-level coroutine
 * (a client, a test).
 *
 * @module
 */

import { Connection } from "./connection.ts";
import {
  checkConnectionOptions,
  type ConnectionOptions,
} from "./connection_options.ts";
import {
  type Coroutine,
  Op,
  type Operation,
  type OperationOptions,
  PENDING,
} from "./effects.ts";
import { CancelledError, ConnectError, TimeoutError } from "./errors.ts";
import { type Coroutine as CoroutineRecord, Scheduler } from "./scheduler.ts";
import type { Clock } from "./timers.ts";

/**
 * Options for {@linkcode connect}.
 *
 * @example Address, handshake timeout and the connection's defaults
 * ```ts
 * import { connect, type ConnectOptions, run, serve } from "@corio/corio";
 *
 * await using server = serve({ hostname: "127.0.0.1" }, function* (conn) {
 *   yield* conn.send("hi\n");
 * });
 * const options: ConnectOptions = {
 *   hostname: "127.0.0.1",
 *   port: server.addr.port,
 *   timeout: 1000, // the handshake
 *   recvTimeout: 1000, // each receive on the connection
 * };
 * const line = await run((async function* () {
 *   const conn = yield* connect(options);
 *   return yield* conn.recvLine();
 * })());
 * console.log(line); // hi
 * ```
 */
export interface ConnectOptions
  extends OperationOptions, Omit<ConnectionOptions, "isExternal"> {
  /** The server's port. */
  port: number;
  /**
   * The server's host name or address.
   * @default {"127.0.0.1"}
   */
  hostname?: string;
  /**
   * Disable Nagle's algorithm (TCP_NODELAY), as Go does by default: small
   * request/response messages go out at once instead of waiting for an ACK.
   * @default {true}
   */
  noDelay?: boolean;
}

class ConnectOp extends Op<Connection> {
  get op(): string {
    return "connect";
  }
  #connection: Connection | null = null;
  #error: unknown = null;
  #waiter: CoroutineRecord | null = null;
  #abort: AbortController | null = null;
  /**
   * @param options Address, deadline and the connection's defaults.
   * @param isOwned True: the connecting coroutine adopts the connection.
   *   A pool dials with false, so its connections outlive the acquirer.
   */
  constructor(readonly options: ConnectOptions, readonly isOwned: boolean) {
    super(options);
    this.effect.external = true;
  }
  override begin(): void {
    this.#connection = null;
    this.#error = null;
    this.#abort = null;
  }
  poll(): Connection | typeof PENDING {
    if (this.#error !== null) throw this.#error;
    return this.#connection ?? PENDING;
  }
  park(co: CoroutineRecord): boolean {
    if (this.#connection !== null || this.#error !== null) return true;
    this.#waiter = co;
    if (this.#abort !== null) return false; // already dialling
    const abort = this.#abort = new AbortController();
    const { hostname = "127.0.0.1", port } = this.options;
    Deno.connect({ hostname, port, transport: "tcp", signal: abort.signal })
      .then((conn) => {
        // Aborting after the handshake does not close the socket (measured),
        // so a connection that arrives after a timeout is closed here.
        if (abort.signal.aborted) return conn.close();
        if (this.options.noDelay !== false) conn.setNoDelay(true);
        const connection = new Connection(conn, this.options);
        connection.isPaced = true;
        if (this.isOwned) co.adopt(connection);
        this.#connection = connection;
        this.#wake();
      }, (error) => {
        if (abort.signal.aborted) return;
        // No network access granted is no network failure: retrying it
        // (as a ConnectError invites) cannot help.
        this.#error = error instanceof Deno.errors.NotCapable ||
            error instanceof Deno.errors.PermissionDenied
          ? error
          : new ConnectError(hostname, port, describe(error), {
            cause: error,
          });
        this.#wake();
      });
    return false;
  }
  #wake(): void {
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.wake();
  }
  unpark(): void {
    this.#waiter = null;
    this.#abort?.abort();
  }
  override cancelled(): void {
    this.#abort?.abort();
  }
  timedOut(): Connection {
    const { hostname = "127.0.0.1", port } = this.options;
    throw new TimeoutError(
      this.op,
      this.effect.timeout,
      `to ${hostname}:${port}`,
    );
  }
}

function describe(error: unknown): string {
  if (error instanceof Deno.errors.ConnectionRefused) {
    return "connection refused";
  }
  if (error instanceof Deno.errors.TimedOut) return "timed out in the kernel";
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * Connects to a TCP server. The connection belongs to the coroutine that
 * connected: it is closed when that coroutine ends, however it ends.
 *
 * Deadline: `timeout`/`deadline`/`signal` for the handshake.
 * Errors: `ConnectError` (refused, unreachable: names the address);
 * `TimeoutError`; Deno's `NotCapable` as it is, without `--allow-net`
 * (retrying cannot help). State after failure: no socket is left open.
 *
 * @param options Address, deadline, and the connection's defaults.
 * @throws {RangeError} At the call, for a bad port or a nonsense default
 *   (a negative `recvTimeout`, a `maxLineLength` below 1), before any dial.
 * @returns An operation that gives the {@linkcode Connection}.
 *
 * @example
 * ```ts
 * import { connect, run, serve } from "@corio/corio";
 *
 * await using server = serve({ hostname: "127.0.0.1" }, function* (conn) {
 *   yield* conn.send("hi\n");
 * });
 * const line = await run((async function* () {
 *   const conn = yield* connect({ port: server.addr.port, timeout: 1000 });
 *   return yield* conn.recvLine();
 * })());
 * console.log(line); // hi
 * ```
 */
export function connect(options: ConnectOptions): Operation<Connection> {
  checkConnectOptions(options);
  return new ConnectOp(options, true);
}

/**
 * Internal: `connect` without ownership. The connection belongs to no
 * coroutine, so the caller must close it (the pool does). Not exported
 * from mod.ts.
 */
export function dialUnowned(options: ConnectOptions): Operation<Connection> {
  checkConnectOptions(options);
  return new ConnectOp(options, false);
}

/**
 * Internal: what `connect` checks at the call, before any dial: the port
 * and the connection's defaults (a `Pool` checks its `connect` so too).
 */
export function checkConnectOptions(options: ConnectOptions): void {
  checkPort(options.port);
  checkConnectionOptions(options);
}

/** Throws a RangeError unless `port` is a port number; `action` names the call. */
export function checkPort(port: number, action = "connect"): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Cannot ${action}: port must be 0-65535, got ${port}`);
  }
}

/**
 * Options for {@linkcode run}.
 *
 * @example Cancel a run from outside with a signal
 * ```ts
 * import { delay, run, type RunOptions } from "@corio/corio";
 *
 * const controller = new AbortController();
 * const options: RunOptions = { signal: controller.signal };
 * const running = run((function* () { yield* delay(Infinity); })(), options);
 * controller.abort(new Error("stopped"));
 * const reason = await running.catch((error) => error.message);
 * console.log(reason); // stopped
 * ```
 */
export interface RunOptions {
  /**
   * The clock: `VirtualClock` in tests.
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Aborting it cancels the coroutine (its `finally` blocks run); `run`
   * then rejects with the signal's reason. A coroutine in a plain `await`
   * meets the cancel at its next operation: one that returns before any
   * completes, and `run` gives its result.
   */
  signal?: AbortSignal;
  /**
   * Run on this scheduler instead of a new one (with its clock).
   */
  scheduler?: Scheduler;
}

/**
 * Runs a coroutine to completion on a scheduler and resolves with its
 * return value. What it owns (connections it opened, children it spawned)
 * is closed and cancelled before the promise settles, however it ends.
 *
 * @param coroutine A generator object: `client()`, not `client`.
 * @param options Clock, signal or scheduler.
 * @returns Its return value.
 * @throws What the coroutine threw; the signal's reason if aborted.
 *
 * @example
 * ```ts
 * import { delay, run } from "@corio/corio";
 *
 * const answer = await run((async function* () {
 *   yield* delay(1);
 *   return 42;
 * })());
 * console.log(answer); // 42
 * ```
 */
export function run<T>(
  coroutine: Coroutine<T>,
  options: RunOptions = {},
): Promise<T> {
  const { signal } = options;
  const scheduler = options.scheduler ??
    new Scheduler({ clock: options.clock });
  if (signal?.aborted) {
    coroutine.return?.(undefined as T);
    return Promise.reject(signal.reason);
  }
  const task = scheduler.spawn(coroutine);
  if (signal === undefined) return task.finished;
  const onAbort = () => task.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  return task.finished.then(
    (value) => {
      signal.removeEventListener("abort", onAbort);
      return value;
    },
    (error) => {
      signal.removeEventListener("abort", onAbort);
      throw error instanceof CancelledError && signal.aborted
        ? signal.reason
        : error;
    },
  );
}
