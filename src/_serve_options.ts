// The options, counters and defaults of `serve`: the public types live here
// so that src/server.ts holds the behaviour. Re-exported by src/server.ts.

import type { Connection } from "./connection.ts";
import type { Coroutine } from "./effects.ts";
import type { Clock } from "./timers.ts";

/**
 * What the server knows about a connection when it admits it.
 *
 * @example The second argument of every handler
 * ```ts
 * import { connect, type ConnectionInfo, run, serve } from "@corio/corio";
 *
 * await using server = serve({ hostname: "127.0.0.1" }, function* (conn, info: ConnectionInfo) {
 *   yield* conn.send(`client ${info.id} from ${info.remoteAddr.hostname}\n`);
 * });
 * const line = await run((async function* () {
 *   const conn = yield* connect({ port: server.addr.port, timeout: 1000 });
 *   return yield* conn.recvLine({ timeout: 1000 });
 * })());
 * console.log(line); // client 1 from 127.0.0.1
 * ```
 */
export interface ConnectionInfo<Addr extends ServerAddr = Deno.NetAddr> {
  /** A number unique within this server, counting from 1. */
  readonly id: number;
  /**
   * The client's address. On a Unix socket server, `{ transport: "unix",
   * path: null }`: a client's socket has no name.
   */
  readonly remoteAddr: Addr extends Deno.UnixAddr ? UnixPeerAddr : Addr;
  /** The address it connected to: the server's own. */
  readonly localAddr: Addr;
  /**
   * Aborted as the server begins to shut down, its reason a `DOMException`
   * named `AbortError`. Give it to a wait (`conn.recvLine({ signal })`) to
   * end that wait at the start of the grace, not be cancelled at its end: a
   * handler can then say goodbye and return, within the grace: a handler
   * still running at its end is cancelled at its current wait, even one
   * in the `finally` the abort took it to. A handler that lets the
   * reason propagate counts as cancelled, not failed. One signal for every
   * connection of the server.
   */
  readonly signal: AbortSignal;
}

/**
 * What a server listens on: an IP address and port (TCP, TLS), or a Unix
 * socket's path.
 *
 * @example Describe a server's address
 * ```ts
 * import type { ServerAddr } from "@corio/corio";
 *
 * function describe(addr: ServerAddr): string {
 *   return "path" in addr ? `unix:${addr.path}` : `${addr.hostname}:${addr.port}`;
 * }
 * console.log(describe({ transport: "unix", path: "/run/app.sock" })); // unix:/run/app.sock
 * ```
 */
export type ServerAddr = Deno.NetAddr | Deno.UnixAddr;

/**
 * A Unix socket client's address, as a server sees it: Deno gives
 * `path: null`, since a client's socket has no name (its type,
 * `Deno.UnixAddr`, says `string`).
 *
 * @example
 * ```ts
 * import type { UnixPeerAddr } from "@corio/corio";
 *
 * const peer: UnixPeerAddr = { transport: "unix", path: null };
 * console.log(peer.path ?? "a client"); // a client
 * ```
 */
export interface UnixPeerAddr {
  /** `"unix"`. */
  transport: "unix" | "unixpacket";
  /** `null` for a client: its socket has no name. */
  path: string | null;
}

/**
 * A connection handler: a coroutine function that gets the connection.
 *
 * @example A handler declared on its own, then served
 * ```ts
 * import { type Handler, serve } from "@corio/corio";
 *
 * const greet: Handler = function* (conn, info) {
 *   yield* conn.send(`hello, client ${info.id}\n`);
 * };
 * await using server = serve({ hostname: "127.0.0.1" }, greet);
 * console.log(server.addr.port > 0); // true
 * ```
 */
export type Handler<Addr extends ServerAddr = Deno.NetAddr> = (
  conn: Connection,
  info: ConnectionInfo<Addr>,
) => Coroutine<unknown>;

