import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "../_property.ts";
import { type Connection, IncompleteReadError, run, spawn } from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
import { serveOn } from "../../src/server.ts";
import { MemoryListener } from "../../src/testing/memory_server.ts";

const decoder = new TextDecoder();
const RUNS = Number(Deno.env.get("R9_RUNS") ?? 10_000);

/** Bytes, rich in LF and CR, and the cut points that chunk them. */
const chunkedBytes = fc.tuple(
  fc.array(
    fc.oneof(
      fc.constant(10),
      fc.constant(13),
      fc.integer({ min: 0, max: 255 }),
    ),
    { maxLength: 400, size: "max" },
  ),
  fc.array(fc.nat({ max: 400 }), { maxLength: 20, size: "max" }),
  fc.integer({ min: 1, max: 64 }),
).map(([bytes, cuts, capacity]) => {
  const data = new Uint8Array(bytes);
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((
    a,
    b,
  ) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const point of [...points, data.length]) {
    if (point > from) chunks.push(data.subarray(from, point));
    from = Math.max(from, point);
  }
  return { data, chunks, capacity };
});

/** What recvLine must return: split on LF, one CR before it dropped. */
function expectedLines(data: Uint8Array): string[] {
  const lines: string[] = [];
  let start = 0;
  for (let i = 0; i <= data.length; i++) {
    if (i < data.length && data[i] !== 10) continue;
    if (i === data.length && start === data.length) break;
    const end = i > start && data[i - 1] === 13 ? i - 1 : i;
    lines.push(decoder.decode(data.subarray(start, end)));
    start = i + 1;
  }
  return lines;
}

function* sendAll(conn: Connection, chunks: Uint8Array[]) {
  for (const chunk of chunks) yield* conn.send(chunk);
  yield* conn.closeWrite();
}

Deno.test(`R9: any byte string in any chunking comes out of recvLine as the same lines (${Math.round(RUNS * 0.4)} runs)`, async () => {
  await fc.assert(
    fc.asyncProperty(chunkedBytes, async ({ data, chunks, capacity }) => {
      const [a, b] = memoryConnPair({ capacity, maxLineLength: 1024 });
      try {
        const lines = await run((function* () {
          const sender = yield* spawn(sendAll(a, chunks));
          const out: string[] = [];
          for (let line; (line = yield* b.recvLine()) !== null;) out.push(line);
          yield* sender.join();
          return out;
        })());
        assert.deepEqual(lines, expectedLines(data));
      } finally {
        a.close();
        b.close();
      }
    }),
    runs(Math.round(RUNS * 0.4)),
  );
});

Deno.test(`R9: any byte string in any chunking comes out of recvExact in the asked sizes (${Math.round(RUNS * 0.4)} runs)`, async () => {
  await fc.assert(
    fc.asyncProperty(
      chunkedBytes,
      fc.array(fc.nat({ max: 100 }), { maxLength: 30, size: "max" }),
      async ({ data, chunks, capacity }, sizes) => {
        const [a, b] = memoryConnPair({ capacity });
        try {
          const got = await run((function* () {
            const sender = yield* spawn(sendAll(a, chunks));
            const parts: Uint8Array[] = [];
            let partial: Uint8Array | null = null;
            try {
              for (const n of [...sizes, data.length + 1]) {
                parts.push(yield* b.recvExact(n));
              }
            } catch (error) {
              if (!(error instanceof IncompleteReadError)) throw error;
              partial = error.partial;
            }
            yield* sender.join();
            return { parts, partial };
          })());
          // The sizes asked, in order, then the rest as the partial at EOF.
          let offset = 0;
          for (const part of got.parts) {
            assert.deepEqual(part, data.subarray(offset, offset + part.length));
            offset += part.length;
          }
          assert.ok(got.partial !== null);
          assert.deepEqual(got.partial, data.subarray(offset));
        } finally {
          a.close();
          b.close();
        }
      },
    ),
    runs(Math.round(RUNS * 0.4)),
  );
});

type Command =
  | { kind: "connect"; peer: number }
  | { kind: "line"; client: number }
  | { kind: "close"; client: number }
  | { kind: "tick"; ms: number };

