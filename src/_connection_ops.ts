// The operations of a Connection. Internal: users reach them through
// Connection's methods. Each op polls the connection's buffer or writer,
// and parks its coroutine on the connection until the read or write in
// flight completes.

import { Op, type OperationOptions, PENDING } from "./effects.ts";
import {
  BusyError,
  ConnectionClosedError,
  IncompleteReadError,
  LineTooLongError,
  TimeoutError,
} from "./errors.ts";
import { type Connection, GROWN_RESERVE } from "./connection.ts";
import type {
  PeekOptions,
  RecvExactOptions,
  RecvLineOptions,
  RecvOptions,
} from "./connection_options.ts";
import type { Coroutine } from "./scheduler.ts";
import { startWrite, writeBegun, writeEnded } from "./_io_pacer.ts";

/** What `recvExact(0)` gives: no bytes, so it counts as no receive. */
const NOTHING = new Uint8Array(0);
const LF = 10;
const CR = 13;
// `ignoreBOM` keeps a U+FEFF that starts a line: each line is decoded on
// its own, and the default would drop it from every line it began.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
const encoder = new TextEncoder();

abstract class ReadOp<T> extends Op<T> {
  constructor(readonly conn: Connection, options?: OperationOptions) {
    super(options, conn.recvTimeout);
    this.effect.external = conn.isExternal;
    this.effect.isRepark = true;
  }
  get where(): string {
    return `from ${this.conn.peer}`;
  }
  /** Takes what the buffer holds, or returns PENDING (a read started). */
  protected abstract read(): T | typeof PENDING;
  poll(): T | typeof PENDING {
    const conn = this.conn;
    if (conn.readOwner !== null && conn.readOwner !== this) {
      throw new BusyError(this.op, this.where);
    }
    // No receive waits (readOwner), so a read waiter is only a mark that a
    // pool's idle watcher left on its read in flight (src/_pool_ops.ts):
    // this receive makes that read its own, even if it ends without waiting
    // (timeout 0, a past deadline, an aborted signal), and its reply may
    // come on it.
    if (conn.readOwner === null) conn.readWaiter = null;
    // Closed on this side: what is still buffered is no longer to be had
    // (after a LineTooLongError, the start of the line over the limit).
    if (conn.isClosed) {
      this.release();
      throw conn.closedError(this.op, this.where);
    }
    let result: T | typeof PENDING;
    try {
      result = this.read();
    } catch (error) {
      this.release();
      throw error;
    }
    if (result !== PENDING) {
      this.release();
      // `recvExact(0)` received nothing: a reply may still be due.
      if (result !== null && result !== NOTHING) conn.received();
    }
    return result;
  }
  /**
   * Throws the read error that stops any receive, once buffered bytes
   * cannot satisfy it (`poll()` has already thrown for a closed connection).
   */
  protected checkUsable(): void {
    const conn = this.conn;
    if (conn.readError !== null) {
      throw conn.ioError(this.op, conn.readError, this.where);
    }
  }
  park(co: Coroutine): boolean {
    // poll() left a read in flight; if it is gone, it has completed.
    if (!this.conn.hasPendingRead) return true;
    this.conn.readWaiter = co;
    this.conn.readOwner = this;
    return false;
  }
  unpark(): void {
    this.conn.readWaiter = null;
    this.conn.readOwner = null;
  }
  protected release(): void {
    if (this.conn.readOwner === this) this.conn.readOwner = null;
  }
  override cancelled(): void {
    const conn = this.conn;
    if (conn.readOwner === this) this.unpark();
    // Refused at its start (an aborted signal): it still makes a pool's
    // read in flight its own, as poll() does.
    else if (conn.readOwner === null) conn.readWaiter = null;
  }
  timedOut(): T {
    this.release();
    throw new TimeoutError(this.op, this.effect.timeoutThatFired, this.where);
  }
}