/**
 * What every kind of {@linkcode serve} takes: the cap, timeouts, hooks and
 * shutdown. `Addr` is the address type of its connections.
 *
 * @example The options a TCP, TLS and Unix socket server share
 * ```ts
 * import { serve, type ServeCommonOptions } from "@corio/corio";
 *
 * const common: ServeCommonOptions = { maxConnections: 100, recvTimeout: 3000 };
 * await using server = serve({ ...common, hostname: "127.0.0.1" }, function* (conn) {
 *   yield* conn.send("hi\n");
 * });
 * console.log(server.addr.port > 0); // true
 * ```
 */
export interface ServeCommonOptions<Addr extends ServerAddr = Deno.NetAddr> {
  /**
   * Handlers running at once. At the cap the server stops calling
   * `accept()`; further clients wait in the kernel backlog (while eviction
   * is possible, one of them is accepted and held: see `evictAfter`).
   * @default {10000}
   */
  maxConnections?: number;
  /**
   * Default timeout of every receive, in ms.
   * @default {Infinity}
   */
  recvTimeout?: number;
  /**
   * Default timeout of every send, in ms (a send timeout closes).
   * @default {Infinity}
   */
  sendTimeout?: number;
  /**
   * Longest line `recvLine` accepts, in bytes.
   * @default {65536}
   */
  maxLineLength?: number;
  /**
   * At the cap, a connection idle for this many ms may be evicted — the
   * longest idle first, its handler cancelled — to admit a waiting client:
   * a defence against clients that connect and send nothing. Idle means no
   * `recv`, `recvExact` or `recvLine` has returned data since its handler
   * started, or since it called `conn.markIdle()`: a keep-alive
   * protocol (HTTP/1.1) calls it after each response, so that a connection
   * idle between requests can be displaced too. A server whose clients
   * send nothing while it streams to them (a relay, a push feed) calls
   * `conn.markActive()`, or raises or disables this: else they count as
   * idle. Eviction does not see a client that sent a first line and
   * trickles the rest (an HTTP slowloris): against that, give each request
   * a deadline (`recvLine({ deadline })` per header line, from one
   * `deadline` for the whole request). While it may evict, the server
   * accepts one connection beyond the cap and holds it, handler not
   * started, until a slot frees; never more than `maxConnections` handlers
   * run. `Infinity` disables eviction.
   * @default {10000}
   */
  evictAfter?: number;
  /**
   * Decides on each accepted connection: `false` refuses it (closed at
   * once), a function serves it with that handler instead, anything else
   * serves it with the default handler.
   */
  onAccept?: (info: ConnectionInfo<Addr>) => boolean | Handler<Addr> | void;
  /**
   * Receives handler errors (with the connection) and accept-loop errors;
   * also the error of a handler's child that no join delivered when the
   * handler was cancelled (evicted, or at shutdown), with the connection.
   * Not the `ConnectionClosedError` of the server's own close, which a
   * cancelled handler (a goodbye sent in its `finally`) or its child may
   * meet: such a handler counts as cancelled or evicted. Nor a
   * `CancelledError` a handler lets propagate (from `join()` of a child
   * that another coroutine cancelled): it counts as cancelled.
   * @default {console.error, except for TimeoutError (and the ConnectionClosedError of a connection a send timeout closed), ConnectionResetError, IncompleteReadError (a peer that hung up mid-message) and LineTooLongError (a peer's line over maxLineLength), which are only counted}
   */
  onError?: (error: unknown, info?: ConnectionInfo<Addr>) => void;
  /** Aborting it shuts the server down with `shutdownGrace`. */
  signal?: AbortSignal;
  /**
   * Grace for shutdowns by `signal`, `Symbol.asyncDispose`, and
   * `shutdown()` called without one, in ms.
   * @default {0}
   */
  shutdownGrace?: number;
  /**
   * Back-off after an accept failure such as EMFILE, in ms (Trio's 100 ms).
   * A handler that ends frees a descriptor, so it cuts the back-off short.
   * @default {100}
   */
  acceptBackoff?: number;
  /**
   * The scheduler's clock.
   * @default {systemClock}
   */
  clock?: Clock;
}

