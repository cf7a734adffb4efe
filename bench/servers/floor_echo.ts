// The floor of the design, not a corio server: an async function* echo
// whose typed `yield*` operations are bare objects that return the socket
// promise mapped to an IteratorResult. No scheduler, no deadlines, no
// cancellation, no buffering: what any library pays for typed `yield*` in an
// `async function*` over Deno's promises, and nothing else.

import { acceptEach } from "./_control.ts";

const done = <T>(value: T) => ({ done: true as const, value });

/** One reusable operation per connection and direction: no allocation. */
class Read implements AsyncIterableIterator<never, number | null> {
  constructor(readonly conn: Deno.Conn, readonly buf: Uint8Array) {}
  [Symbol.asyncIterator]() {
    return this;
  }
  next() {
    return this.conn.read(this.buf).then(done);
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

async function* echo(conn: Deno.Conn): AsyncGenerator<never, void> {
  const buf = new Uint8Array(1024);
  const read = new Read(conn, buf);
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
