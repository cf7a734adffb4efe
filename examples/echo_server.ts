/**
 * Seed 002's echo server: every connection is a coroutine that echoes what
 * it receives, with 3 s receive and send timeouts and at most 100
 * connections at once (the rest wait in the kernel backlog).
 *
 *     deno run --allow-net examples/echo_server.ts [--port 9999] [--hostname 0.0.0.0]
 *     deno run --allow-net --allow-read examples/echo_server.ts --cert cert.pem --key key.pem
 *     deno run --allow-net --allow-read --allow-write examples/echo_server.ts --unix /tmp/echo.sock
 *
 * `--cert FILE --key FILE` (PEM) serve TLS; `--unix PATH` a Unix domain
 * socket instead of TCP. Prints `listening on HOST:PORT` first (`listening
 * on unix:PATH` for a Unix socket); SIGINT/SIGTERM shut it down with a 1 s
 * grace.
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
    cert: "",
    key: "",
    unix: "",
  });
  if ((flags.cert === "") !== (flags.key === "")) {
    console.error("--cert and --key go together");
    Deno.exit(2);
  }
  if (flags.unix !== "" && flags.cert !== "") {
    console.error("--unix and --cert/--key do not mix");
    Deno.exit(2);
  }
  const stop = new AbortController();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const onSignal = () => stop.abort();
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);

  const limits = {
    maxConnections: 100,
    recvTimeout: 3000,
    sendTimeout: 3000,
    signal: stop.signal,
    shutdownGrace: 1000,
  };
  const address = { port: flags.port, hostname: flags.hostname };
  const server = flags.unix !== ""
    ? serve({ ...limits, path: flags.unix }, echo)
    : flags.cert !== ""
    ? serve({
      ...limits,
      ...address,
      cert: Deno.readTextFileSync(flags.cert),
      key: Deno.readTextFileSync(flags.key),
    }, echo)
    : serve({ ...limits, ...address }, echo);
  const addr = server.addr;
  console.log(
    "path" in addr
      ? `listening on unix:${addr.path}`
      : `listening on ${addr.hostname}:${addr.port}`,
  );
  await server.finished;
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  console.log(`stopped: ${JSON.stringify(server.stats)}`);
}