/**
 * Options for a TCP {@linkcode serve}: where to listen, and the TCP-only
 * settings. Give `cert` and `key` for TLS ({@linkcode TlsServeOptions}),
 * `path` for a Unix socket ({@linkcode UnixServeOptions}).
 *
 * @example Limits and timeouts, and a signal that shuts it down
 * ```ts
 * import { serve, type TcpServeOptions } from "@corio/corio";
 *
 * const controller = new AbortController();
 * const options: TcpServeOptions = {
 *   hostname: "127.0.0.1",
 *   port: 0, // any free port: see server.addr
 *   maxConnections: 100,
 *   recvTimeout: 3000,
 *   sendTimeout: 3000,
 *   signal: controller.signal,
 * };
 * const server = serve(options, function* (conn) {
 *   for (let chunk; (chunk = yield* conn.recv()) !== null;) yield* conn.send(chunk);
 * });
 * controller.abort();
 * await server.finished;
 * ```
 */
export interface TcpServeOptions extends ServeCommonOptions<Deno.NetAddr> {
  /**
   * Port to listen on; 0 picks a free one (see `server.addr`).
   * @default {0}
   */
  port?: number;
  /**
   * Address to listen on.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * Kernel accept queue length. Deno's 511 made a burst of 10k connects
   * take 10.5 s instead of 1.5 s (measured), hence the larger default.
   * @default {4096}
   */
  tcpBacklog?: number;
  /**
   * Listening sockets on the port, each with its own accept queue of
   * `tcpBacklog` (SO_REUSEPORT: Linux spreads incoming connections over
   * them). A burst of connects larger than one queue then drops no SYN:
   * 10,000 connects at once took 0.7 s with 4 queues, against 2.1 s with
   * one, whose overflowed clients retry a second later (`deno task bench`,
   * B9). Needs `--unstable-net` (SO_REUSEPORT is an unstable Deno API).
   * Mind that with SO_REUSEPORT another process of the same user can bind
   * the port too and take a share of its connections, and that a
   * connection accepted from one queue while the server is at
   * `maxConnections` waits in the server (at most one per queue) instead
   * of in the kernel. Works with TLS too (`Deno.listenTls` takes
   * `reusePort`, measured on Deno 2.9.6).
   * @default {1}
   */
  acceptQueues?: number;
  /**
   * Disable Nagle's algorithm (TCP_NODELAY) on accepted connections, as Go
   * does by default: a small reply goes out at once, not after the peer's
   * delayed ACK. No effect with TLS: Deno 2.9.6's `TlsConn` has no
   * `setNoDelay` (measured).
   * @default {true}
   */
  noDelay?: boolean;
  /**
   * Handlers running at once for one peer IP address; a connection over it
   * is closed at once (counted in `refused` and `peerLimited`). Off by
   * default: one address may be a NAT, a proxy or a loopback load test
   * with thousands of connections, so only you can pick the number. Set it
   * on servers open to the internet (R1 in RELIABILITY.md uses cap / 40).
   * @default {Infinity}
   */
  maxConnectionsPerPeer?: number;
  /** TLS only: see {@linkcode TlsServeOptions}. */
  cert?: never;
  /** TLS only: see {@linkcode TlsServeOptions}. */
  key?: never;
  /** TLS only: see {@linkcode TlsServeOptions}. */
  alpnProtocols?: never;
  /** Unix sockets only: see {@linkcode UnixServeOptions}. */
  path?: never;
}

