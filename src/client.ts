/**
 * The client side: `connect` to a server, and `run` a top-level coroutine
 * (a client, a test).
 *
 * @module
 */

import { Connection } from "./connection.ts";
import { type Coroutine, Op, type Operation, PENDING } from "./effects.ts";
import { CancelledError, TimeoutError } from "./errors.ts";
import { addressOf } from "./_address.ts";
import { closeQuietly, dial } from "./_dial.ts";
import {
  type AnyConnectOptions,
  checkConnectOptions,
  type ClientTlsOptions,
  type ConnectOptions,
  type TcpConnectOptions,
  type UnixConnectOptions,
} from "./_connect_options.ts";

import { type Coroutine as CoroutineRecord, Scheduler } from "./scheduler.ts";
import type { Clock } from "./timers.ts";

export type {
  ClientTlsOptions,
  ConnectOptions,
  TcpConnectOptions,
  UnixConnectOptions,
};

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
  constructor(
    readonly options: AnyConnectOptions,
    readonly isOwned: boolean,
  ) {
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
    dial(this.options, abort.signal).then((conn) => {
      if (abort.signal.aborted) return closeQuietly(conn);
      const connection = new Connection(conn, this.options);
      connection.isPaced = true;
      if (this.isOwned) co.adopt(connection);
      this.#connection = connection;
      this.#wake();
    }, (error) => {
      if (abort.signal.aborted) return;
      this.#error = error;
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
    throw new TimeoutError(
      this.op,
      this.effect.timeoutThatFired,
      `to ${addressOf(this.options)}`,
    );
  }
}

/**
 * Connects to a TCP server, over TLS with `tls`, or to a Unix socket with
 * `path`. The connection belongs to the coroutine that connected: it is
 * closed when that coroutine ends, however it ends.
 *
 * Deadline: `timeout`/`deadline`/`signal` for the TCP handshake and, with
 * `tls`, the TLS handshake too.
 * Errors: `ConnectError` (refused, unreachable, no socket file: names the
 * address; its `reason` says which, for code); `TlsHandshakeError`, a
 * `ConnectError`, when the TLS handshake fails (an untrusted certificate,
 * the wrong name, a server that is no TLS server); `TimeoutError`; Deno's
 * `NotCapable` as it is, without `--allow-net` (retrying cannot help).
 * State after failure: no socket is left open.
 *
 * @param options Address, deadline, and the connection's defaults.
 * @throws {RangeError} At the call, for a bad port or a nonsense default
 *   (a negative `recvTimeout`, a `maxLineLength` below 1), before any dial.
 * @throws {TypeError} At the call, for options that mix kinds (`path` with
 *   `port`) or bad `tls` settings.
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
 *
 * @example Over TLS, trusting a private CA
 * ```ts ignore
 * import { connect, run } from "@corio/corio";
 *
 * const caCerts = [await Deno.readTextFile("ca.pem")];
 * const line = await run((async function* () {
 *   const conn = yield* connect({ hostname: "localhost", port: 8443, tls: { caCerts }, timeout: 3000 });
 *   yield* conn.send("hello\n");
 *   return yield* conn.recvLine({ timeout: 3000 });
 * })());
 * console.log(line); // hello
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
export function dialUnowned(
  options: AnyConnectOptions,
): Operation<Connection> {
  checkConnectOptions(options);
  return new ConnectOp(options, false);
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
   * completes, and `run` gives its result. A coroutine aborted before its
   * first step (`run()` starts it a microtask later) never runs: no
   * `finally` either.
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
