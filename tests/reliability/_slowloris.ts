// R1, shared by the CI test and the soak: a Node attacker trickles bytes
// on many connections from many source addresses while legitimate clients
// (from 127.0.0.1) ask for a line echo. Returns what the clients saw.

import { type Connection, serve, type ServerStats } from "@corio/corio";
import {
  encoder,
  fixture,
  LineReader,
  percentile,
  readLine,
  until,
  writeAll,
} from "./_helpers.ts";

export interface SlowlorisOptions {
  connections: number;
  addresses: number;
  cap: number;
  /** maxConnectionsPerPeer; Infinity turns the defence off. */
  perPeer: number;
  /** evictAfter; Infinity turns the defence off. */
  evictAfter: number;
  /** Whole-line deadline of the handler's recvLine. */
  lineTimeout: number;
  /** Legitimate requests, `streams` at a time. */
  requests: number;
  streams: number;
  /** A request not answered within this many ms counts as not served. */
  patience: number;
  /** Pause between one stream's requests, in ms, so they span the attack. */
  pace: number;
}

export interface SlowlorisResult {
  served: number;
  requests: number;
  p50: number;
  p99: number;
  attacker: Record<string, number>;
  stats: ServerStats;
}

// One request per connection: the reply, then the server closes.
async function* lineEcho(conn: Connection) {
  const line = yield* conn.recvLine();
  if (line !== null) yield* conn.send(line + "\n");
}

// Legitimate connects, settled and closed once the run ends (some outlive
// their request's patience, stuck in SYN retransmits or the backlog).
let connects: Promise<Deno.TcpConn>[] = [];

export async function runSlowloris(
  o: SlowlorisOptions,
): Promise<SlowlorisResult> {
  connects = [];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    maxConnections: o.cap,
    maxConnectionsPerPeer: o.perPeer,
    evictAfter: o.evictAfter,
    recvTimeout: o.lineTimeout,
    sendTimeout: 1000,
    onError() {},
  }, lineEcho);
  const attacker = new Deno.Command("node", {
    args: [
      fixture("slowloris.mjs"),
      String(server.addr.port),
      String(o.connections),
      String(o.addresses),
      "600000",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = new LineReader(attacker.stdout);
  try {
    await out.waitFor(/^open \d+/, 30_000);
    // The attack holds the server full before the first legitimate client.
    const reachable = Math.min(o.cap, o.addresses * o.perPeer);
    await until(
      () => server.stats.active >= reachable * 0.9,
      10_000,
      "the attack taking its slots",
    );
    const latencies: number[] = [];
    let next = 0;
    await Promise.all(Array.from({ length: o.streams }, async () => {
      while (next < o.requests) {
        const i = next++;
        const latency = await request(
          server.addr.port,
          `request ${i}`,
          o.patience,
        );
        if (latency !== null) latencies.push(latency);
        await new Promise((resolve) => setTimeout(resolve, o.pace));
      }
    }));
    attacker.kill("SIGTERM");
    await out.done;
    await attacker.status;
    const attackerStats = JSON.parse(out.lines.at(-1) ?? "{}");
    return {
      served: latencies.length,
      requests: o.requests,
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      attacker: attackerStats,
      stats: { ...server.stats },
    };
  } finally {
    try {
      attacker.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await attacker.status;
    await server.shutdown(); // refuses what is still connecting
    for (const settled of await Promise.allSettled(connects)) {
      if (settled.status === "fulfilled") settled.value.close();
    }
  }
}

/** One legitimate request: its latency in ms, or null if not served in time. */
async function request(
  port: number,
  text: string,
  patience: number,
): Promise<number | null> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<null>((resolve) =>
    timer = setTimeout(() => resolve(null), patience)
  );
  // A connect stuck in SYN retransmits cannot be cancelled: leave it to
  // finish (or fail) on its own and close it then.
  const connecting = Deno.connect({ hostname: "127.0.0.1", port });
  connects.push(connecting);
  try {
    const conn = await Promise.race([connecting, expired]);
    if (conn === null) return null;
    const exchange = (async () => {
      await writeAll(conn, encoder.encode(text + "\n"));
      const reply = await readLine(conn);
      const latency = performance.now() - started;
      await readLine(conn); // the server's close
      return reply === text ? latency : null;
    })().catch(() => null);
    return await Promise.race([exchange, expired]);
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}