/**
 * Options for a TLS {@linkcode serve} (`Deno.listenTls`): those of TCP,
 * with the certificate chain and its private key as PEM strings (the names
 * `Deno.listenTls` uses).
 *
 * Each connection's TLS handshake runs at its handler's first receive or
 * send, under that operation's deadline (and `evictAfter` at the cap): a
 * client that does not speak TLS, rejects the certificate or leaves takes
 * nothing from the accept loop or from other clients; its handler's first
 * receive or send throws `ConnectionResetError` ("the TLS handshake
 * failed: ..."), which is counted in `stats.failed` and, like any peer
 * gone, not logged by the default `onError`.
 *
 * @example A TLS echo server
 * ```ts ignore
 * import { serve, type TlsServeOptions } from "@corio/corio";
 *
 * const options: TlsServeOptions = {
 *   port: 8443,
 *   cert: await Deno.readTextFile("cert.pem"),
 *   key: await Deno.readTextFile("key.pem"),
 * };
 * const server = serve(options, async function* (conn) {
 *   for (let chunk; (chunk = yield* conn.recv()) !== null;) yield* conn.send(chunk);
 * });
 * await server.finished;
 * ```
 */
export interface TlsServeOptions
  extends Omit<TcpServeOptions, "cert" | "key" | "alpnProtocols"> {
  /** The certificate chain, PEM (`-----BEGIN CERTIFICATE-----`...). */
  cert: string;
  /** The certificate's private key, PEM (RSA, EC or PKCS #8). */
  key: string;
  /**
   * Application protocols offered by ALPN, most preferred first (`"h2"`,
   * `"http/1.1"`): the handshake agrees on one the client offers too, and
   * fails when there is none. A handler reads which with
   * `yield* conn.handshake()`.
   * @default {none: no ALPN}
   */
  alpnProtocols?: readonly string[];
}

/**
 * Options for a Unix domain socket {@linkcode serve} (`Deno.listen({
 * transport: "unix" })`): the socket file's path instead of an address; the
 * TCP-only settings do not apply. No `--unstable-net` needed.
 *
 * The socket file: `serve` creates it, and removes it on shutdown (Deno's
 * listener does so on close, as Go's does), so the next run finds the path
 * free. If `path` exists, `serve` throws `AddrInUse` and removes nothing:
 * a crashed run's leftover cannot be told from a live server's socket
 * without a connect, and removing a live one would strand its server. To
 * replace a leftover, check that it is a socket
 * (`Deno.lstatSync(path).isSocket`: Linux refuses a connect to a regular
 * file too), try `connect({ path })`, and remove the file if that is
 * refused.
 *
 * @example A Unix socket server and a client
 * ```ts
 * import { connect, run, serve, type UnixServeOptions } from "@corio/corio";
 *
 * const path = `${await Deno.makeTempDir()}/echo.sock`;
 * const options: UnixServeOptions = { path, recvTimeout: 3000 };
 * await using server = serve(options, function* (conn) {
 *   yield* conn.send("hello over unix\n");
 * });
 * const line = await run((async function* () {
 *   const conn = yield* connect({ path: server.addr.path, timeout: 1000 });
 *   return yield* conn.recvLine({ timeout: 1000 });
 * })());
 * console.log(line); // hello over unix
 * ```
 */
export interface UnixServeOptions extends ServeCommonOptions<Deno.UnixAddr> {
  /**
   * The socket file to listen on. A relative path is resolved against the
   * working directory when `serve` starts (`server.addr.path` is absolute):
   * the file removed at shutdown is the socket's, wherever the process has
   * moved since.
   */
  path: string;
  /** TCP only. */
  port?: never;
  /** TCP only. */
  hostname?: never;
  /** TCP only. */
  tcpBacklog?: never;
  /** TCP only. */
  acceptQueues?: never;
  /** TCP only. */
  noDelay?: never;
  /** TCP only: a Unix socket's clients have no address to count by. */
  maxConnectionsPerPeer?: never;
  /** TLS only. */
  cert?: never;
  /** TLS only. */
  key?: never;
  /** TLS only. */
  alpnProtocols?: never;
}

