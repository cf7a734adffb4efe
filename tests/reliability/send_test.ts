import assert from "node:assert/strict";
import { type Connection, run, serve, spawn, TimeoutError } from "@corio/corio";
import { tcpPairs } from "../_pairs.ts";
import { drain, until } from "./_helpers.ts";

Deno.test("R5: a peer that never reads: sends are bounded to one chunk in flight and the connection closes at the send deadline", async () => {
  const CHUNK = 64 * 1024;
  const TOTAL = 100 * 1024 * 1024;
  const GRACE = 1000;
  const result = { sent: 0, deadline: 0, closedAt: 0, error: "" as string };
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, onError() {} },
    async function* (conn: Connection) {
      const chunk = new Uint8Array(CHUNK).fill(7);
      result.deadline = performance.now() + GRACE;
      try {
        while (result.sent < TOTAL) {
          // One send at a time: what corio holds is this chunk and no more.
          yield* conn.send(chunk, { deadline: result.deadline });
          result.sent += CHUNK;
        }
      } catch (error) {
        result.closedAt = performance.now();
        result.error = (error as Error).name;
        assert.ok(error instanceof TimeoutError);
        assert.equal(conn.isClosed, true);
      }
    },
  );
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await until(() => result.closedAt > 0, 10_000, "the send deadline");
  // Now read what reached us: every byte send() reported done, and at most
  // the one chunk that was in flight besides.
  const received = await drain(client);
  client.close();
  const late = result.closedAt - result.deadline;
  console.log("R5:", JSON.stringify({ ...result, received, late }));
  assert.equal(result.error, "TimeoutError");
  assert.ok(result.sent < TOTAL, "the peer's buffers cannot hold 100 MB");
  assert.ok(late >= 0 && late <= 100, `closed ${late} ms after the deadline`);
  assert.ok(
    received >= result.sent && received <= result.sent + CHUNK,
    `received ${received}, sent ${result.sent}`,
  );
});

/** A frame: writer (1 byte), sequence (4), length (4), then a pattern. */
function frame(writer: number, seq: number, length: number): Uint8Array {
  const bytes = new Uint8Array(9 + length);
  const view = new DataView(bytes.buffer);
  bytes[0] = writer;
  view.setUint32(1, seq);
  view.setUint32(5, length);
  bytes.fill((writer * 31 + seq) & 255, 9);
  return bytes;
}

const PAIRS = Number(Deno.env.get("R6_PAIRS") ?? 10_000);

Deno.test(`R6: two coroutines sending ${PAIRS} pairs of 1-64 KiB frames on one connection never interleave`, async () => {
  const { a, b, dispose } = await tcpPairs.make();
  const sizes = Array.from(
    { length: 2 * PAIRS },
    () => 1 + Math.floor(Math.random() * 64 * 1024),
  );
  const bad = await run((async function* () {
    const writer = function* (id: number) {
      for (let seq = 0; seq < PAIRS; seq++) {
        yield* a.send(frame(id, seq, sizes[2 * seq + id]));
      }
    };
    const writers = [yield* spawn(writer(0)), yield* spawn(writer(1))];
    const nextSeq = [0, 0];
    let interleavings = 0;
    for (let i = 0; i < 2 * PAIRS; i++) {
      const header = yield* b.recvExact(9);
      const view = new DataView(header.buffer, header.byteOffset);
      const writer = header[0];
      const seq = view.getUint32(1);
      const length = view.getUint32(5);
      if (
        writer > 1 || seq !== nextSeq[writer] ||
        length !== sizes[2 * seq + writer]
      ) {
        interleavings++;
        break; // the stream is out of step: nothing after can be trusted
      }
      const payload = yield* b.recvExact(length);
      const expected = (writer * 31 + seq) & 255;
      if (payload.some((byte) => byte !== expected)) interleavings++;
      nextSeq[writer]++;
    }
    for (const task of writers) yield* task.join();
    return { interleavings, frames: nextSeq[0] + nextSeq[1] };
  })());
  await dispose();
  console.log("R6:", JSON.stringify(bad));
  assert.deepEqual(bad, { interleavings: 0, frames: 2 * PAIRS });
});
