/**
 * The errors corio throws into coroutines. Each says what failed, on which
 * address, and which limit was hit; the numbers are fields so that code (and
 * `assert.rejects(p, { name: "TimeoutError" })`) can match on them.
 *
 * @module
 */

import { addressOf } from "./_address.ts";

/**
 * An operation did not finish by its deadline. Thrown at the `yield*` of the
 * operation that timed out.
 *
 * What the connection looks like afterwards depends on the operation: after a
 * receive timeout it is intact (no byte is lost), after a send timeout it is
 * closed.
 *
 * @example Catch a receive timeout and go on
 * ```ts
 * import { run, TimeoutError } from "@corio/corio";
 * import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const clock = new VirtualClock();
 * const timedOut = await run((function* () {
 *   try {
 *     yield* conn.recv({ timeout: 3000 });
 *     return false;
 *   } catch (error) {
 *     if (!(error instanceof TimeoutError)) throw error;
 *     return error.timeout === 3000;
 *   }
 * })(), { clock });
 * conn.close();
 * peer.close();
 * if (!timedOut) throw new Error("expected a timeout");
 * ```
 */
export class TimeoutError extends Error {
  /** The operation that timed out, e.g. `"recvLine"`. */
  readonly op: string;
  /**
   * The timeout in milliseconds, or `undefined` when an absolute deadline
   * ended the operation (it had no timeout, or the deadline came first).
   */
  readonly timeout: number | undefined;

  /**
   * Creates the error.
   *
   * @param op The operation that timed out.
   * @param timeout Its timeout in milliseconds, when it had one.
   * @param where What it waited on, e.g. `"from 127.0.0.1:4000"`.
   */
  constructor(op: string, timeout?: number, where = "") {
    const limit = timeout === undefined ? "its deadline" : `${timeout} ms`;
    super(`Cannot ${op}${where ? " " + where : ""}: timed out after ${limit}`);
    this.name = "TimeoutError";
    this.op = op;
    this.timeout = timeout;
  }
}

/**
 * The connection was closed on this side (by `close()`, a send timeout, the
 * coroutine that owned it ending, or a server shutdown) and cannot be used.
 * When a send's timeout closed it, every later operation's error has that
 * `TimeoutError` as its `cause`: a coroutine receiving while another one's
 * send timed out learns why (and `serve` counts its handler as timed out).
 *
 * @example
 * ```ts
 * import { ConnectionClosedError, run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * conn.close();
 * const name = await run((function* () {
 *   try {
 *     yield* conn.send("late");
 *   } catch (error) {
 *     return (error as ConnectionClosedError).name;
 *   }
 * })());
 * peer.close();
 * if (name !== "ConnectionClosedError") throw new Error(name);
 * ```
 */
export class ConnectionClosedError extends Error {
  /** The operation that found the connection closed. */
  readonly op: string;
  /**
   * Creates the error.
   *
   * @param op The operation that was attempted.
   * @param where The address, e.g. `"to 127.0.0.1:4000"`.
   * @param options `cause`: what made corio close it (a send's timeout);
   *   `what` was closed, for the message (default `"connection"`; a
   *   listener's accept says `"listener"`).
   */
  constructor(
    op: string,
    where = "",
    options?: ErrorOptions & { what?: string },
  ) {
    const cause = options?.cause;
    super(
      `Cannot ${op}${where ? " " + where : ""}: the ${
        options?.what ?? "connection"
      } is closed${
        cause instanceof Error ? ` (after ${cause.name}: ${cause.message})` : ""
      }`,
      options,
    );
    this.name = "ConnectionClosedError";
    this.op = op;
  }
}

