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
import { CancelledError, TimeoutError } from "./errors.ts";
import { addressOf, closeQuietly, dial, type DialOptions } from "./_dial.ts";
import { type Coroutine as CoroutineRecord, Scheduler } from "./scheduler.ts";
import type { Clock } from "./timers.ts";

/**
 * Options for a TCP or TLS {@linkcode connect}.
 *
 * @example Address, handshake timeout and the connection's defaults
 * ```ts
 * import { connect, run, serve, type TcpConnectOptions } from "@corio/corio";
 *
 * await using server = serve({ hostname: "127.0.0.1" }, function* (conn) {
 *   yield* conn.send("hi\n");
 * });
 * const options: TcpConnectOptions = {
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
export interface TcpConnectOptions
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
  /**
   * Speak TLS: `true` verifies the server's certificate against the
   * default root certificates and `hostname`; an object adds `caCerts`
   * and can verify another `serverName`. The connect's deadline covers the
   * TCP connect and the TLS handshake; a failed handshake throws
   * `TlsHandshakeError`.
   * @default {false}
   */
  tls?: boolean | ClientTlsOptions;
  /** Unix sockets only: see {@linkcode UnixConnectOptions}. */
  path?: never;
}

/**
 * TLS settings of a {@linkcode connect}. `caCerts` is `Deno.connectTls`'s
 * own name; Deno has no name for the other, so `serverName` is Go's
 * (`tls.Config.ServerName`) and rustls's: the name the certificate must
 * carry, sent as SNI, when it is not the `hostname` dialled.
 *
 * @example Trust a private CA; dial an address, verify a name
 * ```ts ignore
 * import { connect, type ClientTlsOptions, run } from "@corio/corio";
 *
 * const tls: ClientTlsOptions = {
 *   caCerts: [await Deno.readTextFile("ca.pem")],
 *   serverName: "db.internal",
 * };
 * await run((async function* () {
 *   const conn = yield* connect({ hostname: "10.0.0.5", port: 5433, tls, timeout: 3000 });
 *   yield* conn.send("PING\r\n");
 * })());
 * ```
 */
export interface ClientTlsOptions {
  /**
   * Root certificates (PEM) trusted besides the default ones (Mozilla's):
   * a private CA, or a self-signed server certificate's CA.
   */
  caCerts?: string[];
  /**
   * The name the server's certificate must carry (and the SNI sent).
   * @default {the `hostname` option}
   */
  serverName?: string;
}

/**
 * Options for a Unix domain socket {@linkcode connect}: the socket file's
 * path instead of a host and port. No `--unstable-net` needed; Deno asks
 * `--allow-read` and `--allow-net` (or `--allow-net=unix:<path>`).
 *
 * @example Connect to a Unix socket server
 * ```ts
 * import { connect, run, serve, type UnixConnectOptions } from "@corio/corio";
 *
 * const path = `${await Deno.makeTempDir()}/app.sock`;
 * await using _server = serve({ path }, function* (conn) {
 *   yield* conn.send("hi\n");
 * });
 * const options: UnixConnectOptions = { path, timeout: 1000 };
 * const line = await run((async function* () {
 *   const conn = yield* connect(options);
 *   return yield* conn.recvLine({ timeout: 1000 });
 * })());
 * console.log(line); // hi
 * ```
 */
export interface UnixConnectOptions
  extends OperationOptions, Omit<ConnectionOptions, "isExternal"> {
  /** The socket file to connect to. */
  path: string;
  /** TCP only. */
  port?: never;
  /** TCP only. */
  hostname?: never;
  /** TCP only. */
  noDelay?: never;
  /** TCP only. */
  tls?: never;
}

/**
 * Options for {@linkcode connect}: a host and port, over TCP or TLS
 * ({@linkcode TcpConnectOptions}), or a Unix socket's path
 * ({@linkcode UnixConnectOptions}). Both is a type error, and a `TypeError`
 * at run time.
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
export type ConnectOptions = TcpConnectOptions | UnixConnectOptions;

/**
 * What the internals take for connect options: any kind, as one shape (a
 * pool's `Omit<ConnectOptions, ...>` merges the kinds so).
 */
type AnyConnectOptions =
  & OperationOptions
  & Omit<ConnectionOptions, "isExternal">
  & DialOptions;

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
      this.effect.timeout,
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
 * address); `TlsHandshakeError`, a `ConnectError`, when the TLS handshake
 * fails (an untrusted certificate, the wrong name, a server that is no TLS
 * server); `TimeoutError`; Deno's `NotCapable` as it is, without
 * `--allow-net` (retrying cannot help). State after failure: no socket is
 * left open.
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
 * Internal: what `connect` checks at the call, before any dial: the port
 * and the connection's defaults (a `Pool` checks its `connect` so too).
 */
export function checkConnectOptions(options: AnyConnectOptions): void {
  const { path, tls } = options;
  if (path !== undefined) {
    if (typeof path !== "string" || path === "") {
      throw new TypeError(
        `Cannot connect: path must be a non-empty string (a Unix socket's file), got ${
          JSON.stringify(path)
        }`,
      );
    }
    for (const name of ["port", "hostname", "noDelay", "tls"] as const) {
      if (options[name] !== undefined) {
        throw new TypeError(
          `Cannot connect to unix:${path}: ${name} is for TCP, not with path`,
        );
      }
    }
  } else {
    checkPort(options.port as number);
    if (tls !== undefined && typeof tls !== "boolean") checkTls(tls);
  }
  checkConnectionOptions(options);
}

function checkTls(tls: ClientTlsOptions): void {
  if (typeof tls !== "object" || tls === null) {
    throw new TypeError(
      `Cannot connect: tls must be true, false or { caCerts, serverName }, got ${
        String(tls)
      }`,
    );
  }
  const { caCerts, serverName } = tls;
  if (
    caCerts !== undefined &&
    !(Array.isArray(caCerts) &&
      caCerts.every((pem) => typeof pem === "string"))
  ) {
    throw new TypeError(
      "Cannot connect: tls.caCerts must be an array of PEM strings",
    );
  }
  if (
    serverName !== undefined &&
    (typeof serverName !== "string" || serverName === "")
  ) {
    throw new TypeError(
      "Cannot connect: tls.serverName must be a non-empty string",
    );
  }
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
