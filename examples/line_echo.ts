/**
 * Seed 003's Tcl echo server: read a line with `gets`, write it back with
 * `puts`, blocking style, many clients at once.
 *
 *     deno run --allow-net examples/line_echo.ts [--port 1234] [--hostname 0.0.0.0]
 *
 * Prints `listening on HOST:PORT` first, then `connect N from HOST:PORT`
 * for each client and one line for how its session ended: `EOF on N` as the
 * seed prints it, or the line too long, the reset or the shutdown that
 * ended it instead. SIGINT/SIGTERM shut it down with a 1 s grace; it then
 * prints `served N clients, echoed M lines`.
 *
 * A line may be at most 64 KiB (corio's default `maxLineLength`): a longer
 * one closes its connection. The seed has no limit, because Tcl's `gets`
 * has none: it buffers a line however long it grows, so one client that
 * sends bytes and never a newline makes the server hold all of them.
 * corio's `recvLine` buffers at most the limit plus one read, then throws
 * `LineTooLongError`.
 *
 * @module
 */

import {
  type Connection,
  type ConnectionInfo,
  ConnectionResetError,
  LineTooLongError,
  serve,
} from "@corio/corio";
import { parseFlags } from "./_flags.ts";
import { orExit } from "./_main.ts";

/** What the sessions have done so far, for the summary at shutdown. */
export interface LineEchoCounts {
  /** Lines echoed, in all sessions. */
  lines: number;
}

/**
 * `while {![eof $sock]} { puts $sock [gets $sock] }`, as a coroutine. Logs
 * the connect and how the session ended.
 */
export async function* lineEcho(
  conn: Connection,
  info: ConnectionInfo,
  counts: LineEchoCounts = { lines: 0 },
) {
  console.log(`connect ${info.id} from ${conn.peer}`);
  // A cancelled coroutine leaves by its `finally` alone: the shutdown's
  // grace ran out while it waited for a line.
  let ending = `cancelled on ${info.id}: the server is shutting down`;
  try {
    for (let line; (line = yield* conn.recvLine()) !== null;) {
      yield* conn.send(line + "\n");
      counts.lines++;
    }
    ending = `EOF on ${info.id}`;
  } catch (error) {
    if (error instanceof LineTooLongError) {
      ending =
        `closed ${info.id}: a line longer than ${error.limit} bytes (the limit)`;
    } else if (error instanceof ConnectionResetError) {
      ending = `reset on ${info.id}: ${error.message}`;
    } else {
      ending = `failed on ${info.id}: ${(error as Error).message}`;
      throw error;
    }
  } finally {
    console.log(ending);
  }
}

if (import.meta.main) {
  const flags = parseFlags(
    {
      port: 1234,
      hostname: "0.0.0.0",
    },
    {},
    {
      about:
        `Seed 003's Tcl line echo server: reads a line, writes it back, many
clients at once. A line over 64 KiB closes its connection.

  --port N         port to listen on (0: any free one)
  --hostname ADDR  address to listen on

Prints "listening on HOST:PORT" first, then a line per connect and per
session end; SIGINT/SIGTERM stop it.`,
    },
  );
  const stop = new AbortController();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const onSignal = () => stop.abort();
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);

  const counts: LineEchoCounts = { lines: 0 };
  const server = orExit(
    `listen on ${flags.hostname}:${flags.port}`,
    () =>
      serve({
        port: flags.port,
        hostname: flags.hostname,
        signal: stop.signal,
        shutdownGrace: 1000,
      }, (conn, info) => lineEcho(conn, info, counts)),
  );
  console.log(`listening on ${server.addr.hostname}:${server.addr.port}`);
  await server.finished;
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  const { accepted } = server.stats;
  const plural = (n: number, what: string) =>
    `${n} ${what}${n === 1 ? "" : "s"}`;
  console.log(
    `served ${plural(accepted, "client")}, echoed ${
      plural(counts.lines, "line")
    }`,
  );
}
