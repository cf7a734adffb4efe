/**
 * A byte-stream connection with coroutine operations: `recv`, `recvExact`,
 * `recvLine`, `send`, `closeWrite`. Each connection owns at most one
 * in-flight read (the "sticky read"): a receive that times out leaves it in
 * place, and the next receive gets its bytes. Nothing is lost.
 *
 * @module
 */

import { addressOf } from "./_address.ts";
import type { Operation, OperationOptions } from "./effects.ts";
import {
  checkLimit,
  checkTimeout,
  type ConnectionOptions,
  DEFAULTS,
  type PeekOptions,
  type RecvExactOptions,
  type RecvLineOptions,
  type RecvOptions,
  type Transport,
} from "./connection_options.ts";
import {
  BusyError,
  ConnectionClosedError,
  ConnectionResetError,
} from "./errors.ts";
import {
  deferRead,
  isOverBudget,
  readCompleted,
  readIssued,
} from "./_io_pacer.ts";
import type { Coroutine } from "./scheduler.ts";
import {
  CloseWriteOp,
  PeekOp,
  RecvAtMostOp,
  RecvExactOp,
  RecvLineOp,
  RecvOp,
  SendListOp,
  SendOp,
} from "./_connection_ops.ts";
import { withBit } from "./_bits.ts";
import { WaitOp } from "./operations.ts";

/** First read buffer: small, so an idle connection pins little memory. */
export const INITIAL_READ_SIZE = 1024;
/** Reads grow (doubling when one fills its buffer) up to this size. */
export const MAX_READ_SIZE = 64 * 1024;
/**
 * Address space a grown read buffer reserves: a line at the default limit
 * plus one read, twice over (pages are committed only as the buffer grows).
 */
export const GROWN_RESERVE = 4 * MAX_READ_SIZE;

// The bits of `Connection`'s flags.
const EXTERNAL = 1;
const PACED = 2;
const PENDING_READ = 4;
const EOF = 8;
const RECEIVED = 16;
const CLOSED = 32;
const WRITE_CLOSED = 64;
const BUSY = 128; // not idle: received since admitted or markIdle(), or markActive()
const SENT = 256; // a write started since a receive last returned data

// Why corio closed a connection itself, when a send's timeout did: the
// cause a later operation's ConnectionClosedError gives. Rare, so kept
// apart, not in a field of every connection.
const closeCauses = new WeakMap<Connection, Error>();

/** @internal What a server keeps of a connection it accepted. */
export interface ServerSlot {
  /** The handler called `markIdle()` on a connection that had received. */
  onMarkedIdle(): void;
}

/**
 * One connection, as its coroutine sees it. Operations are used with
 * `yield*`; each takes `{ timeout, deadline, signal }` and its deadline
 * bounds the whole operation. Its defaults (`recvTimeout`, `sendTimeout`,
 * `maxLineLength`) can be read and set on it at any time.
 *
 * @example Echo, as in seed 002
 * ```ts
 * import { type Connection, run, spawn } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * async function* echo(conn: Connection) {
 *   for (let chunk; (chunk = yield* conn.recv()) !== null;) yield* conn.send(chunk);
 * }
 * const [server, client] = memoryConnPair();
 * const reply = await run((async function* () {
 *   yield* spawn(echo(server)); // cancelled when this coroutine returns
 *   yield* client.send("hi");
 *   return new TextDecoder().decode((yield* client.recv())!);
 * })());
 * server.close();
 * client.close();
 * console.log(reply); // hi
 * ```
 */
export class Connection {
  /** @internal */ readonly transport: Transport;
  #recvTimeout: number;
  #sendTimeout: number;
  #maxLineLength: number;

  // Read side: bytes buffered in buf[start, end), at most one read in flight.
  /** @internal */ buf: Uint8Array<ArrayBuffer> = new Uint8Array(
    INITIAL_READ_SIZE,
  );
  /** @internal */ start = 0;
  /** @internal */ end = 0;
  /** @internal */ readSize = INITIAL_READ_SIZE;
  // Its yes/no state, a bit each (EXTERNAL...): six boolean fields would
  // cost 40 B more per connection. The accessors below read and set them.
  #flags = 0;
  /** @internal */ readError: unknown = null;
  /** @internal */ readWaiter: Coroutine | null = null;
  /** @internal */ readOwner: unknown = null;

  // Write side: one writer at a time; the others queue in order.
  /** @internal */ writer: SendOp | null = null;
  /** @internal Made at the first send that has to queue. */
  writeQueue: SendOp[] | null = null;
  /** @internal The send whose write is in flight (at most one). */
  writing: SendOp | null = null;
  /**
   * @internal Settles the in-flight write, fulfilled or rejected (see the
   * constructor).
   */
  readonly onWriteSettled: (result: unknown) => void;
  readonly #onReadSettled: (result: unknown) => void;
  /** @internal */ writeError: unknown = null;