/**
 * The peer broke the connection (reset, broken pipe) while an operation was
 * using it. The connection is of no more use, though still open until
 * `close()` or its owner's end: every later send throws this again. A
 * receive throws it too when the peer resets in the middle of a message,
 * but on Deno 2.9.6 a TCP reset often reads as the end of the stream
 * (`recv()` gives `null`; a load generator's review saw all of 13,000 resets
 * by a server read so): it then shows as this error at the next send, and
 * a receive alone cannot tell a reset from a close.
 *
 * A TLS server's connection whose handshake fails (the client does not
 * speak TLS, or rejects the server's certificate) is such a peer gone: its
 * handler's first receive or send throws this error, its message says the
 * handshake failed and its `cause` is Deno's `InvalidData` or
 * `UnexpectedEof`. A TLS peer that closes its socket without TLS's
 * `close_notify` (common: a client that just exits) is one too, as rustls
 * and OpenSSL 3 report it: a receive throws this error, "peer closed
 * connection without sending TLS close_notify", instead of giving `null`.
 * A keep-alive server takes it, at its wait between requests, as the
 * client's leaving (the default `onError` ignores it).
 *
 * @example
 * ```ts
 * import { ConnectionResetError } from "@corio/corio";
 *
 * const error = new ConnectionResetError("send", "to 127.0.0.1:4000");
 * console.log(error.message); // Cannot send to 127.0.0.1:4000: the peer reset the connection
 * ```
 *
 * @example A failed TLS handshake, as a TLS server's handler sees it
 * ```ts
 * import { ConnectionResetError } from "@corio/corio";
 *
 * const error = new ConnectionResetError("recv", "from 127.0.0.1:51234", {
 *   why: "the TLS handshake failed: received corrupt message of type InvalidContentType",
 * });
 * console.log(error.message.includes("TLS handshake failed")); // true
 * ```
 */
export class ConnectionResetError extends Error {
  /** The operation that saw the reset. */
  readonly op: string;
  /**
   * Creates the error.
   *
   * @param op The operation that was in progress.
   * @param where The address.
   * @param options `cause`: the runtime's own error; `why`: what broke, when
   *   more is known than a reset (a failed TLS handshake).
   */
  constructor(
    op: string,
    where = "",
    options?: ErrorOptions & { why?: string },
  ) {
    super(
      `Cannot ${op}${where ? " " + where : ""}: ${
        options?.why ?? "the peer reset the connection"
      }`,
      options,
    );
    this.name = "ConnectionResetError";
    this.op = op;
  }
}

/**
 * A connection attempt failed: the peer refused it or could not be reached
 * (for a Unix socket: no socket file, or no server on it). `reason` says
 * which, for code that answers each differently (a proxy's reply code, a
 * retry policy); the message says it for people.
 *
 * @example
 * ```ts
 * import { ConnectError } from "@corio/corio";
 *
 * const error = new ConnectError("127.0.0.1", 1, "connection refused", {
 *   reason: "refused",
 * });
 * console.log(error.message); // Cannot connect to 127.0.0.1:1: connection refused
 * console.log(error.reason); // refused
 * ```
 *
 * @example Tell the reasons apart
 * ```ts
 * import { ConnectError, connect, run } from "@corio/corio";
 *
 * const outcome = await run((function* () {
 *   try {
 *     (yield* connect({ hostname: "127.0.0.1", port: 1 })).close();
 *     return "connected";
 *   } catch (error) {
 *     if (!(error instanceof ConnectError)) throw error;
 *     switch (error.reason) {
 *       case "refused": return "no server on that port";
 *       case "unresolved": return "no such host";
 *       default: return `unreachable (${error.reason})`;
 *     }
 *   }
 * })());
 * console.log(outcome); // no server on that port
 * ```
 *
 * @example A Unix socket
 * ```ts
 * import { ConnectError } from "@corio/corio";
 *
 * const error = new ConnectError("", 0, "no such socket file", { path: "/run/app.sock" });
 * console.log(error.message); // Cannot connect to unix:/run/app.sock: no such socket file
 * ```
 */
export class ConnectError extends Error {
  /** The host that was dialled; `""` for a Unix socket. */
  readonly hostname: string;
  /** The port that was dialled; `0` for a Unix socket. */
  readonly port: number;
  /** The Unix socket's path that was dialled; `undefined` for TCP. */
  readonly path: string | undefined;
  /** Why the attempt failed: see {@linkcode ConnectFailure}. */
  readonly reason: ConnectFailure;
  /**
   * Creates the error.
   *
   * @param hostname The host that was dialled.
   * @param port The port that was dialled.
   * @param why What went wrong, e.g. `"connection refused"`.
   * @param options `cause`: the runtime's own error; `path`: the Unix
   *   socket dialled instead of a host and port; `reason`: why, for code
   *   (`"other"` when not given).
   */
  constructor(
    hostname: string,
    port: number,
    why: string,
    options?: ErrorOptions & { path?: string; reason?: ConnectFailure },
  ) {
    const path = options?.path;
    super(
      `Cannot connect to ${addressOf({ hostname, port, path })}: ${why}`,
      options,
    );
    this.name = "ConnectError";
    this.hostname = hostname;
    this.port = port;
    this.path = path;
    this.reason = options?.reason ?? "other";
  }
}