export class RecvOp extends ReadOp<Uint8Array<ArrayBuffer> | null> {
  get op(): string {
    return "recv";
  }
  readonly isBorrowed: boolean;
  constructor(conn: Connection, options: RecvOptions | undefined) {
    super(conn, options);
    this.isBorrowed = options?.borrow === true;
  }
  protected read(): Uint8Array<ArrayBuffer> | null | typeof PENDING {
    const conn = this.conn;
    if (conn.start < conn.end) {
      // A borrowed view stays valid until the next receive starts a read.
      const bytes = this.isBorrowed
        ? conn.view(conn.start, conn.end)
        : conn.buf.slice(conn.start, conn.end);
      // Not back to 0: a read left in flight by a receive that timed out
      // with these bytes buffered is filling buf[end..]. The next read
      // starts at 0 once none is in flight (`startRead`).
      conn.start = conn.end;
      return bytes;
    }
    if (conn.isEof && conn.readError === null) return null;
    this.checkUsable();
    conn.startRead();
    return PENDING;
  }
}

/**
 * `recv({ max })`: a receive that takes at most `max` of the bytes
 * buffered; a subclass, so that the plain receive every echo loop runs,
 * and its reuse, check no limit.
 */
export class RecvAtMostOp extends RecvOp {
  constructor(
    conn: Connection,
    readonly max: number,
    options: RecvOptions,
  ) {
    super(conn, options);
  }
  protected override read(): Uint8Array<ArrayBuffer> | null | typeof PENDING {
    const conn = this.conn;
    // Within the limit, or nothing buffered: as any receive.
    if (conn.end - conn.start <= this.max) return super.read();
    const end = conn.start + this.max;
    const bytes = this.isBorrowed
      ? conn.view(conn.start, end)
      : conn.buf.slice(conn.start, end);
    conn.start = end;
    return bytes;
  }
}

export class PeekOp extends ReadOp<Uint8Array<ArrayBuffer> | null> {
  get op(): string {
    return "peek";
  }
  constructor(conn: Connection, readonly min: number, options?: PeekOptions) {
    super(conn, options);
  }
  protected read(): Uint8Array<ArrayBuffer> | null | typeof PENDING {
    const conn = this.conn;
    const buffered = conn.end - conn.start;
    const atEnd = conn.isEof && conn.readError === null;
    // Taken by nothing: the next receive gets these bytes again.
    if (buffered >= this.min || (atEnd && buffered > 0)) {
      return conn.view(conn.start, conn.end);
    }
    if (atEnd) return null;
    this.checkUsable();
    conn.startRead(this.min - buffered);
    return PENDING;
  }
}

export class RecvExactOp extends ReadOp<Uint8Array<ArrayBuffer>> {
  get op(): string {
    return "recvExact";
  }
  readonly isBorrowed: boolean;
  constructor(
    conn: Connection,
    public n: number,
    options?: RecvExactOptions,
  ) {
    super(conn, options);
    this.isBorrowed = options?.borrow === true;
  }
  protected read(): Uint8Array<ArrayBuffer> | typeof PENDING {
    if (this.n === 0) return NOTHING;
    const conn = this.conn;
    const start = conn.start;
    const n = this.n;
    if (conn.end - start >= n) {
      const end = start + n;
      // Read into a buffer of its size (a large message): it is the bytes.
      if (
        n > GROWN_RESERVE && start === 0 && conn.buf.length === n &&
        !this.isBorrowed
      ) return conn.takeBuffer();
      const bytes = this.isBorrowed
        ? conn.view(start, end)
        : conn.buf.slice(start, end);
      conn.start = end;
      return bytes;
    }
    const buffered = conn.end - start;
    if (conn.isEof && conn.readError === null) {
      const partial = conn.buf.slice(conn.start, conn.end);
      conn.start = conn.end = 0;
      throw new IncompleteReadError(n, partial, this.where);
    }
    this.checkUsable();
    // A large message is read into a buffer of its own size, which is then
    // the message: no slice copied out of a buffer grown to twice its size.
    if (n > GROWN_RESERVE) conn.startExactRead(n);
    else conn.startRead(n - buffered);
    return PENDING;
  }
}