/**
 * Options for {@linkcode serve}: TCP ({@linkcode TcpServeOptions}), TLS
 * ({@linkcode TlsServeOptions}: `cert` and `key`) or a Unix socket
 * ({@linkcode UnixServeOptions}: `path`). Mixing them (`path` with `port`,
 * `cert` without `key`) is a type error, and a `TypeError` at run time.
 *
 * @example Limits and timeouts, and a signal that shuts it down
 * ```ts
 * import { serve, type ServeOptions } from "@corio/corio";
 *
 * const controller = new AbortController();
 * const options: ServeOptions = {
 *   hostname: "127.0.0.1",
 *   port: 0, // any free port: see server.addr
 *   maxConnections: 100,
 *   recvTimeout: 3000,
 *   sendTimeout: 3000,
 *   signal: controller.signal,
 * };
 * const server = serve(options, function* (conn) {
 *   for (let chunk; (chunk = yield* conn.recv()) !== null;) yield* conn.send(chunk);
 * });
 * controller.abort();
 * await server.finished;
 * ```
 */
export type ServeOptions = TcpServeOptions | TlsServeOptions | UnixServeOptions;

/**
 * Counters of a {@linkcode Server}; a live view.
 *
 * @example Read the counters from server.stats
 * ```ts
 * import { connect, run, serve } from "@corio/corio";
 *
 * const server = serve({ hostname: "127.0.0.1" }, function* () {});
 * await run((async function* () {
 *   const conn = yield* connect({ port: server.addr.port, timeout: 1000 });
 *   yield* conn.recv({ timeout: 1000 }); // null: the handler returned
 * })());
 * await server.shutdown();
 * const { accepted, completed, active } = server.stats;
 * console.log(accepted, completed, active); // 1 1 0
 * ```
 */
export interface ServerStats {
  /** Handlers running now. */
  active: number;
  /**
   * Connections accepted (refused ones included); once all have ended,
   * `accepted === refused + completed + failed + cancelled + evicted`.
   */
  accepted: number;
  /** Connections refused by `onAccept` or `maxConnectionsPerPeer`. */
  refused: number;
  /** Of `refused`, those refused by `maxConnectionsPerPeer`. */
  peerLimited: number;
  /** Handlers cancelled at the cap to make room (see `evictAfter`). */
  evicted: number;
  /** Handlers that returned. */
  completed: number;
  /** Handlers that threw (timeouts included). */
  failed: number;
  /**
   * Handlers that ended with an uncaught `TimeoutError`, or with the
   * `ConnectionClosedError` of a connection a send's timeout closed.
   */
  timeouts: number;
  /**
   * Handlers cancelled by shutdown, and a connection admitted at the cap
   * whose handler the shutdown came before.
   */
  cancelled: number;
  /** Accept failures survived (EMFILE and kin). */
  acceptErrors: number;
}

/**
 * Options for {@linkcode Server.shutdown}.
 *
 * @example Give running handlers 5 s to finish
 * ```ts
 * import { serve } from "@corio/corio";
 *
 * const server = serve({ hostname: "127.0.0.1" }, function* (conn) {
 *   yield* conn.send("bye\n");
 * });
 * await server.shutdown({ grace: 5000 }); // at once here: no handler is running
 * ```
 */
export interface ShutdownOptions {
  /**
   * How long running handlers may go on before they are cancelled, in ms
   * on the server's clock.
   * @default {the server's `shutdownGrace`}
   */
  grace?: number;
}

export const DEFAULTS = {
  port: 0,
  hostname: "0.0.0.0",
  tcpBacklog: 4096,
  acceptQueues: 1,
  maxConnections: 10_000,
  shutdownGrace: 0,
  acceptBackoff: 100,
  maxConnectionsPerPeer: Infinity,
  evictAfter: 10_000,
  noDelay: true,
} as const;
