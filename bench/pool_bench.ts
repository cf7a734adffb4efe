/**
 * Pool vs no pool: requests/s of client coroutines against
 * `examples/echo_server.ts` (a separate process), sharing a pool of 10
 * connections, versus opening one connection per request (connect, send,
 * receive, close). Both run side by side in one run, alternating rounds;
 * the median of each is reported, with the ratio.
 *
 *     deno run --allow-net --allow-run --allow-read bench/pool_bench.ts \
 *       [--clients 50] [--requests 5000] [--pool 10] [--rounds 3] [--json]
 *
 * `--requests` is the total per round and mode.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { connect, Pool, run, spawn } from "@corio/corio";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    clients: { type: "string", default: "50" },
    requests: { type: "string", default: "5000" },
    pool: { type: "string", default: "10" },
    rounds: { type: "string", default: "3" },
    json: { type: "boolean", default: false },
  },
});
const clients = Number(values.clients);
const requests = Number(values.requests);
const poolSize = Number(values.pool);
const rounds = Number(values.rounds);
const perClient = Math.ceil(requests / clients);

async function startServer() {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      new URL("../examples/echo_server.ts", import.meta.url).pathname,
      "--port",
      "0",
      "--hostname",
      "127.0.0.1",
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await lines.read()).value ?? "";
  const port = Number(/listening on .+:(\d+)/.exec(first)?.[1]);
  if (!port) throw new Error(`echo_server.ts did not start: ${first}`);
  return {
    port,
    async stop() {
      child.kill("SIGTERM");
      while (!(await lines.read()).done);
      await child.status;
    },
  };
}

function* request(conn: import("@corio/corio").Connection, text: string) {
  yield* conn.send(text + "\n");
  const reply = yield* conn.recvLine({ timeout: 5000 });
  if (reply !== text) throw new Error(`bad echo: ${reply}`);
}

/** Requests/s with `clients` coroutines over a pool of `poolSize`. */
async function pooled(port: number): Promise<number> {
  await using pool = new Pool({
    connect: { port, timeout: 5000 },
    max: poolSize,
  });
  const started = performance.now();
  await run((function* () {
    const tasks = [];
    for (let id = 0; id < clients; id++) {
      tasks.push(
        yield* spawn((function* () {
          for (let i = 0; i < perClient; i++) {
            using lease = yield* pool.acquire({ timeout: 5000 });
            yield* request(lease.conn, `client ${id} request ${i}`);
          }
        })()),
      );
    }
    for (const task of tasks) yield* task.join();
  })());
  return (clients * perClient) / (performance.now() - started) * 1000;
}

/** Requests/s with `clients` coroutines, each request on a new connection. */
async function unpooled(port: number): Promise<number> {
  const started = performance.now();
  await run((function* () {
    const tasks = [];
    for (let id = 0; id < clients; id++) {
      tasks.push(
        yield* spawn((function* () {
          for (let i = 0; i < perClient; i++) {
            const conn = yield* connect({ port, timeout: 5000 });
            yield* request(conn, `client ${id} request ${i}`);
            conn.close();
          }
        })()),
      );
    }
    for (const task of tasks) yield* task.join();
  })());
  return (clients * perClient) / (performance.now() - started) * 1000;
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const server = await startServer();
const results = { pool: [] as number[], perRequest: [] as number[] };
try {
  await pooled(server.port); // warm-up: JIT and the server
  await unpooled(server.port);
  for (let round = 0; round < rounds; round++) {
    results.pool.push(await pooled(server.port));
    results.perRequest.push(await unpooled(server.port));
  }
} finally {
  await server.stop();
}
const pool = median(results.pool);
const perRequest = median(results.perRequest);
if (values.json) {
  console.log(JSON.stringify({ clients, requests, poolSize, rounds, results }));
} else {
  console.log(
    `${clients} clients, ${
      clients * perClient
    } requests per round, median of ${rounds} rounds`,
  );
  console.log(
    `pool of ${poolSize} connections:     ${
      Math.round(pool).toLocaleString("en")
    } requests/s`,
  );
  console.log(
    `one connection per request: ${
      Math.round(perRequest).toLocaleString("en")
    } requests/s`,
  );
  console.log(`ratio: ${(pool / perRequest).toFixed(1)}x`);
}