export class RecvLineOp extends ReadOp<string | null> {
  get op(): string {
    return "recvLine";
  }
  #scanned = 0; // bytes after conn.start already known to end no line
  readonly requireNewline: boolean;
  readonly crlfOnly: boolean;
  constructor(
    conn: Connection,
    readonly limit: number,
    options?: RecvLineOptions,
  ) {
    super(conn, options);
    this.requireNewline = options?.requireNewline === true;
    this.crlfOnly = options?.crlfOnly === true;
  }
  override begin(): void {
    this.#scanned = 0;
  }
  protected read(): string | null | typeof PENDING {
    const conn = this.conn;
    const { buf, start, end } = conn;
    let index = buf.indexOf(LF, start + this.#scanned);
    if (this.crlfOnly) {
      // A bare LF is text: look on for one after a CR.
      while (
        index >= 0 && index < end && (index === start || buf[index - 1] !== CR)
      ) {
        index = buf.indexOf(LF, index + 1);
      }
    }
    if (index >= end) index = -1;
    // A CRLF terminator's CR does not count against the limit.
    const limit = this.limit;
    if (index >= 0) {
      const lineEnd = index > start && buf[index - 1] === CR
        ? index - 1
        : index;
      if (lineEnd - start > limit) return this.#tooLong();
      conn.start = index + 1;
      this.#scanned = 0;
      return decoder.decode(buf.subarray(start, lineEnd));
    }
    const buffered = end - start;
    if (buffered > limit + 1) return this.#tooLong();
    this.#scanned = buffered;
    if (conn.isEof && conn.readError === null) {
      if (buffered === 0) return null;
      conn.start = conn.end = 0;
      const lineEnd = buf[end - 1] === CR ? end - 1 : end;
      if (lineEnd - start > limit) return this.#tooLong();
      if (this.requireNewline) {
        const partial = buf.slice(start, end);
        throw new IncompleteReadError(undefined, partial, this.where);
      }
      return decoder.decode(buf.subarray(start, lineEnd));
    }
    this.checkUsable();
    // buffered <= limit + 1 here, so the buffer holds at most limit + 1 + one read.
    conn.startRead();
    return PENDING;
  }
  #tooLong(): never {
    this.conn.close();
    throw new LineTooLongError(this.limit, this.where);
  }
}

/** What one `send` takes: bytes, text, or a list of them sent as one. */
export type SendData =
  | Uint8Array
  | string
  | readonly (Uint8Array | string)[];

/** A list's small chunks are copied together into writes of this size. */
const GATHER_LIMIT = 64 * 1024;
/** A list's chunk this large is written as it is, uncopied. */
const GATHER_ALONE = 16 * 1024;

export class SendOp extends Op<void> {
  get op(): string {
    return "send";
  }
  /** The bytes being written: all of them, or a list's current chunk. */
  bytes: Uint8Array;
  waiter: Coroutine | null = null;
  /** @internal The pacer's iteration its write started in. */
  pacedIn = 0;
  #offset = 0;
  #isWriting = false;
  #isQueued = false;
  #finState = 0; // closeWrite only: 0 not sent, 1 in flight, 2 done
  #error: unknown = null;