/**
 * Why a {@linkcode ConnectError} was thrown, in the terms a proxy's reply
 * codes and a retry policy use:
 *
 * - `"refused"`: nothing listens on the port (ECONNREFUSED), or on the
 *   Unix socket file;
 * - `"unresolved"`: the host name has no address (or the resolver could not
 *   be asked);
 * - `"network-unreachable"` / `"host-unreachable"`: no route to the
 *   network, or the host did not answer on it (ENETUNREACH / EHOSTUNREACH);
 * - `"timed-out"`: the kernel gave up on the handshake (ETIMEDOUT; corio's
 *   own connect `timeout` throws a `TimeoutError` instead);
 * - `"address-unavailable"`: no local address or port to connect from
 *   (EADDRNOTAVAIL: the ephemeral ports are used up, or the address family
 *   has no address here);
 * - `"no-socket-file"`: the Unix socket's path does not exist;
 * - `"denied"`: the system refused (EACCES, EPERM: a firewall's reject, a
 *   socket file this user may not open);
 * - `"tls"`: the TLS handshake failed ({@linkcode TlsHandshakeError});
 * - `"other"`: anything else; the `cause` holds the runtime's error.
 *
 * @example
 * ```ts
 * import type { ConnectFailure } from "@corio/corio";
 *
 * // SOCKS5 reply codes (RFC 1928) for each reason
 * function socksReply(reason: ConnectFailure): number {
 *   switch (reason) {
 *     case "refused": return 0x05;
 *     case "network-unreachable": return 0x03;
 *     case "host-unreachable":
 *     case "unresolved":
 *     case "timed-out": return 0x04;
 *     case "denied": return 0x02;
 *     default: return 0x01;
 *   }
 * }
 * console.log(socksReply("refused")); // 5
 * ```
 */
export type ConnectFailure =
  | "refused"
  | "unresolved"
  | "network-unreachable"
  | "host-unreachable"
  | "timed-out"
  | "address-unavailable"
  | "no-socket-file"
  | "denied"
  | "tls"
  | "other";

/**
 * The TLS handshake of a `connect({ tls })` failed: the server's
 * certificate is not trusted (`caCerts`) or does not name the server
 * (`serverName`), or the server does not speak TLS. A
 * {@linkcode ConnectError}, so code that retries or reports failed
 * connects treats it as one; retrying rarely helps, as the certificate will
 * not change.
 *
 * @example
 * ```ts
 * import { ConnectError, TlsHandshakeError } from "@corio/corio";
 *
 * const error = new TlsHandshakeError(
 *   "localhost",
 *   8443,
 *   "invalid peer certificate: UnknownIssuer",
 * );
 * console.log(error.message); // Cannot connect to localhost:8443: TLS handshake failed: invalid peer certificate: UnknownIssuer
 * console.log(error instanceof ConnectError); // true
 * ```
 */
export class TlsHandshakeError extends ConnectError {
  /**
   * Creates the error.
   *
   * @param hostname The host that was dialled.
   * @param port The port that was dialled.
   * @param why What the TLS library said, e.g.
   *   `"invalid peer certificate: UnknownIssuer"`.
   * @param options `cause`: the runtime's own error.
   */
  constructor(
    hostname: string,
    port: number,
    why: string,
    options?: ErrorOptions,
  ) {
    super(hostname, port, `TLS handshake failed: ${why}`, {
      ...options,
      reason: "tls",
    });
    this.name = "TlsHandshakeError";
  }
}

/**
 * A line was longer than the connection's `maxLineLength`. The connection is
 * closed: the rest of the line is still unread, so the stream cannot be
 * resynchronised.
 *
 * @example
 * ```ts
 * import { LineTooLongError } from "@corio/corio";
 *
 * const error = new LineTooLongError(65536, "from 127.0.0.1:4000");
 * console.log(error.limit); // 65536
 * ```
 */
export class LineTooLongError extends Error {
  /** The limit in bytes that the line exceeded. */
  readonly limit: number;
  /**
   * Creates the error.
   *
   * @param limit The `maxLineLength` in bytes.
   * @param where The address.
   */
  constructor(limit: number, where = "") {
    super(
      `Cannot receive line${
        where ? " " + where : ""
      }: line exceeds maxLineLength of ${limit} bytes`,
    );
    this.name = "LineTooLongError";
    this.limit = limit;
  }
}

