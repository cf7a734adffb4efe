/**
 * Seed 003's Tcl echo server: read a line with `gets`, write it back with
 * `puts`, blocking style, many clients at once.
 *
 *     deno run --allow-net examples/line_echo.ts [--port 1234] [--hostname 0.0.0.0]
 *
 * Prints `listening on HOST:PORT` first; SIGINT/SIGTERM shut it down.
 *
 * @module
 */

import { type Connection, type ConnectionInfo, serve } from "@corio/corio";
import { parseFlags } from "./_flags.ts";

/** `while {![eof $sock]} { puts $sock [gets $sock] }`, as a coroutine. */
export async function* lineEcho(conn: Connection, info: ConnectionInfo) {
  console.log(`connect ${info.id} from ${conn.peer}`);
  try {
    for (let line; (line = yield* conn.recvLine()) !== null;) {
      yield* conn.send(line + "\n");
    }
  } finally {
    console.log(`EOF on ${info.id}`);
  }
}

if (import.meta.main) {
  const flags = parseFlags({
    port: 1234,
    hostname: "0.0.0.0",
  });
  const stop = new AbortController();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const onSignal = () => stop.abort();
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);

  const server = serve({
    port: flags.port,
    hostname: flags.hostname,
    signal: stop.signal,
    shutdownGrace: 1000,
  }, lineEcho);
  console.log(`listening on ${server.addr.hostname}:${server.addr.port}`);
  await server.finished;
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
}