  #recvOp: RecvOp | null = null;
  #recvExactOp: RecvExactOp | null = null;
  #recvLineOp: RecvLineOp | null = null;
  #sendOp: SendOp | null = null;
  #view: Uint8Array<ArrayBuffer> | null = null;
  #viewOf: Uint8Array<ArrayBuffer> | null = null;
  #viewAt = 0;
  #settled: Promise<void> | null = null;
  #resolveSettled: (() => void) | null = null;
  #peer: string | null = null;
  /** @internal The server's slot, for a connection a server accepted. */
  slot: ServerSlot | null = null;

  /**
   * Wraps a transport. `serve`, `connect` and `memoryConnPair` do this for
   * you; call it yourself only to run corio over another byte stream.
   *
   * @param transport A `Deno.Conn` or anything with its read/write/close.
   * @param options Default timeouts and limits.
   */
  constructor(transport: Transport, options: ConnectionOptions = {}) {
    this.transport = transport;
    this.#recvTimeout = checkTimeout("recvTimeout", options.recvTimeout);
    this.#sendTimeout = checkTimeout("sendTimeout", options.sendTimeout);
    this.#maxLineLength = checkLimit(
      "maxLineLength",
      options.maxLineLength ?? DEFAULTS.maxLineLength,
    );
    if (options.isExternal ?? DEFAULTS.isExternal) this.#flags = EXTERNAL;
    // Made here together, the two runtime callbacks share one context:
    // arrow-function fields would cost a context each per connection. Each
    // takes both outcomes of its promise: a read gives a number or null and
    // a write a number, so anything else is the error it was rejected with
    // (a closure fewer per direction: 112 B per connection, `deno task heap`).
    this.#onReadSettled = (result) =>
      typeof result === "number" || result === null
        ? this.readDone(result)
        : this.readFailed(result);
    this.onWriteSettled = (result) =>
      typeof result === "number"
        ? this.writing!.written(result)
        : this.writing!.writeFailed(result);
  }

  /**
   * Default recv timeout in ms (`Infinity` for none), for receives given
   * no `timeout` or `deadline`. Settable; a value below 0 or NaN throws
   * `RangeError`, as in the options.
   */
  get recvTimeout(): number {
    return this.#recvTimeout;
  }
  set recvTimeout(ms: number) {
    this.#recvTimeout = checkTimeout("recvTimeout", ms);
  }

  /**
   * Default send timeout in ms (`Infinity` for none), for sends given no
   * `timeout` or `deadline`. Settable; a value below 0 or NaN throws
   * `RangeError`, as in the options.
   */
  get sendTimeout(): number {
    return this.#sendTimeout;
  }
  set sendTimeout(ms: number) {
    this.#sendTimeout = checkTimeout("sendTimeout", ms);
  }

  /**
   * Longest line `recvLine` accepts, in bytes. Settable; anything but an
   * integer >= 1 throws `RangeError`, as in the options.
   */
  get maxLineLength(): number {
    return this.#maxLineLength;
  }
  set maxLineLength(bytes: number) {
    this.#maxLineLength = checkLimit("maxLineLength", bytes);
  }

  /** @internal True when only the outside world can wake its waits. */
  get isExternal(): boolean {
    return (this.#flags & EXTERNAL) !== 0;
  }

  /**
   * @internal A socket of Deno's own (set by `serve` and `connect`): its reads
   * and writes go through the pacer (src/_io_pacer.ts).
   */
  get isPaced(): boolean {
    return (this.#flags & PACED) !== 0;
  }
  set isPaced(value: boolean) {
    this.#flags = withBit(this.#flags, PACED, value);
  }

  /** @internal A read is in flight (or deferred by the pacer). */
  get hasPendingRead(): boolean {
    return (this.#flags & PENDING_READ) !== 0;
  }
  set hasPendingRead(value: boolean) {
    this.#flags = withBit(this.#flags, PENDING_READ, value);
  }

  /** @internal The peer ended its side: no more bytes will come. */
  get isEof(): boolean {
    return (this.#flags & EOF) !== 0;
  }
  set isEof(value: boolean) {
    this.#flags = withBit(this.#flags, EOF, value);
  }

  /** @internal True once a recv, recvExact or recvLine returned data. */
  get hasReceived(): boolean {
    return (this.#flags & RECEIVED) !== 0;
  }

  /**
   * @internal True while the server may evict it at the cap: nothing
   * received since its handler started, or since `markIdle()`, and no
   * `markActive()` since.
   */
  get isIdle(): boolean {
    return (this.#flags & BUSY) === 0;
  }

  /** @internal A receive returned data: it has received, and is busy. */
  received(): void {
    this.#flags = (this.#flags | RECEIVED | BUSY) & ~SENT;
  }

  /**
   * @internal True when a send began after the last receive that returned
   * data (or, for a pool's connection, since it was lent): a request whose
   * reply may still come.
   */
  get isAwaitingReply(): boolean {
    return (this.#flags & SENT) !== 0;
  }
  set isAwaitingReply(value: boolean) {
    this.#flags = withBit(this.#flags, SENT, value);
  }

  /** @internal A write started: a reply may be due (`isAwaitingReply`). */
  sent(): void {
    this.#flags |= SENT;
  }

  /**
   * Tells the server this connection is between requests, as an HTTP/1.1
   * keep-alive connection is once its response is sent: from now until a
   * receive returns data, it counts as idle, as a connection that has sent
   * nothing since its handler started does. At the cap, a connection idle for
   * `evictAfter` ms may be evicted (its handler cancelled) to admit a
   * waiting client, the longest idle first (see `ServeOptions.evictAfter`).
   * Called again before data arrives, it changes nothing: the connection
   * stays idle since the first call. On a connection no server accepted
   * (`connect`, a pool's), it does nothing.
   *
   * @example A keep-alive handler that a new client may displace between requests
   * ```ts
   * import { serve } from "@corio/corio";
   *
   * const server = serve(
   *   { port: 0, maxConnections: 100, evictAfter: 5_000 },
   *   async function* (conn) {
   *     for (let line; (line = yield* conn.recvLine({ timeout: 60_000 })) !== null;) {
   *       yield* conn.send(`${line.toUpperCase()}\n`);
   *       conn.markIdle(); // evictable until the next line arrives
   *     }
   *   },
   * );
   * await server.shutdown();
   * ```
   */
  markIdle(): void {
    const flags = this.#flags;
    if ((flags & BUSY) === 0) return;
    this.#flags = flags & ~BUSY;
    this.slot?.onMarkedIdle();
  }

  /**
   * Tells the server this connection is busy though it may receive nothing
   * (a relay streaming to it what it receives on another connection, a
   * push feed): it is not idle, so never evicted at the cap, until
   * `markIdle()`. A receive that returns data does the same.
   *
   * @example A relay whose client may send nothing, kept from eviction
   * ```ts
   * import { connect, serve } from "@corio/corio";
   *
   * const server = serve({ port: 0, maxConnections: 100 }, async function* (conn) {
   *   conn.markActive(); // its traffic comes from upstream
   *   const upstream = yield* connect({ port: 9000, timeout: 1000 });
   *   for (let chunk; (chunk = yield* upstream.recv()) !== null;) {
   *     yield* conn.send(chunk);
   *   }
   * });
   * await server.shutdown();
   * ```
   */
  markActive(): void {
    this.#flags |= BUSY;
  }

  /**
   * @internal True once `closeWrite()` began: this side sends no more (a
   * pool does not lend the connection again).
   */
  get isWriteClosed(): boolean {
    return (this.#flags & WRITE_CLOSED) !== 0;
  }
  set isWriteClosed(value: boolean) {
    this.#flags = withBit(this.#flags, WRITE_CLOSED, value);
  }

  /** The peer's address. */
  get remoteAddr(): Deno.Addr {
    return this.transport.remoteAddr;
  }

  /** This end's address. */
  get localAddr(): Deno.Addr {
    return this.transport.localAddr;
  }

  /** True once `close()` ran (by you, a send timeout, or the owner ending). */
  get isClosed(): boolean {
    return (this.#flags & CLOSED) !== 0;
  }

  /**
   * @internal True once closed and nothing of it is pending in the runtime
   * (no read, no write): its owner may forget it.
   */
  get isReleased(): boolean {
    return this.isClosed && !this.hasPendingRead && this.writing === null;
  }

  /** How many received bytes wait in the buffer, not yet returned. */
  get buffered(): number {
    return this.end - this.start;
  }

  /**
   * Receives the bytes that are buffered, or the next chunk that arrives.
   *
   * Deadline: `timeout`/`deadline` (default `recvTimeout`).
   * Errors: `TimeoutError`; `ConnectionResetError`; `ConnectionClosedError`
   * if closed on this side; `BusyError` if another coroutine is receiving.
   * State after failure: after a timeout the connection is intact, and the
   * bytes of the read in flight go to the next receive.
   *
   * @param options Deadline, signal, `borrow` for a zero-copy view, `max`
   *   for at most that many bytes.
   * @returns The bytes, or `null` at end of stream, which on Deno 2.9.6 is
   *   also how a TCP peer's reset reads (a send then fails).
   */
  recv(options?: RecvOptions): Operation<Uint8Array<ArrayBuffer> | null> {
    const max = options?.max;
    if (max !== undefined) {
      if (!(Number.isInteger(max) && max >= 1)) {
        throw new RangeError(
          `Cannot receive: max must be an integer >= 1, got ${max}`,
        );
      }
      return new RecvAtMostOp(this, max, options!);
    }
    // The usual loop, `recv()` once per message with the same options,
    // reuses one operation: an allocation less per message. One in use
    // (handed out, or running) is never handed out again, so two readers
    // still get BusyError.
    let op = this.#recvOp;
    if (
      op === null || op.effect.isInUse ||
      op.isBorrowed !== (options?.borrow === true) ||
      !op.hasOptions(options, this.recvTimeout)
    ) op = this.#recvOp = new RecvOp(this, options);
    op.effect.handOut();
    return op;
  }

  /**
   * Waits until bytes are buffered and returns them without taking them:
   * the next receive gets them again. For an idle timeout apart from a
   * message's own (wait up to a minute for a request to begin, then give
   * its line 5 s), or to look at a first byte before choosing a parser.
   *
   * Deadline: `timeout`/`deadline` (default `recvTimeout`). Errors: as
   * `recv`. State after failure: as `recv`, nothing taken.
   *
   * @param options Deadline, signal, and `min` to wait for that many bytes
   *   (one by default).
   * @returns A view of every byte buffered (`min` at least, fewer only at
   *   the end of the stream), valid until the next receive; or `null` at
   *   the end of the stream with nothing buffered.
   *
   * @example An idle limit, then a deadline for the whole command line
   * ```ts
   * import { run } from "@corio/corio";
   * import { memoryConnPair } from "@corio/corio/testing";
   *
   * const [conn, peer] = memoryConnPair();
   * const line = await run((function* () {
   *   yield* peer.send("NOOP\r\n");
   *   if ((yield* conn.peek({ timeout: 60_000 })) === null) return null;
   *   return yield* conn.recvLine({ timeout: 5_000 });
   * })());
   * console.log(line); // NOOP
   * ```
   */
  peek(options?: PeekOptions): Operation<Uint8Array<ArrayBuffer> | null> {
    const min = options?.min ?? 1;
    if (!(Number.isInteger(min) && min >= 1)) {
      throw new RangeError(
        `Cannot peek: min must be an integer >= 1, got ${min}`,
      );
    }
    return new PeekOp(this, min, options);
  }

  /**
   * Drops the next `n` buffered bytes, at once: with `peek()`, a parser that
   * decodes every whole message in the buffer and then skips them, with no
   * operation per message (Go's `bufio.Reader.Discard`). A view `peek()`
   * or a borrowing receive gave stays valid until the next receive.
   *
   * Errors: `RangeError` unless `n` is an integer from 0 to `buffered`;
   * `BusyError` while another coroutine waits in a receive on this
   * connection; `ConnectionClosedError` once it is closed on this side.
   *
   * @param n How many bytes, from 0 to `buffered`.
   *
   * @example Decode every whole frame buffered, then skip them
   * ```ts
   * import { run } from "@corio/corio";
   * import { memoryConnPair } from "@corio/corio/testing";
   *
   * const [conn, peer] = memoryConnPair();
   * const frames = await run((function* () {
   *   // frames of a length byte and that many bytes; the last one cut short
   *   yield* peer.send(new Uint8Array([2, 65, 66, 1, 67, 3, 68]));
   *   const view = (yield* conn.peek({ timeout: 1000 }))!;
   *   const frames: number[][] = [];
   *   let at = 0;
   *   while (at < view.length && at + 1 + view[at] <= view.length) {
   *     frames.push([...view.subarray(at + 1, at + 1 + view[at])]);
   *     at += 1 + view[at];
   *   }
   *   conn.skip(at);
   *   return frames;
   * })());
   * console.log(frames, conn.buffered); // [ [ 65, 66 ], [ 67 ] ] 2
   * conn.close();
   * peer.close();
   * ```
   */
  skip(n: number): void {
    if (this.isClosed) throw this.closedError("skip", `from ${this.peer}`);
    if (this.readOwner !== null) {
      throw new BusyError("skip", `from ${this.peer}`);
    }
    const buffered = this.end - this.start;
    if (!Number.isInteger(n) || n < 0 || n > buffered) {
      throw new RangeError(
        `Cannot skip: n must be an integer from 0 to the ${buffered} bytes buffered, got ${n}`,
      );
    }
    // Not reset to 0 when it empties the buffer: a read in flight fills it
    // from `end` (`startRead` resets it before the next read).
    this.start += n;
  }

  /**
   * Finishes a TLS connection's handshake, unless its first receive or send
   * has, and tells what it agreed: `alpnProtocol`, the application protocol
   * chosen by ALPN (`alpnProtocols` of `serve` and of `connect`'s `tls`),
   * or `null` when none was. On a connection that is not TLS it gives
   * `{ alpnProtocol: null }` at once.
   *
   * Deadline: `timeout`/`deadline` (default `recvTimeout`). Errors:
   * `TimeoutError` (op `"handshake"`; the handshake runs on: close the
   * connection); `ConnectionResetError` when the handshake fails (no
   * protocol in common, a client that is no TLS client);
   * `ConnectionClosedError` once closed.
   *
   * @param options Deadline and signal.
   * @returns What the handshake agreed.
   *
   * @example A server that speaks what ALPN chose
   * ```ts ignore
   * import { serve } from "@corio/corio";
   *
   * serve({
   *   port: 8443,
   *   cert: await Deno.readTextFile("cert.pem"),
   *   key: await Deno.readTextFile("key.pem"),
   *   alpnProtocols: ["h2", "http/1.1"],
   * }, async function* (conn) {
   *   const { alpnProtocol } = yield* conn.handshake({ timeout: 5000 });
   *   yield* conn.send(alpnProtocol === "h2" ? "h2 is not served here\n" : "hello\n");
   * });
   * ```
   *
   * @example Not TLS: no protocol
   * ```ts
   * import { run } from "@corio/corio";
   * import { memoryConnPair } from "@corio/corio/testing";
   *
   * const [conn, peer] = memoryConnPair();
   * const info = await run((function* () {
   *   return yield* conn.handshake();
   * })());
   * console.log(info); // { alpnProtocol: null }
   * conn.close();
   * peer.close();
   * ```
   */
  handshake(
    options?: OperationOptions,
  ): Operation<{ alpnProtocol: string | null }> {
    if (this.isClosed) throw this.closedError("handshake", `with ${this.peer}`);
    const transport = this.transport as {
      handshake?: () => Promise<Deno.TlsHandshakeInfo>;
    };
    const where = `with ${this.peer}`;
    const info = typeof transport.handshake !== "function"
      ? Promise.resolve({ alpnProtocol: null })
      : transport.handshake().then(
        (agreed) => ({ alpnProtocol: agreed.alpnProtocol }),
        (error) => {
          throw this.ioError("handshake", error, where);
        },
      );
    const timed = options?.timeout !== undefined ||
        options?.deadline !== undefined
      ? options
      : { ...options, timeout: this.recvTimeout };
    return new WaitOp(info, timed, "handshake", where);
  }

  /**
   * Receives exactly `n` bytes.
   *
   * Deadline: for all `n` bytes together. Errors: as `recv`, and
   * `IncompleteReadError` (with the `partial` bytes) if the stream ends
   * first. State after failure: a timeout keeps every byte buffered.
   *
   * Memory: `n` over 256 KiB is read into a buffer of exactly `n` bytes,
   * which is then returned, not copied (a `borrow` view of it is reused for
   * the next message of the same size); reads stop at the message's end.
   * Smaller messages are copied out of the read buffer.
   *
   * @param n How many bytes, 0 or more.
   * @param options Deadline, signal, and `borrow` for a zero-copy view.
   * @returns The bytes.
   */
  recvExact(
    n: number,
    options?: RecvExactOptions,
  ): Operation<Uint8Array<ArrayBuffer>> {
    if (!Number.isInteger(n) || n < 0) {
      throw new RangeError(
        `Cannot receive exact bytes: n must be an integer >= 0, got ${n}`,
      );
    }
    // Reused as recv() reuses its operation: a framed protocol reads a
    // header and a body per message.
    let op = this.#recvExactOp;
    if (
      op === null || op.effect.isInUse ||
      op.isBorrowed !== (options?.borrow === true) ||
      !op.hasOptions(options, this.recvTimeout)
    ) op = this.#recvExactOp = new RecvExactOp(this, n, options);
    else op.n = n;
    op.effect.handOut();
    return op;
  }

  /**
   * Receives one line, ended by LF or CRLF (with `crlfOnly`, by CRLF
   * alone), as a string without its terminator (UTF-8; invalid bytes become
   * U+FFFD: a protocol that carries other bytes reads them with `recv`). At
   * end of stream a final unterminated line is returned, then `null`; with
   * `requireNewline` it throws instead.
   *
   * Deadline: for the whole line, so a trickle cannot keep it alive.
   * Errors: as `recv`, and `LineTooLongError` past `maxLineLength`, which
   * also closes the connection; `IncompleteReadError` (with the `partial`
   * bytes) for an unterminated last line, given `requireNewline`. Buffers
   * at most the limit plus one read.
   *
   * @param options Deadline, signal, `maxLineLength`, `requireNewline` and
   *   `crlfOnly`.
   * @returns The line, or `null` at end of stream.
   */
  recvLine(options?: RecvLineOptions): Operation<string | null> {
    const limit = options?.maxLineLength === undefined
      ? this.maxLineLength
      : checkLimit("maxLineLength", options.maxLineLength);
    // Reused as recv() reuses its operation, for line protocols' loops.
    let op = this.#recvLineOp;
    if (
      op === null || op.effect.isInUse || op.limit !== limit ||
      op.requireNewline !== (options?.requireNewline === true) ||
      op.crlfOnly !== (options?.crlfOnly === true) ||
      !op.hasOptions(options, this.recvTimeout)
    ) op = this.#recvLineOp = new RecvLineOp(this, limit, options);
    op.effect.handOut();
    return op;
  }

  /**
   * Sends all of `data` (a string is sent as UTF-8). Sends from several
   * coroutines are queued, never interleaved.
   *
   * A list of chunks is sent as one send, in order, with no other send's
   * bytes between them: a frame's header and its payload, without copying
   * the payload into one buffer first. Chunks under 16 KiB are copied
   * together into writes of up to 64 KiB (a small frame is one TCP
   * segment; a reply of thousands of small pieces a few writes); larger
   * chunks are written as they are.
   *
   * Deadline: for all bytes (default `sendTimeout`), queueing included.
   * Errors: `TimeoutError`, after which the connection is **closed** (how
   * much reached the peer is unknown) unless the send wrote nothing: still
   * queued behind another, or its deadline already past when it began (an
   * already aborted `signal` likewise writes nothing); `ConnectionResetError`;
   * `ConnectionClosedError` (also after this side's `closeWrite()`, and
   * then the connection stays open for receiving). Cancelling a send
   * mid-write closes too.
   *
   * @param data The bytes or text, or a list of them to send as one.
   * @param options Deadline and signal.
   *
   * @example A header and its payload, as one send
   * ```ts
   * import { run } from "@corio/corio";
   * import { memoryConnPair } from "@corio/corio/testing";
   *
   * const [conn, peer] = memoryConnPair();
   * const payload = new TextEncoder().encode("hello");
   * const frame = await run((function* () {
   *   const header = new Uint8Array([0x82, payload.length]);
   *   yield* conn.send([header, payload]);
   *   return yield* peer.recvExact(2 + payload.length);
   * })());
   * console.log(frame.length); // 7
   * conn.close();
   * peer.close();
   * ```
   */
  send(
    data: Uint8Array | string | readonly (Uint8Array | string)[],
    options?: OperationOptions,
  ): Operation<void> {
    // Sending the same bytes object (a borrowed view echoed back) or the
    // same string again reuses the idle operation, as recv() does: it would
    // send exactly what a new one would.
    let op = this.#sendOp;
    if (
      op === null || op.data !== data || op.effect.isInUse ||
      !op.hasOptions(options, this.sendTimeout)
    ) {
      op = this.#sendOp = typeof data === "string" || data instanceof Uint8Array
        ? new SendOp(this, data, options, false)
        : new SendListOp(this, data, options, false);
    }
    op.effect.handOut();
    return op;
  }

  /**
   * Ends the sending side (TCP FIN) once queued sends are out; the peer
   * reads end of stream, and this side can still receive. A send after it
   * throws `ConnectionClosedError`.
   *
   * @param options Deadline and signal.
   */
  closeWrite(options?: OperationOptions): Operation<void> {
    return new CloseWriteOp(this, options);
  }

  /**
   * Closes the connection at once; idempotent. Operations waiting on it
   * fail with `ConnectionClosedError`.
   */
  close(): void {
    if (this.isClosed) return;
    this.#flags |= CLOSED;
    try {
      this.transport.close();
    } catch {
      // Already closed by the runtime (e.g. after a reset): nothing to free.
    }
    const reader = this.readWaiter;
    this.readWaiter = null;
    reader?.wake();
    this.writer?.wakeWaiter();
    for (const queued of this.writeQueue?.slice() ?? []) queued.wakeWaiter();
    this.maybeSettle();
  }

  /**
   * Settles once the connection is closed and no read or write of it is
   * pending in the runtime (what leak checks look for).
   */
  get settled(): Promise<void> {
    if (this.#settled === null) {
      this.#settled = new Promise((resolve) => this.#resolveSettled = resolve);
      this.maybeSettle();
    }
    return this.#settled;
  }

  /**
   * The peer, as error messages name it: "127.0.0.1:4000",
   * "unix:/run/app.sock", or "a client of unix:/run/app.sock" on a Unix
   * server, whose clients' sockets have no name (Deno gives `path: null`).
   */
  get peer(): string {
    if (this.#peer === null) {
      const addr = this.transport.remoteAddr as {
        transport?: string;
        hostname?: string;
        port?: number;
        path?: string | null;
      };
      const localPath = (this.transport.localAddr as { path?: string | null })
        .path;
      this.#peer = addr.hostname !== undefined || addr.path
        ? addressOf(addr)
        : addr.transport === "unix" || addr.transport === "unixpacket"
        ? `a client of unix:${localPath ?? "?"}`
        : "peer";
    }
    return this.#peer;
  }

  /**
   * The peer, as error messages name it.
   *
   * @returns `"127.0.0.1:4000"`, `"unix:/run/app.sock"` for a client of a
   *   Unix socket, `"a client of unix:/run/app.sock"` on its server.
   *
   * @example
   * ```ts
   * import { memoryConnPair } from "@corio/corio/testing";
   *
   * const [conn, peer] = memoryConnPair();
   * console.log(String(conn).length > 0); // true
   * conn.close();
   * peer.close();
   * ```
   */
  toString(): string {
    return this.peer;
  }

  /**
   * @internal Forgets what is kept only to be reused by the next message
   * (the idle send and its result, the last borrowed view): the server
   * calls it for connections that have waited a while, so an idle
   * connection does not hold them.
   */
  compact(): void {
    if (this.#sendOp !== null && !this.#sendOp.effect.isInUse) {
      this.#sendOp = null;
    }
    this.#view = this.#viewOf = null;
  }

  /**
   * @internal A view of buf[start, end). The last one is handed out again
   * when it covers the same bytes (fixed-size messages): a borrowed view is
   * valid only until the next receive anyway.
   */
  view(start: number, end: number): Uint8Array<ArrayBuffer> {
    const last = this.#view;
    // Compared by the buffer object and offset it was cut at: reading a
    // view's `buffer` and `byteOffset` cost more than the subarray saved.
    if (
      last !== null && this.#viewOf === this.buf && this.#viewAt === start &&
      last.length === end - start
    ) return last;
    this.#viewOf = this.buf;
    this.#viewAt = start;
    return this.#view = this.buf.subarray(start, end);
  }

  /**
   * @internal Starts the one read, making room for at least `room` bytes;
   * `isPaced` false starts it now even past the read pacer's budget (a
   * pool's look at a connection given back, which nothing waits on).
   */
  startRead(room = 1, isPaced = true): void {
    if (this.hasPendingRead || this.isEof || this.readError !== null) return;
    if (this.isClosed) return;
    let buf = this.buf;
    if (this.start === this.end) {
      this.start = this.end = 0;
      // Grown past what reads need, for one large message (`recvExact`):
      // let it go once it is empty, so that a connection holds its read
      // size, not its largest message (twice over) for as long as it lives.
      if (buf.length > GROWN_RESERVE && room <= this.readSize) {
        this.buf = buf = new Uint8Array(this.readSize);
        this.#view = this.#viewOf = null; // a borrowed view's, into the old
      }
    }
    const want = room > this.readSize ? room : this.readSize;
    if (buf.length - this.end < want) {
      const buffered = this.end - this.start;
      // Grow only when compacting leaves less than half a read (or `room`):
      // a line at the limit then fits in limit + one read, not twice that.
      const minimum = room > want >> 1 ? room : want >> 1;
      if (buf.length - buffered >= minimum) {
        if (this.start > 0) buf.copyWithin(0, this.start, this.end);
      } else {
        let size = buf.length * 2;
        while (size < buffered + want) size *= 2;
        this.buf = buf = grow(buf, this.start, this.end, size);
      }
      this.start = 0;
      this.end = buffered;
    }
    this.hasPendingRead = true;
    if (isPaced && this.isPaced && isOverBudget()) deferRead(this);
    else this.issueRead();
  }

  /**
   * @internal Starts the one read for a message of `size` bytes (more than
   * `GROWN_RESERVE`, so a plain buffer) in a buffer of exactly that size,
   * the bytes buffered at its front: reads stop at the message's end, and
   * the message is the buffer itself (`takeBuffer`), no copy made.
   */
  startExactRead(size: number): void {
    if (this.hasPendingRead || this.isEof || this.readError !== null) return;
    if (this.isClosed) return;
    const buf = this.buf;
    if (buf.length !== size) {
      const exact = new Uint8Array(size);
      exact.set(buf.subarray(this.start, this.end));
      this.buf = exact;
      this.#view = this.#viewOf = null; // a borrowed view's, into the old
    } else if (this.start > 0) buf.copyWithin(0, this.start, this.end);
    this.end -= this.start;
    this.start = 0;
    this.hasPendingRead = true;
    if (this.isPaced && isOverBudget()) deferRead(this);
    else this.issueRead();
  }

  /**
   * @internal Gives away the buffer, full with one message that
   * `startExactRead` sized it for, and starts afresh with one of the read
   * size (a plain one: a resizable buffer's pages are mapped afresh).
   */
  takeBuffer(): Uint8Array<ArrayBuffer> {
    const buf = this.buf;
    this.buf = new Uint8Array(this.readSize);
    this.start = this.end = 0;
    this.#view = this.#viewOf = null;
    return buf;
  }

  /**
   * @internal Reads into buf[end..]. A read the pacer deferred counts as in
   * flight from `startRead` on: nothing touches those bytes meanwhile.
   */
  issueRead(): void {
    if (this.isClosed) {
      this.hasPendingRead = false;
      this.maybeSettle();
      return;
    }
    const buf = this.buf;
    if (this.isPaced) readIssued();
    this.transport.read(this.end === 0 ? buf : buf.subarray(this.end)).then(
      this.#onReadSettled,
      this.#onReadSettled,
    );
  }

  // readDone, readFailed and wakeReader are public for the same reason as
  // the flags: a private method costs every instance a brand field (8 B).

  /** @internal The read in flight gave `n` bytes, or `null` at its end. */
  readDone(n: number | null): void {
    this.hasPendingRead = false;
    if (this.isPaced) readCompleted();
    if (n === null) {
      this.isEof = true;
    } else {
      this.end += n;
      const size = this.readSize;
      if (n === this.buf.length - (this.end - n) && size < MAX_READ_SIZE) {
        this.readSize = size * 2;
      } else if (n < size >> 2 && size > INITIAL_READ_SIZE) {
        this.readSize = size >> 1;
      }
    }
    this.wakeReader();
  }

  /** @internal The read in flight failed. */
  readFailed(error: unknown): void {
    this.hasPendingRead = false;
    if (this.isPaced) readCompleted();
    if (!this.isClosed) this.readError = error;
    this.wakeReader();
  }

  /** @internal Wakes the coroutine waiting to receive, if any. */
  wakeReader(): void {
    const reader = this.readWaiter;
    this.readWaiter = null;
    if (reader !== null) reader.wake();
    else if (this.isClosed) this.maybeSettle();
  }

  /** @internal Resolves `settled` when nothing is pending any more. */
  maybeSettle(): void {
    if (
      this.#resolveSettled !== null && this.isClosed && !this.hasPendingRead &&
      this.writing === null
    ) {
      this.#resolveSettled();
      this.#resolveSettled = null;
    }
  }

  /**
   * @internal Closes it because of `cause` (a send's `TimeoutError`): the
   * `ConnectionClosedError` of every later operation names it.
   */
  closeFor(cause: Error): void {
    if (!this.isClosed) closeCauses.set(this, cause);
    this.close();
  }

  /** @internal The error of an operation `op` that finds it closed. */
  closedError(op: string, where: string): ConnectionClosedError {
    const cause = closeCauses.get(this);
    return cause === undefined
      ? new ConnectionClosedError(op, where)
      : new ConnectionClosedError(op, where, { cause });
  }

  /** @internal The typed error for a runtime I/O error in `op`. */
  ioError(op: string, error: unknown, where: string): Error {
    if (this.isClosed) return this.closedError(op, where);
    if (
      error instanceof Deno.errors.BadResource ||
      error instanceof Deno.errors.Interrupted
    ) return new ConnectionClosedError(op, where);
    // Only a TLS connection's reads and writes fail so in Deno 2.9.6
    // (measured): a server's TlsConn handshakes at its first read or write,
    // and a client that is no TLS client fails it with InvalidData
    // ("received corrupt message of type InvalidContentType"), one that
    // rejects our certificate with InvalidData ("received fatal alert:
    // UnknownCA"), one that closes first with UnexpectedEof. The peer is
    // gone all the same; the message says why.
    if (
      error instanceof Deno.errors.InvalidData ||
      error instanceof Deno.errors.UnexpectedEof
    ) {
      const what = this.hasReceived ? "the TLS session" : "the TLS handshake";
      return new ConnectionResetError(op, where, {
        cause: error,
        why: `${what} failed: ${error.message}`,
      });
    }
    return new ConnectionResetError(op, where, { cause: error });
  }
}

/**
 * A buffer of `size` bytes holding buf[start, end) at its front. Up to
 * `GROWN_RESERVE` it grows in place: a resizable `ArrayBuffer` reserves
 * that much address space and commits pages only as it grows, so a
 * connection that grows step by step to a line at the limit leaves no
 * outgrown buffers behind for the collector (each step allocating anew put
 * the peak RSS near twice the live bytes). Past it (one large message, as
 * `recvExact` asks for) a plain buffer: V8 maps a resizable one's memory
 * afresh each time, and on this VM touching new pages cost ~4 ms per MiB,
 * where the allocator hands a plain buffer memory it had before (0.2 ms).
 */
function grow(
  buf: Uint8Array<ArrayBuffer>,
  start: number,
  end: number,
  size: number,
): Uint8Array<ArrayBuffer> {
  const backing = buf.buffer;
  if (backing.resizable && size <= backing.maxByteLength) {
    if (start > 0) buf.copyWithin(0, start, end);
    backing.resize(size);
    return new Uint8Array(backing, 0, size);
  }
  const grown = size > GROWN_RESERVE ? new Uint8Array(size) : new Uint8Array(
    new ArrayBuffer(size, { maxByteLength: GROWN_RESERVE }),
    0,
    size,
  );
  grown.set(buf.subarray(start, end));
  return grown;
}
