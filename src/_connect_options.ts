// The options of connect(), for TCP, TLS and Unix sockets, and the checks
// connect() and a Pool's `connect` make of them before any dial.
// Re-exported by src/client.ts.

import {
  checkConnectionOptions,
  type ConnectionOptions,
} from "./connection_options.ts";
import type { OperationOptions } from "./effects.ts";
import type { DialOptions } from "./_dial.ts";

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
  caCerts?: readonly string[];
  /**
   * The name the server's certificate must carry (and the SNI sent).
   * @default {the `hostname` option}
   */
  serverName?: string;
  /**
   * Application protocols to offer by ALPN, most preferred first (`"h2"`,
   * `"http/1.1"`); `yield* conn.handshake()` tells which the server chose
   * (`null` when it chose none). A server that offers none of them fails
   * the handshake.
   * @default {none: no ALPN}
   */
  alpnProtocols?: readonly string[];
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
export type AnyConnectOptions =
  & OperationOptions
  & Omit<ConnectionOptions, "isExternal">
  & DialOptions;

/**
 * Internal: what `connect` checks at the call, before any dial: the port
 * and the connection's defaults (a `Pool` checks its `connect` so too).
 */
export function checkConnectOptions(options: AnyConnectOptions): void {
  const { path, tls } = options;
  if (path !== undefined) {
    checkSocketPath(path, "connect");
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
  if (tls.alpnProtocols !== undefined) {
    checkAlpnProtocols(tls.alpnProtocols, "Cannot connect: tls");
  }
}

/** Throws a TypeError unless `alpn` is a list of protocol names. */
export function checkAlpnProtocols(alpn: unknown, what: string): void {
  if (
    !Array.isArray(alpn) ||
    !alpn.every((name) => typeof name === "string" && name !== "")
  ) {
    throw new TypeError(
      `${what}: alpnProtocols must be an array of protocol names ("h2", "http/1.1")`,
    );
  }
}

/**
 * Throws a TypeError unless `path` can name a Unix socket's file; `action`
 * names the call.
 */
export function checkSocketPath(path: unknown, action: string): void {
  if (typeof path !== "string" || path === "") {
    throw new TypeError(
      `Cannot ${action}: path must be a non-empty string (a Unix socket's file), got ${
        JSON.stringify(path)
      }`,
    );
  }
}

/** Throws a RangeError unless `port` is a port number; `action` names the call. */
export function checkPort(port: number, action = "connect"): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new RangeError(`Cannot ${action}: port must be 0-65535, got ${port}`);
  }
}
