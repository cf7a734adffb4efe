/**
 * What a {@linkcode Connection} is made with: the transport it runs on, its
 * options and its receives' options, their defaults and their checks.
 *
 * @module
 */

import type { OperationOptions } from "./effects.ts";

/**
 * What a {@linkcode Connection} runs on: a `Deno.Conn` fits as is; the test
 * kit's memory connections are another.
 *
 * @example A transport over canned bytes
 * ```ts
 * import { Connection, run, type Transport } from "@corio/corio";
 *
 * const bytes = new TextEncoder().encode("220 ready\r\n");
 * let offset = 0;
 * const canned: Transport = {
 *   read(buffer) {
 *     const n = Math.min(buffer.length, bytes.length - offset);
 *     buffer.set(bytes.subarray(offset, offset += n));
 *     return Promise.resolve(n === 0 ? null : n);
 *   },
 *   write: (data) => Promise.resolve(data.length),
 *   closeWrite: () => Promise.resolve(),
 *   close() {},
 *   localAddr: { transport: "tcp", hostname: "127.0.0.1", port: 2525 },
 *   remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 25 },
 * };
 * const conn = new Connection(canned, { isExternal: false });
 * console.log(await run((function* () { return yield* conn.recvLine(); })())); // 220 ready
 * conn.close();
 * ```
 */
export interface Transport {
  /**
   * Reads into `buffer`; `null` at end of stream. A failed read rejects with
   * an error (a rejection with a number or `null` would read as a result).
   */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `bytes`; resolves with how many, or rejects with an error. */
  write(bytes: Uint8Array): Promise<number>;
  /** Shuts down the sending side (TCP FIN). */
  closeWrite(): Promise<void>;
  /** Closes both directions and frees the socket. */
  close(): void;
  /** This end's address. */
  readonly localAddr: Deno.Addr;
  /** The peer's address. */
  readonly remoteAddr: Deno.Addr;
}

/**
 * Options for a {@linkcode Connection}; `serve` and `connect` set them.
 *
 * @example A connection's defaults, here on memory connections
 * ```ts
 * import type { ConnectionOptions } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const defaults: ConnectionOptions = { recvTimeout: 3000, maxLineLength: 1024 };
 * const [conn, peer] = memoryConnPair(defaults);
 * console.log(conn.recvTimeout, conn.maxLineLength, conn.sendTimeout); // 3000 1024 Infinity
 * conn.close();
 * peer.close();
 * ```
 */
export interface ConnectionOptions {
  /**
   * Default timeout of `recv`, `recvExact` and `recvLine`, in ms.
   * @default {Infinity}
   */
  recvTimeout?: number;
  /**
   * Default timeout of `send`, in ms. A send timeout closes the connection.
   * @default {Infinity}
   */
  sendTimeout?: number;
  /**
   * Longest line `recvLine` accepts, in bytes, without its terminator.
   * @default {65536}
   */
  maxLineLength?: number;
  /**
   * True when the transport is a real socket (the outside world wakes it);
   * false for in-memory transports, so a virtual clock may jump past them.
   * @default {true}
   */
  isExternal?: boolean;
}

/**
 * Options for {@linkcode Connection.recv}.
 *
 * @example Echo a borrowed view before receiving again
 * ```ts
 * import { run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const echoed = await run((function* () {
 *   yield* peer.send("ping");
 *   const view = yield* conn.recv({ borrow: true, timeout: 1000 }); // no copy
 *   yield* conn.send(view!); // used before the next recv: still valid
 *   return new TextDecoder().decode((yield* peer.recv({ timeout: 1000 }))!);
 * })());
 * conn.close();
 * peer.close();
 * console.log(echoed); // ping
 * ```
 */
export interface RecvOptions extends OperationOptions {
  /**
   * Return a view into the connection's read buffer instead of a copy: no
   * allocation and no copy (Go's `bufio.Reader.ReadSlice` trade), but the
   * bytes are valid only until the next receive on this connection. Fine
   * for "receive, then send or parse before receiving again".
   * @default {false}
   */
  borrow?: boolean;
  /**
   * Return at most this many bytes (an integer, 1 or more); the rest stay
   * buffered for the next receive. For a body of known length read in
   * chunks (`Content-Length`) with what follows it (a pipelined request)
   * left in place; `recvExact` gives the whole of it in one array.
   *
   * @example The rest of a 5-byte body, and the next request left buffered
   * ```ts
   * import { run } from "@corio/corio";
   * import { memoryConnPair } from "@corio/corio/testing";
   *
   * const [conn, peer] = memoryConnPair();
   * const body = await run((function* () {
   *   yield* peer.send("hello" + "GET / HTTP/1.1\r\n");
   *   let body = "";
   *   for (let left = 5; left > 0;) {
   *     const chunk = yield* conn.recv({ max: left, timeout: 1000 });
   *     if (chunk === null) throw new Error("the body was cut short");
   *     body += new TextDecoder().decode(chunk);
   *     left -= chunk.length;
   *   }
   *   return body;
   * })());
   * console.log(body, conn.buffered); // hello 16
   * ```
   */
  max?: number;
}

