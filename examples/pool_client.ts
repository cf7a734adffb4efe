/**
 * Many client coroutines sharing a pool of N connections to
 * `echo_server.ts` (seed 001's `co::pool`): each client borrows a
 * connection per request with `using lease = yield* pool.acquire()`, sends
 * a line, reads the echo, and gives the connection back.
 *
 *     deno run --allow-net examples/pool_client.ts [--host 127.0.0.1] [--port 9999] \
 *       [--pool 10] [--clients 100] [--requests 100]
 *
 * `--requests` is per client. Prints requests/s and the pool's stats.
 *
 * @module
 */

import { Pool, type PoolStats, run, spawn } from "@corio/corio";
import { parseFlags, SERVER_PORT_RANGE } from "./_flags.ts";

/** What the load is. */
export interface PoolClientOptions {
  hostname: string;
  port: number;
  pool: number;
  clients: number;
  requests: number;
}

/** The result: how many requests, how long, and the pool's stats. */
export interface PoolClientResult {
  requests: number;
  ms: number;
  stats: PoolStats;
}

/** One client: `requests` request/response pairs, each on a borrowed connection. */
function* client(pool: Pool, id: number, requests: number) {
  for (let i = 0; i < requests; i++) {
    using lease = yield* pool.acquire({ timeout: 5000 });
    const request = `client ${id} request ${i}`;
    try {
      yield* lease.conn.send(request + "\n");
      const reply = yield* lease.conn.recvLine({ timeout: 5000 });
      if (reply !== request) throw new Error(`bad echo: ${reply}`);
    } catch (error) {
      lease.discard(); // the reply may still be on its way: never reuse
      throw error;
    }
  }
  return requests;
}

/** Runs `clients` coroutines over one pool and measures them. */
export async function poolClient(
  options: PoolClientOptions,
): Promise<PoolClientResult> {
  await using pool = new Pool({
    connect: { hostname: options.hostname, port: options.port, timeout: 5000 },
    max: options.pool,
  });
  const started = performance.now();
  const requests = await run((function* () {
    const tasks = [];
    for (let id = 0; id < options.clients; id++) {
      tasks.push(yield* spawn(client(pool, id, options.requests)));
    }
    let done = 0;
    for (const task of tasks) done += yield* task.join();
    return done;
  })());
  const ms = performance.now() - started;
  return { requests, ms, stats: pool.stats };
}

if (import.meta.main) {
  const flags = parseFlags({
    host: "127.0.0.1",
    port: 9999,
    pool: 10,
    clients: 100,
    requests: 100,
  }, {
    port: SERVER_PORT_RANGE,
    pool: { integer: true, min: 1 },
    clients: { integer: true, min: 0 },
    requests: { integer: true, min: 0 },
  }, {
    about: `Seed 001's co::pool: many client coroutines sharing a pool of
connections to echo_server.ts; each borrows one per request, sends a line,
checks the echo and gives it back.

  --host ADDR     the server's address
  --port N        the server's port
  --pool N        connections in the pool
  --clients N     client coroutines
  --requests N    requests per client

Prints requests/s and the pool's stats; exits 1 if a request failed.`,
  });
  const options = {
    hostname: flags.host,
    port: flags.port,
    pool: flags.pool,
    clients: flags.clients,
    requests: flags.requests,
  };
  try {
    const { requests, ms, stats } = await poolClient(options);
    console.log(
      `${requests} requests from ${options.clients} clients over a pool of ${options.pool} connections in ${
        ms.toFixed(0)
      } ms: ${Math.round(requests / ms * 1000)} requests/s`,
    );
    console.log(`pool stats: ${JSON.stringify(stats)}`);
  } catch (error) {
    console.error(`failed: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
