import assert from "node:assert/strict";
import {
  type Connection,
  ConnectionResetError,
  delay,
  serve,
  TimeoutError,
} from "@corio/corio";
import { encoder, readLine, until, writeAll } from "./_helpers.ts";

const CONNECTIONS = Number(Deno.env.get("R3_CONNECTIONS") ?? 10_000);
const CAP = 100;
const KINDS = ["normal", "reset", "silent", "throw", "hang"] as const;
type Kind = typeof KINDS[number];

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test(`R3: ${CONNECTIONS} connections with random resets, throws, timeouts and cancels are accounted exactly`, async () => {
  const seed = Number(Deno.env.get("R3_SEED") ?? Date.now() % 100_000);
  const next = random(seed);
  const kinds: Kind[] = Array.from({ length: CONNECTIONS }, () => {
    const r = next();
    return r < 0.5
      ? "normal"
      : r < 0.65
      ? "reset"
      : r < 0.8
      ? "silent"
      : r < 0.997
      ? "throw"
      : "hang";
  });
  const expected = Object.fromEntries(
    KINDS.map((k) => [k, kinds.filter((x) => x === k).length]),
  );
  const seen = { resets: 0, timeouts: 0, booms: 0, other: [] as unknown[] };
  let minActive = Infinity;
  let maxActive = -Infinity;
  let finallies = 0;
  const blob = new Uint8Array(256 * 1024);

  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    maxConnections: CAP,
    recvTimeout: 100,
    sendTimeout: 2000,
    onError(error) {
      if (error instanceof ConnectionResetError) seen.resets++;
      else if (error instanceof TimeoutError) seen.timeouts++;
      else if ((error as Error).message === "boom") seen.booms++;
      else seen.other.push(error);
    },
  }, async function* (conn: Connection) {
    try {
      maxActive = Math.max(maxActive, server.stats.active);
      yield* conn.send("hi\n");
      const line = yield* conn.recvLine();
      if (line === "throw") throw new Error("boom");
      if (line === "hang") {
        yield* conn.send("hanging\n");
        yield* delay(600_000); // cancelled by the shutdown
      }
      if (line === "spam") {
        yield* conn.send(blob); // never read: the client's close resets
        yield* conn.recvLine(); // Deno's close sends FIN, then RST
        yield* conn.send("anyone?\n"); // the RST makes this fail
        yield* conn.send("anyone?\n");
        return;
      }
      if (line !== null) yield* conn.send(line + "\n");
    } finally {
      finallies++;
    }
  });
  const sampler = setInterval(() => {
    minActive = Math.min(minActive, server.stats.active);
    maxActive = Math.max(maxActive, server.stats.active);
  }, 1);

  let index = 0;
  const hanging: Deno.Conn[] = [];
  await Promise.all(Array.from({ length: 200 }, async () => {
    while (index < kinds.length) {
      const kind = kinds[index++];
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.addr.port,
      });
      assert.equal(await readLine(conn), "hi");
      switch (kind) {
        case "normal":
          await writeAll(conn, encoder.encode("ping\n"));
          assert.equal(await readLine(conn), "ping");
          break;
        case "reset": { // close with unread bytes: the kernel sends RST
          await writeAll(conn, encoder.encode("spam\n"));
          const some = new Uint8Array(1);
          await conn.read(some); // the blob is arriving
          break;
        }
        case "silent":
          assert.equal(await readLine(conn), null); // closed at the recv timeout
          break;
        case "throw":
          await writeAll(conn, encoder.encode("throw\n"));
          assert.equal(await readLine(conn), null);
          break;
        case "hang":
          await writeAll(conn, encoder.encode("hang\n"));
          assert.equal(await readLine(conn), "hanging");
          hanging.push(conn);
          continue;
      }
      conn.close();
    }
  }));
  await until(
    () => server.stats.active === expected.hang,
    10_000,
    "all but the hanging handlers to end",
  );
  await server.shutdown();
  clearInterval(sampler);
  for (const conn of hanging) conn.close();
  const stats = server.stats;
  console.log(
    "R3:",
    JSON.stringify({
      seed,
      expected,
      seen: { ...seen, other: seen.other.length },
      stats,
      minActive,
      maxActive,
    }),
  );
  assert.deepEqual(seen.other, []);
  assert.equal(stats.active, 0);
  assert.ok(minActive >= 0, `active went to ${minActive}`);
  assert.ok(maxActive <= CAP, `active reached ${maxActive}`);
  assert.equal(stats.accepted, CONNECTIONS);
  assert.equal(
    stats.accepted,
    stats.refused + stats.completed + stats.failed + stats.cancelled +
      stats.evicted,
  );
  assert.equal(finallies, CONNECTIONS);
  assert.equal(stats.cancelled, expected.hang);
  assert.equal(seen.booms, expected.throw);
  assert.equal(stats.timeouts, expected.silent);
  assert.equal(seen.resets, expected.reset);
  assert.equal(stats.completed, expected.normal);
});
