/**
 * Seed 002's echo server: every connection is a coroutine that echoes what
 * it receives, with 3 s receive and send timeouts and at most 100
 * connections at once (the rest wait in the kernel backlog).
 *
 *     deno run --allow-net examples/echo_server.ts [--port 9999] [--hostname 0.0.0.0]
 *       [--deny ADDR] [--backlog 4096]
 *     deno run --allow-net --allow-read examples/echo_server.ts --cert cert.pem --key key.pem
 *     deno run --allow-net --allow-read --allow-write examples/echo_server.ts --unix /tmp/echo.sock
 *
 * `--cert FILE --key FILE` (PEM) serve TLS; `--unix PATH` a Unix domain
 * socket instead of TCP. Prints `listening on HOST:PORT` first (`listening
 * on unix:PATH` for a Unix socket); SIGINT/SIGTERM shut it down with a 1 s
 * grace.
 *
 * How the seed's C maps to corio:
 *
 * - `STACKS_init(&stacks, 100, 5)`, its cap of 100 coroutines:
 *   `maxConnections: 100`.
 * - `EVTCPACCEPTOR_init_ex(loop, &saddr, 30, echo_thread_factory, ...)`:
 *   `serve()`. Its 30 is the `listen()` backlog, `tcpBacklog` here:
 *   `--backlog 30` gives the seed's; the default stays corio's 4096 (Deno's
 *   511 made a burst of 10k connects take 10.5 s instead of 1.5 s).
 * - `echo_thread_factory`, called for each accepted connection to refuse it
 *   (a non-zero return closes the socket) or to pick its thread procedure:
 *   `onAccept`, which returns `false` to refuse, or the handler to run
 *   ({@linkcode acceptEcho}). `--deny ADDR` makes it refuse clients from
 *   that IP address, and print `refused N from HOST:PORT`.
 * - `echo_thread` with its `TIME_OUT` of 3 s: {@linkcode echo} with
 *   `recvTimeout` and `sendTimeout` of 3000 ms.
 *
 * @module
 */

import { type Connection, type ConnectionInfo, serve } from "@corio/corio";
import { parseFlags } from "./_flags.ts";
import { orExit } from "./_main.ts";

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

/**
 * Seed 002's `echo_thread_factory`: decides on each accepted connection
 * before its coroutine starts. Refuses a client from `deny` (an IP address;
 * `""` refuses none), and picks {@linkcode echo} for the others.
 */
export function acceptEcho(deny: string, log: (line: string) => void) {
  return (info: ConnectionInfo) => {
    const { hostname, port } = info.remoteAddr;
    if (hostname === deny) {
      log(`refused ${info.id} from ${hostname}:${port}`);
      return false; // the seed's non-zero return: closed at once
    }
    return echo; // the seed's `*proc = echo_thread`
  };
}

if (import.meta.main) {
  const flags = parseFlags({
    port: 9999,
    hostname: "0.0.0.0",
    cert: "",
    key: "",
    unix: "",
    deny: "",
    backlog: 4096,
  }, {
    backlog: { integer: true, min: 1 },
  }, {
    about: `Seed 002's echo server: echoes what each connection sends, with 3 s
receive and send timeouts, at most 100 connections at once.

  --port N         port to listen on (0: any free one)
  --hostname ADDR  address to listen on
  --cert FILE      TLS certificate chain (PEM), with --key FILE
  --unix PATH      listen on a Unix domain socket instead of TCP
  --deny ADDR      refuse clients from this IP address (seed 002's
                   connection factory, as onAccept)
  --backlog N      the kernel's accept queue (the seed's is 30)

Prints "listening on HOST:PORT" first; SIGINT/SIGTERM stop it.`,
    placeholders: { cert: "FILE", key: "FILE", unix: "PATH", deny: "ADDR" },
  });
  if ((flags.cert === "") !== (flags.key === "")) {
    console.error("--cert and --key go together");
    Deno.exit(2);
  }
  if (flags.unix !== "" && flags.cert !== "") {
    console.error("--unix and --cert/--key do not mix");
    Deno.exit(2);
  }
  if (flags.unix !== "" && flags.deny !== "") {
    console.error("--unix and --deny do not mix: a Unix client has no address");
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
  const tcp = {
    ...limits,
    port: flags.port,
    hostname: flags.hostname,
    tcpBacklog: flags.backlog,
    onAccept: acceptEcho(flags.deny, (line) => console.log(line)),
  };
  const where = `${flags.hostname}:${flags.port}`;
  const read = (flag: "cert" | "key") =>
    orExit(
      `read --${flag} ${flags[flag]}`,
      () => Deno.readTextFileSync(flags[flag]),
    );
  const tls = flags.cert !== ""
    ? { cert: read("cert"), key: read("key") }
    : null;
  const server = flags.unix !== ""
    ? orExit(
      `listen on unix:${flags.unix}`,
      () => serve({ ...limits, path: flags.unix }, echo),
    )
    : tls !== null
    ? orExit(`listen on ${where} (TLS)`, () => serve({ ...tcp, ...tls }, echo))
    : orExit(`listen on ${where}`, () => serve(tcp, echo));
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