/**
 * Options for {@linkcode Connection.recvExact}.
 *
 * @example A binary header read without a copy: a type byte and a length
 * ```ts
 * import { run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const [type, length] = await run((function* () {
 *   yield* peer.send(new Uint8Array([0x30, 5]));
 *   const header = yield* conn.recvExact(2, { borrow: true, timeout: 1000 });
 *   return [header[0], header[1]]; // read before the next receive
 * })());
 * console.log(type, length); // 48 5
 * ```
 */
export interface RecvExactOptions extends OperationOptions {
  /**
   * Return a view into the connection's read buffer instead of a copy, as
   * `recv({ borrow: true })` does: valid only until the next receive on
   * this connection.
   * @default {false}
   */
  borrow?: boolean;
}

/**
 * Options for {@linkcode Connection.peek}.
 *
 * @example Sniff a TLS record header (5 bytes) before choosing a parser
 * ```ts
 * import { run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const kind = await run((function* () {
 *   yield* peer.send(new Uint8Array([0x16, 3, 1]));
 *   yield* peer.send(new Uint8Array([0, 42, 1]));
 *   const head = yield* conn.peek({ min: 5, timeout: 1000 });
 *   return head !== null && head.length >= 5 && head[0] === 0x16
 *     ? "tls"
 *     : "plain";
 * })());
 * conn.close();
 * peer.close();
 * console.log(kind, conn.buffered); // tls 6
 * ```
 */
export interface PeekOptions extends OperationOptions {
  /**
   * Wait until at least this many bytes are buffered (an integer, 1 or
   * more); fewer only at the end of the stream. For a look at a header of
   * known size (a TLS record's 5 bytes, an HTTP method) that may arrive in
   * pieces. The connection's buffer grows to hold them.
   * @default {1}
   */
  min?: number;
}

/**
 * Options for {@linkcode Connection.recvLine}.
 *
 * @example A tighter line limit for one receive
 * ```ts
 * import { LineTooLongError, run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const error = await run((function* () {
 *   yield* peer.send("GET /a-rather-long-path HTTP/1.1\r\n");
 *   try {
 *     yield* conn.recvLine({ maxLineLength: 16, timeout: 1000 });
 *   } catch (error) {
 *     return error;
 *   }
 * })());
 * peer.close();
 * console.log(error instanceof LineTooLongError, conn.isClosed); // true true
 * ```
 */
export interface RecvLineOptions extends OperationOptions {
  /**
   * Longest line accepted, in bytes; overrides the connection's.
   * @default {65536}
   */
  maxLineLength?: number;
  /**
   * True: a last line that the stream ends before its terminator throws
   * `IncompleteReadError` (its bytes in `partial`) instead of being
   * returned. For protocols whose lines are commands: a peer cut off
   * mid-line did not send `ADD 12` when `ADD 1` arrived.
   * @default {false}
   */
  requireNewline?: boolean;
  /**
   * True: only CRLF ends a line, and a bare LF is part of the line's text.
   * For protocols that require CRLF and where reading a bare LF as a line
   * end is an attack: an SMTP server that took `\n.\n` for the end of
   * DATA would let a client smuggle a second message in (CVE-2023-51766).
   * @default {false}
   */
  crlfOnly?: boolean;
}

/** A connection's defaults, where its options leave one out. */
export const DEFAULTS = {
  recvTimeout: Infinity,
  sendTimeout: Infinity,
  maxLineLength: 64 * 1024,
  isExternal: true,
} as const;

/**
 * @internal Throws the `RangeError` that `new Connection(transport, options)`
 * would: for checking a connection's defaults before there is a transport
 * (`serve` and `connect` do, so a bad option fails at the call, not after a
 * handshake).
 */
export function checkConnectionOptions(options: ConnectionOptions): void {
  checkTimeout("recvTimeout", options.recvTimeout);
  checkTimeout("sendTimeout", options.sendTimeout);
  if (options.maxLineLength !== undefined) {
    checkLimit("maxLineLength", options.maxLineLength);
  }
}

export function checkTimeout(name: string, value: number | undefined): number {
  if (value === undefined) return Infinity;
  // `null >= 0` holds: a null timeout would time every wait out at once.
  if (typeof value !== "number" || !(value >= 0)) {
    throw new RangeError(`Cannot use ${name}: must be >= 0 ms, got ${value}`);
  }
  return value;
}

export function checkLimit(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(
      `Cannot use ${name}: must be an integer >= 1, got ${value}`,
    );
  }
  return value;
}
