/**
 * The JavaScript cost of one echo message, without a socket: a transport
 * whose reads return 64 bytes and whose writes complete at once, driven by
 * a raw `async function` loop and by corio's echo handler in both forms.
 * What is left of corio's gap to raw Deno in B1 beyond this is not in
 * corio's own code.
 *
 *     deno run bench/echo_js_bench.ts
 *
 * @module
 */

import { Connection, run } from "@corio/corio";

const addr = { transport: "tcp" as const, hostname: "fake", port: 1 };

/** Reads give 64 bytes until `limit`, then EOF; writes take everything. */
class InstantTransport {
  #reads = 0;
  constructor(readonly limit: number) {}
  read(_buffer: Uint8Array): Promise<number | null> {
    return Promise.resolve(this.#reads++ < this.limit ? 64 : null);
  }
  write(bytes: Uint8Array): Promise<number> {
    return Promise.resolve(bytes.length);
  }
  closeWrite(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {}
  localAddr = addr;
  remoteAddr = addr;
}

const MESSAGES = 300_000;
const borrow = { borrow: true };

async function rawEcho(transport: InstantTransport): Promise<void> {
  const buf = new Uint8Array(1024);
  for (;;) {
    const n = await transport.read(buf);
    if (n === null) break;
    await transport.write(buf.subarray(0, n));
  }
}

async function* asyncEcho(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
    yield* conn.send(chunk);
  }
}

function* syncEcho(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
    yield* conn.send(chunk);
  }
}

async function nsPerMessage(body: () => Promise<void>): Promise<number> {
  const started = performance.now();
  await body();
  return (performance.now() - started) * 1e6 / MESSAGES;
}

const rows: Record<string, number[]> = {
  "raw async function": [],
  "corio async function*": [],
  "corio function*": [],
};
for (let round = 0; round < 5; round++) {
  rows["raw async function"].push(
    await nsPerMessage(() => rawEcho(new InstantTransport(MESSAGES))),
  );
  rows["corio async function*"].push(
    await nsPerMessage(() =>
      run(asyncEcho(new Connection(new InstantTransport(MESSAGES))))
    ),
  );
  rows["corio function*"].push(
    await nsPerMessage(() =>
      run(syncEcho(new Connection(new InstantTransport(MESSAGES))))
    ),
  );
}
console.log(`ns per echo message, best of 5 x ${MESSAGES}:`);
for (const [name, values] of Object.entries(rows)) {
  console.log(`  ${name.padEnd(24)} ${Math.min(...values).toFixed(0)}`);
}