/**
 * The peer closed the connection before `recvExact(n)` had all `n` bytes,
 * or before the end of a line that `recvLine({ requireNewline: true })`
 * was receiving.
 *
 * @example
 * ```ts
 * import { IncompleteReadError } from "@corio/corio";
 *
 * const error = new IncompleteReadError(10, new Uint8Array(4), "from 127.0.0.1:4000");
 * console.log(error.partial.length); // 4
 * ```
 */
export class IncompleteReadError extends Error {
  /** How many bytes were asked for; `undefined` for a line. */
  readonly expected: number | undefined;
  /** The bytes that did arrive before the end of the stream. */
  readonly partial: Uint8Array;
  /**
   * Creates the error.
   *
   * @param expected How many bytes were asked for; `undefined` for a line.
   * @param partial The bytes that arrived.
   * @param where The address.
   */
  constructor(
    expected: number | undefined,
    partial: Uint8Array,
    where = "",
  ) {
    const what = expected === undefined ? "a line" : `${expected} bytes`;
    const after = expected === undefined
      ? `${partial.length} bytes of it, before its end`
      : `${partial.length}`;
    super(
      `Cannot receive ${what}${
        where ? " " + where : ""
      }: the peer closed the stream after ${after}`,
    );
    this.name = "IncompleteReadError";
    this.expected = expected;
    this.partial = partial;
  }
}

/**
 * Two coroutines tried to receive on one connection (or one inbox) at once.
 * Receiving is one coroutine's job (sends from several coroutines are
 * queued instead).
 *
 * @example
 * ```ts
 * import { BusyError } from "@corio/corio";
 *
 * console.log(new BusyError("recv", "from 127.0.0.1:4000").message);
 * ```
 */
export class BusyError extends Error {
  /** The operation that was refused. */
  readonly op: string;
  /**
   * Creates the error.
   *
   * @param op The operation that was refused.
   * @param where The address.
   * @param what What is being received from.
   */
  constructor(op: string, where = "", what = "connection") {
    super(
      `Cannot ${op}${where ? " " + where : ""}: another coroutine is already ${
        op === "accept" ? "accepting" : "receiving"
      } on this ${what}`,
    );
    this.name = "BusyError";
    this.op = op;
  }
}

/**
 * An inbox was closed (`inbox.close()`) and holds no more messages: what
 * `inbox.recv()` throws then (`inbox.poll()` gives `undefined` instead),
 * and what `inbox.send()` throws once the inbox is closed.
 *
 * @example
 * ```ts
 * import { Inbox, InboxClosedError, run } from "@corio/corio";
 *
 * const inbox = new Inbox<string>({ name: "writer" });
 * inbox.push("last");
 * inbox.close();
 * const seen = await run((function* () {
 *   const seen: string[] = [];
 *   try {
 *     for (;;) seen.push(yield* inbox.recv());
 *   } catch (error) {
 *     if (!(error instanceof InboxClosedError)) throw error;
 *   }
 *   return seen;
 * })());
 * console.log(seen); // ["last"]
 * ```
 */
export class InboxClosedError extends Error {
  /** The operation that was refused: `"recv"` or `"send"`. */
  readonly op: string;
  /**
   * Creates the error.
   *
   * @param where Which inbox, e.g. `"from call 42"`.
   * @param op The operation that was refused.
   */
  constructor(where = "", op = "recv") {
    super(`Cannot ${op}${where ? " " + where : ""}: the inbox is closed`);
    this.name = "InboxClosedError";
    this.op = op;
  }
}

/**
 * A task was cancelled before it finished; `join()` on it throws this.
 *
 * @example
 * ```ts
 * import { CancelledError } from "@corio/corio";
 *
 * console.log(new CancelledError().message); // Cannot join task: it was cancelled
 * ```
 */
export class CancelledError extends Error {
  /** Creates the error. */
  constructor() {
    super("Cannot join task: it was cancelled");
    this.name = "CancelledError";
  }
}

