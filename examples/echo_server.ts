/**
 * Seed 002's echo server: every connection is a coroutine that echoes what
 * it receives, with 3 s receive and send timeouts and at most 100
 * connections at once (the rest wait in the kernel backlog).
 *
 *     deno run --allow-net examples/echo_server.ts [--port 9999] [--hostname 0.0.0.0]
 *
 * Prints `listening on HOST:PORT` first; SIGINT/SIGTERM shut it down with
 * a 1 s grace.
 *
 * @module
 */

import { type Connection, serve } from "@corio/corio";
import { parseFlags } from "./_flags.ts";

/**
 * Echoes until the peer closes or is silent for 3 s. Like the seed's C
 * version it reuses one buffer: a borrowed chunk is valid until the next
 * recv, and it has been sent by then.
 */
export async function* echo(conn: Connection) {
  const borrow = { borrow: true };
  for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
    yield* conn.send(chunk);
  }
}

if (import.meta.main) {
  const flags = parseFlags({
    port: 9999,
    hostname: "0.0.0.0",
  });
  const stop = new AbortController();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const onSignal = () => stop.abort();
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);

  const server = serve({
    port: flags.port,
    hostname: flags.hostname,
    maxConnections: 100,
    recvTimeout: 3000,
    sendTimeout: 3000,
    signal: stop.signal,
    shutdownGrace: 1000,
  }, echo);
  console.log(`listening on ${server.addr.hostname}:${server.addr.port}`);
  await server.finished;
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  console.log(`stopped: ${JSON.stringify(server.stats)}`);
}
