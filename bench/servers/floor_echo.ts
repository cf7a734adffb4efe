// The floor of the design, not a corio server: an async function* echo
// whose typed `yield*` operations are bare objects that return the socket
// promise mapped to an IteratorResult. No scheduler, no deadlines, no
// cancellation, no buffering: what any library pays for typed `yield*` in an
// `async function*` over Deno's promises, and nothing else.
//
// --paced: the same, with corio's read pacing (src/_io_pacer.ts) and
// nothing else, as in raw_paced_echo.ts: at 1000 connections (B2) it is the
// least a fair server of typed `async function*` handlers can cost, so
// corio against it is corio's own cost there.
//
// --sync: the floor of `function*` handlers instead: a bare generator whose
// plain `yield`s name a read or a write, driven by a loop that performs each
// on the socket and resumes it with the result. No promise of its own, no
// async generator: the least a scheduler of `function*` handlers can cost,
// so corio's `function*` handlers against it are corio's own cost.
//
// --pad BYTES (with --sync): each connection also holds an array of about
// that many bytes of JS heap, and nothing else. B8 runs it to show how much
// heap per connection its "<= 1.05x raw Deno" target leaves a library.
//
// --cancellable: each wait is a promise of the server's own, settled by the
// socket's. A wait that a deadline or a cancel can end while the read stays
// in flight (no lost bytes) needs one: the generator awaits it, and only
// its holder can settle it early. Nothing here ends a wait early; what it
// measures is what that promise costs, the least a library with timeouts
// and cancellation pays for each wait of an `async function*` handler.
//
// Every form reads with raw_deno_echo.ts's buffer policy (1 KiB, doubled
// when a read fills it, up to 64 KiB), as corio does: with a fixed 1 KiB
// buffer a pipelined stream (B11) takes four reads where they take one.

import {
  acceptEach,
  flags,
  INITIAL_READ_SIZE,
  MAX_READ_SIZE,
} from "./_control.ts";
import { type Io, syncEcho } from "./_floor_sync.ts";
import {
  deferRead,
  isOverBudget,
  readCompleted,
  readIssued,
} from "../../src/_io_pacer.ts";

const done = <T>(value: T) => ({ done: true as const, value });

/** One reusable operation per connection and direction: no allocation. */
class Read implements AsyncIterableIterator<never, number | null> {
  constructor(readonly conn: Deno.Conn, public buf: Uint8Array) {}
  [Symbol.asyncIterator]() {
    return this;
  }
  next(): Promise<IteratorResult<never, number | null>> {
    return this.conn.read(this.buf).then(done);
  }
}

const counted = (n: number | null) => {
  readCompleted();
  return { done: true as const, value: n };
};
const countedFailure = (error: unknown): never => {
  readCompleted();
  throw error;
};

/** Read, with the pacer: past the budget, the read starts on a timer turn. */
class PacedRead extends Read {
  #resume = () => {};
  readonly #reader = { issueRead: () => this.#resume() };
  readonly #held = (resolve: () => void) => {
    this.#resume = resolve;
    deferRead(this.#reader);
  };
  readonly #read = () => {
    readIssued();
    return this.conn.read(this.buf);
  };
  override next(): Promise<IteratorResult<never, number | null>> {
    if (isOverBudget()) {
      return new Promise<void>(this.#held).then(this.#read).then(
        counted,
        countedFailure,
      );
    }
    return this.#read().then(counted, countedFailure);
  }
}

class Write implements AsyncIterableIterator<never, number> {
  bytes = new Uint8Array(0);
  constructor(readonly conn: Deno.Conn) {}
  [Symbol.asyncIterator]() {
    return this;
  }
  next() {
    return this.conn.write(this.bytes).then(done);
  }
}

/** A wait settled through a promise of its own (see --cancellable). */
abstract class Held<T> implements AsyncIterableIterator<never, T> {
  #resolve: (r: IteratorResult<never, T>) => void = () => {};
  #reject: (error: unknown) => void = () => {};
  readonly #hold = (
    resolve: (r: IteratorResult<never, T>) => void,
    reject: (error: unknown) => void,
  ) => {
    this.#resolve = resolve;
    this.#reject = reject;
  };
  protected readonly onDone = (value: T) => {
    this.#resolve({ done: true, value });
  };
  protected readonly onError = (error: unknown) => this.#reject(error);
  [Symbol.asyncIterator]() {
    return this;
  }
  next(): Promise<IteratorResult<never, T>> {
    const held = new Promise(this.#hold);
    this.start();
    return held;
  }
  protected abstract start(): void;
}

class HeldRead extends Held<number | null> {
  constructor(
    readonly conn: Deno.Conn,
    public buf: Uint8Array,
    readonly isPaced: boolean,
  ) {
    super();
  }
  readonly #onRead = (n: number | null) => {
    if (this.isPaced) readCompleted();
    this.onDone(n);
  };
  readonly #onReadFailed = (error: unknown) => {
    if (this.isPaced) readCompleted();
    this.onError(error);
  };
  protected start(): void {
    if (this.isPaced && isOverBudget()) deferRead(this);
    else this.issueRead();
  }
  issueRead(): void {
    if (this.isPaced) readIssued();
    this.conn.read(this.buf).then(this.#onRead, this.#onReadFailed);
  }
}

class HeldWrite extends Held<number> {
  bytes = new Uint8Array(0);
  constructor(readonly conn: Deno.Conn) {
    super();
  }
  protected start(): void {
    this.conn.write(this.bytes).then(this.onDone, this.onError);
  }
}

// An array of n elements is 48 + 8n bytes (JSArray and its store).
const padBytes = Number(flags().pad);
const padLength = padBytes > 48 ? Math.round((padBytes - 48) / 8) : 0;

/** Drives one `syncEcho`: performs what it yields, resumes it with that. */
class SyncDriver {
  readonly #gen: Generator<Io, void, number | null>;
  readonly pad = padLength > 0 ? new Array(padLength).fill(0) : null;
  constructor(readonly conn: Deno.Conn) {
    this.#gen = syncEcho(new Uint8Array(INITIAL_READ_SIZE));
  }
  readonly step = (result: number | null): void => {
    const r = this.#gen.next(result);
    if (r.done) return this.close();
    const io = r.value;
    (io.isRead ? this.conn.read(io.bytes) : this.conn.write(io.bytes))
      .then(this.step, this.close);
  };
  readonly close = (): void => {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  };
}

const { paced, cancellable, sync } = flags();

async function* echo(conn: Deno.Conn): AsyncGenerator<never, void> {
  let buf = new Uint8Array(INITIAL_READ_SIZE);
  const read = cancellable
    ? new HeldRead(conn, buf, paced === true)
    : paced
    ? new PacedRead(conn, buf)
    : new Read(conn, buf);
  const write = cancellable ? new HeldWrite(conn) : new Write(conn);
  for (;;) {
    const n = yield* read;
    if (n === null) return;
    for (let offset = 0; offset < n;) {
      write.bytes = buf.subarray(offset, n);
      offset += yield* write;
    }
    if (n === buf.length && buf.length < MAX_READ_SIZE) {
      read.buf = buf = new Uint8Array(buf.length * 2);
    }
  }
}

await acceptEach((conn) => {
  if (sync) return new SyncDriver(conn).step(null);
  echo(conn).next().catch(() => {}).finally(() => conn.close());
});