/**
 * The server's accept loop could not accept a connection (descriptors or
 * memory exhausted). The loop does not stop: it backs off and retries. Sent
 * to `onError` at most once per back-off, with how many failures it covers.
 *
 * @example
 * ```ts
 * import { AcceptError } from "@corio/corio";
 *
 * const error = new AcceptError("0.0.0.0:9999", 100, 3);
 * console.log(error.message);
 * // Cannot accept on 0.0.0.0:9999: 3 failures (resources exhausted); retrying every 100 ms
 * ```
 */
export class AcceptError extends Error {
  /** The back-off before the next attempt, in ms. */
  readonly backoff: number;
  /** How many accept failures this report covers. */
  readonly failures: number;
  /**
   * Creates the error.
   *
   * @param where The listening address.
   * @param backoff The back-off in ms.
   * @param failures Failures since the last report.
   * @param options `cause`: the runtime's error.
   */
  constructor(
    where: string,
    backoff: number,
    failures: number,
    options?: ErrorOptions,
  ) {
    const why = options?.cause instanceof Error
      ? options.cause.message
      : "resources exhausted";
    super(
      `Cannot accept on ${where}: ${failures} failure${
        failures === 1 ? "" : "s"
      } (${why}); retrying every ${backoff} ms`,
      options,
    );
    this.name = "AcceptError";
    this.backoff = backoff;
    this.failures = failures;
  }
}

/**
 * A pool could not take one more waiter: `maxWaiting` coroutines already
 * wait for a connection. Thrown at once by `pool.acquire()`, so a client
 * under overload fails fast instead of queueing without bound.
 *
 * @example
 * ```ts
 * import { PoolExhaustedError } from "@corio/corio";
 *
 * const error = new PoolExhaustedError(64, "127.0.0.1:9999");
 * console.log(error.message);
 * // Cannot acquire from pool of 127.0.0.1:9999: 64 coroutines already wait (maxWaiting)
 * ```
 */
export class PoolExhaustedError extends Error {
  /** The pool's `maxWaiting` limit that was hit. */
  readonly maxWaiting: number;
  /**
   * Makes the error for a pool whose waiting line is full.
   *
   * @param maxWaiting The pool's `maxWaiting`.
   * @param where The pool's address, e.g. `"127.0.0.1:9999"`.
   */
  constructor(maxWaiting: number, where = "") {
    super(
      `Cannot acquire from pool${where ? " of " + where : ""}: ${maxWaiting} ${
        maxWaiting === 1 ? "coroutine already waits" : "coroutines already wait"
      } (maxWaiting)`,
    );
    this.name = "PoolExhaustedError";
    this.maxWaiting = maxWaiting;
  }
}

/**
 * The pool was closed: `acquire()` after `close()`, or a waiter that was
 * still waiting when the pool closed.
 *
 * @example
 * ```ts
 * import { PoolClosedError } from "@corio/corio";
 *
 * console.log(new PoolClosedError("127.0.0.1:9999").message);
 * // Cannot acquire from pool of 127.0.0.1:9999: the pool is closed
 * ```
 */
export class PoolClosedError extends Error {
  /**
   * Makes the error for an acquire on, or waiting in, a closed pool.
   *
   * @param where The pool's address, e.g. `"127.0.0.1:9999"`.
   */
  constructor(where = "") {
    super(
      `Cannot acquire from pool${
        where ? " of " + where : ""
      }: the pool is closed`,
    );
    this.name = "PoolClosedError";
  }
}

/**
 * `Conversations.start()` found no room: the table is at
 * `maxConversations`, or it is shutting down. (`dispatch()` reports the same
 * with its `"refused"` and `"closed"` statuses instead of throwing.)
 *
 * @example
 * ```ts
 * import { ConversationLimitError } from "@corio/corio";
 *
 * const error = new ConversationLimitError(10000);
 * console.log(error.message); // Cannot start conversation: 10000 running, the maxConversations limit
 * ```
 */
export class ConversationLimitError extends Error {
  /** The `maxConversations` limit. */
  readonly limit: number;
  /** True when refused because the conversations are shutting down. */
  readonly isClosed: boolean;
  /**
   * Creates the error.
   * @param limit The `maxConversations` limit.
   * @param isClosed True when shutting down rather than full.
   */
  constructor(limit: number, isClosed = false) {
    super(
      isClosed
        ? "Cannot start conversation: the conversations are shutting down"
        : `Cannot start conversation: ${limit} running, the maxConversations limit`,
    );
    this.name = "ConversationLimitError";
    this.limit = limit;
    this.isClosed = isClosed;
  }
}
