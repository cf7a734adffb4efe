// The floor of the design, not a corio server: an async function* echo
// whose typed `yield*` operations are bare objects that return the socket
// promise mapped to an IteratorResult. No scheduler, no deadlines, no
// cancellation, no buffering: what any library pays for typed `yield*` in an
// `async function*` over Deno's promises, and nothing else.
//
// --paced: the same, with corio's read pacing (src/_read_pacer.ts) and
// nothing else, as in raw_paced_echo.ts: at 1000 connections (B2) it is the
// least a fair server of typed `async function*` handlers can cost, so
// corio against it is corio's own cost there.

import { acceptEach, flags } from "./_control.ts";
import {
  deferRead,
  isOverBudget,
  readCompleted,
} from "../../src/_read_pacer.ts";

const done = <T>(value: T) => ({ done: true as const, value });

/** One reusable operation per connection and direction: no allocation. */
class Read implements AsyncIterableIterator<never, number | null> {
  constructor(readonly conn: Deno.Conn, readonly buf: Uint8Array) {}
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

/** Read, with the pacer: past the budget, the read starts on a timer turn. */
class PacedRead extends Read {
  #resume = () => {};
  readonly #reader = { issueRead: () => this.#resume() };
  readonly #held = (resolve: () => void) => {
    this.#resume = resolve;
    deferRead(this.#reader);
  };
  readonly #read = () => this.conn.read(this.buf);
  override next(): Promise<IteratorResult<never, number | null>> {
    if (isOverBudget()) {
      return new Promise<void>(this.#held).then(this.#read).then(counted);
    }
    return this.conn.read(this.buf).then(counted);
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

const ReadOp = flags().paced ? PacedRead : Read;

async function* echo(conn: Deno.Conn): AsyncGenerator<never, void> {
  const buf = new Uint8Array(1024);
  const read = new ReadOp(conn, buf);
  const write = new Write(conn);
  for (;;) {
    const n = yield* read;
    if (n === null) return;
    for (let offset = 0; offset < n;) {
      write.bytes = buf.subarray(offset, n);
      offset += yield* write;
    }
  }
}

await acceptEach((conn) => {
  echo(conn).next().catch(() => {}).finally(() => conn.close());
});