const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("connect" as const),
      peer: fc.nat({ max: 2 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("line" as const),
      client: fc.nat({ max: 40 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("close" as const),
      client: fc.nat({ max: 40 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("tick" as const),
      ms: fc.integer({ min: 1, max: 40 }),
    }),
  },
);

/** Lets every promise reaction run: memory connections settle in microtasks. */
async function turn(): Promise<void> {
  for (let i = 0; i < 200; i++) await null;
}

Deno.test(`R9: random interleavings of connect, line, reset, timeout and eviction keep the cap and the books (${Math.round(RUNS * 0.2)} runs)`, async () => {
  const CAP = 4;
  const PER_PEER = 3;
  let evictions = 0;
  let peerRefusals = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(command, { minLength: 1, maxLength: 40, size: "max" }),
      async (commands) => {
        const clock = new VirtualClock({ autojump: false });
        const listener = new MemoryListener();
        const running = new Map<string, number>();
        let total = 0;
        let started = 0;
        let finallies = 0;
        let isShuttingDown = false;
        let silentEnds = 0; // ended before shutdown, without a line: evictable
        const violations: string[] = [];
        const server = serveOn(listener, {
          maxConnections: CAP,
          maxConnectionsPerPeer: PER_PEER,
          evictAfter: 20,
          recvTimeout: 100,
          clock,
          onError() {},
        }, function* (conn, info) {
          const peer = info.remoteAddr.hostname;
          started++;
          total++;
          running.set(peer, (running.get(peer) ?? 0) + 1);
          if (total > CAP) {
            violations.push(`${total} handlers running, cap ${CAP}`);
          }
          if (running.get(peer)! > PER_PEER) {
            violations.push(`${running.get(peer)} from ${peer}`);
          }
          let hasLine = false;
          let isEnded = false;
          try {
            for (let line; (line = yield* conn.recvLine()) !== null;) {
              hasLine = true;
              yield* conn.send(line + "\n");
            }
            isEnded = true;
          } finally {
            finallies++;
            total--;
            running.set(peer, running.get(peer)! - 1);
            if (!hasLine && !isEnded && !isShuttingDown) silentEnds++;
          }
        });
        const clients: Connection[] = [];
        try {
          for (const step of commands) {
            if (step.kind === "connect") {
              const [serverEnd, clientEnd] = memoryConnPair();
              const t = serverEnd.transport;
              listener.push({
                read: (buffer) => t.read(buffer),
                write: (bytes) => t.write(bytes),
                closeWrite: () => t.closeWrite(),
                close: () => t.close(),
                localAddr: t.localAddr,
                remoteAddr: {
                  transport: "tcp",
                  hostname: `10.0.0.${step.peer}`,
                  port: clients.length + 1,
                },
              });
              clients.push(clientEnd);
            } else if (step.kind === "line" && clients.length > 0) {
              const client = clients[step.client % clients.length];
              if (!client.isClosed) {
                client.transport.write(new TextEncoder().encode("x\n")).catch(
                  () => {},
                );
              }
            } else if (step.kind === "close" && clients.length > 0) {
              clients[step.client % clients.length].close();
            } else if (step.kind === "tick") {
              clock.advance(step.ms);
            }
            await turn();
            const stats = server.stats;
            if (stats.active < 0 || stats.active > CAP) {
              violations.push(
                `active ${stats.active}`,
              );
            }
            if (stats.active !== total) {
              violations.push(
                `active ${stats.active}, running ${total}`,
              );
            }
          }
          isShuttingDown = true;
          await server.shutdown();
          const s = server.stats;
          assert.deepEqual(violations, []);
          assert.equal(s.active, 0);
          assert.equal(finallies, started);
          assert.equal(
            s.accepted,
            s.refused + s.completed + s.failed + s.cancelled + s.evicted,
          );
          assert.ok(
            s.evicted <= silentEnds,
            "only silent connections are evicted",
          );
          evictions += s.evicted;
          peerRefusals += s.peerLimited;
        } finally {
          for (const client of clients) client.close();
          if (!isShuttingDown) await server.shutdown();
        }
      },
    ),
    runs(Math.round(RUNS * 0.2)),
  );
  console.log("R9 server:", JSON.stringify({ evictions, peerRefusals }));
  assert.ok(
    evictions > 0 && peerRefusals > 0,
    "the runs reached the eviction and the per-peer cap",
  );
});