  constructor(
    readonly conn: Connection,
    readonly data: SendData,
    options: OperationOptions | undefined,
    readonly isCloseWrite: boolean,
  ) {
    super(options, conn.sendTimeout);
    this.effect.external = conn.isExternal;
    this.bytes = typeof data === "string"
      ? encoder.encode(data)
      : data instanceof Uint8Array
      ? data
      : NOTHING; // a list: SendListOp sets its chunks in begin()
  }
  get where(): string {
    return `to ${this.conn.peer}`;
  }
  override begin(): void {
    this.#offset = 0;
    this.#error = null;
    this.#finState = 0;
  }
  /**
   * Moves `bytes` on to the next chunk, once these are written: true if
   * there was one. A single buffer has none (`SendListOp` overrides).
   */
  protected nextChunk(): boolean {
    return false;
  }
  poll(): void | typeof PENDING {
    const conn = this.conn;
    if (this.#error !== null) {
      const error = this.#error;
      this.#release();
      throw conn.ioError(this.op, error, this.where);
    }
    if (conn.isClosed) {
      this.#release();
      throw conn.closedError(this.op, this.where);
    }
    if (conn.writeError !== null) {
      this.#release();
      throw conn.ioError(this.op, conn.writeError, this.where);
    }
    if (conn.isWriteClosed && !this.isCloseWrite) {
      // After our closeWrite(): refused here, alike on every transport
      // (TCP's write would fail with EPIPE, a reset).
      this.#release();
      throw new ConnectionClosedError(this.op, this.where);
    }
    if (conn.writer !== this) {
      if (conn.writer !== null) {
        if (!this.#isQueued) {
          this.#isQueued = true;
          (conn.writeQueue ??= []).push(this);
        }
        return PENDING;
      }
      conn.writer = this;
    }
    if (this.#isWriting) return PENDING;
    if (this.#offset < this.bytes.length) {
      // A send that may end before it waits (a deadline, a signal) starts
      // writing in `park()` instead (see there). Here costs an echo message
      // ~115 instructions less (`deno task instructions echo:corio`).
      if (!this.effect.hasDeadline && this.effect.signal === undefined) {
        this.#write();
      }
      return PENDING;
    }
    if (this.isCloseWrite && this.#finState === 0) return PENDING;
    this.#release();
  }
  #write(): void {
    const conn = this.conn;
    this.#isWriting = true;
    conn.writing = this;
    conn.sent();
    // In flight from here, held back by the pacer or not (as a deferred
    // read is): a cancel or a timeout meanwhile closes the connection.
    if (conn.isPaced && !startWrite(this)) return;
    this.issueWrite();
  }
  /**
   * @internal Hands the bytes not yet written to the transport (the pacer
   * calls it for a write it held back).
   */
  issueWrite(): void {
    const conn = this.conn;
    if (conn.isClosed) {
      this.written(0); // closed while the pacer held it: nothing went out
      return;
    }
    const offset = this.#offset;
    let writing: Promise<number>;
    try {
      writing = conn.transport.write(
        offset === 0 ? this.bytes : this.bytes.subarray(offset),
      );
    } catch (error) {
      // A transport that throws instead of rejecting fails this send as a
      // rejection would: a held write starts inside another connection's
      // callback or a timer, which the throw would escape.
      writing = Promise.reject(error);
    }
    writing.then(conn.onWriteSettled, conn.onWriteSettled);
  }
  /** @internal The transport wrote `n` bytes of ours. */
  written(n: number): void {
    const conn = this.conn;
    conn.writing = null;
    this.#isWriting = false;
    this.#offset += n;
    if (conn.isPaced) writeEnded(this);
    // Go straight on with the rest: no scheduler round trip per chunk.
    if (this.#offset < this.bytes.length && !conn.isClosed) {
      this.#write();
      return;
    }
    if (!conn.isClosed && this.nextChunk()) {
      this.#offset = 0;
      this.#write();
      return;
    }
    conn.maybeSettle();
    this.wakeWaiter();
  }
  /** @internal The transport failed our write. */
  writeFailed(error: unknown): void {
    const conn = this.conn;
    conn.writing = null;
    this.#isWriting = false;
    if (conn.isPaced) writeEnded(this);
    if (!conn.isClosed) {
      conn.writeError = error;
      this.#error = error;
    }
    conn.maybeSettle();
    this.wakeWaiter();
  }
  /**
   * @internal Wakes the coroutine waiting in this send, and forgets it: a
   * waiter left in place would be woken again by this send's next event
   * (its write failing after a close), when it may wait on something else.
   */
  wakeWaiter(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.wake();
  }
  #closeWrite(): void {
    const conn = this.conn;
    conn.isWriteClosed = true;
    this.#finState = 1;
    this.#isWriting = true;
    conn.writing = this;
    if (conn.isPaced) writeBegun(this); // ended in written() or writeFailed()
    conn.transport.closeWrite().then(() => {
      this.#finState = 2;
      this.written(0);
    }, (error) => this.writeFailed(error));
  }
  /** Gives the writer slot to the next queued send. */
  #release(): void {
    const conn = this.conn;
    if (this.#isQueued) {
      const index = conn.writeQueue!.indexOf(this);
      if (index >= 0) conn.writeQueue!.splice(index, 1);
      this.#isQueued = false;
    }
    if (conn.writer !== this) return;
    conn.writer = null;
    const next = conn.writeQueue?.shift();
    if (next !== undefined) {
      next.#isQueued = false;
      conn.writer = next;
      next.wakeWaiter();
    }
  }
  park(co: Coroutine): boolean {
    const conn = this.conn;
    if (conn.isClosed) return true;
    const writer = conn.writer;
    if (writer === null) return true; // the slot came free since poll()
    if (writer === this && !this.#isWriting) {
      // The writes start here, not in poll(): the scheduler parks an
      // operation only once its deadline and signal allow it, so a send
      // whose deadline had passed or whose signal was aborted before it
      // began writes nothing, and leaves the connection open.
      if (this.#offset < this.bytes.length) this.#write();
      else if (this.isCloseWrite && this.#finState === 0) this.#closeWrite();
      else return true;
    }
    this.waiter = co;
    return false;
  }
  unpark(): void {
    this.waiter = null;
  }
  override cancelled(): void {
    // Bytes may be half written: the stream is broken for everyone after.
    // (A list's next chunk starts writing as the one before ends.)
    const isPartial = this.#offset > 0 && this.#offset < this.bytes.length;
    if (this.conn.writer === this && (this.#isWriting || isPartial)) {
      this.conn.close();
    }
    this.#release();
  }
  timedOut(): void {
    // Once bytes may be on their way, how many reached the peer is unknown:
    // close. A send that timed out still queued wrote nothing: keep it open.
    const error = new TimeoutError(
      this.op,
      this.effect.timeoutThatFired,
      this.where,
    );
    if (this.#isWriting || this.#offset > 0 || this.#finState !== 0) {
      this.conn.closeFor(error);
    }
    this.#release();
    throw error;
  }
}

/**
 * A list's chunks as the writes that send them, in order: chunks under
 * `GATHER_ALONE` are copied together into writes of up to `GATHER_LIMIT`
 * (a header and its payload in one segment; a reply of 30,000 small chunks
 * in 6 writes, not 30,000), larger ones go as they are, uncopied. Empty
 * chunks are dropped.
 */
function gather(data: readonly (Uint8Array | string)[]): Uint8Array[] {
  const writes: Uint8Array[] = [];
  let group: Uint8Array[] = [];
  let grouped = 0;
  const flush = () => {
    if (group.length === 1) writes.push(group[0]);
    else if (group.length > 1) {
      const all = new Uint8Array(grouped);
      let at = 0;
      for (const bytes of group) {
        all.set(bytes, at);
        at += bytes.length;
      }
      writes.push(all);
    }
    group = [];
    grouped = 0;
  };
  for (const chunk of data) {
    const bytes = typeof chunk === "string" ? encoder.encode(chunk) : chunk;
    if (bytes.length === 0) continue;
    if (bytes.length >= GATHER_ALONE) {
      flush();
      writes.push(bytes);
      continue;
    }
    if (grouped + bytes.length > GATHER_LIMIT) flush();
    group.push(bytes);
    grouped += bytes.length;
  }
  flush();
  return writes;
}

/**
 * `send(list)`: the chunks one after another, as one send (a subclass, so
 * that a send of one buffer, which every echo loop runs, checks for none).
 */
export class SendListOp extends SendOp {
  // The writes, gathered at each run's start (the list may have changed
  // since an earlier run of a reused operation).
  #chunks: Uint8Array[] = [];
  #index = 0;
  override begin(): void {
    super.begin();
    const chunks = this.#chunks = gather(
      this.data as readonly (Uint8Array | string)[],
    );
    this.#index = 0;
    this.bytes = chunks.length > 0 ? chunks[0] : NOTHING;
  }
  protected override nextChunk(): boolean {
    if (this.#index + 1 >= this.#chunks.length) return false;
    this.bytes = this.#chunks[++this.#index];
    return true;
  }
}

export class CloseWriteOp extends SendOp {
  override get op(): string {
    return "closeWrite";
  }
  constructor(conn: Connection, options?: OperationOptions) {
    super(conn, new Uint8Array(0), options, true);
  }
}
