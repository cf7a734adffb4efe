/**
 * Seed 004's stateful server: a coroutine turns a protocol's "inside-out"
 * state machine right side out. Each connection is one session coroutine:
 * its state (the name, the running total) is local variables, and where it
 * is in the protocol is where it is in the code. Sessions are cheap enough
 * to hold tens of thousands at once (`examples/tally_swarm.ts` opens them).
 *
 *     deno run --allow-net examples/tally_server.ts [--port 7000] [--hostname 0.0.0.0]
 *       [--max-connections 20000] [--idle-timeout 30000]
 *
 * The protocol is lines; each reply starts with a status code, as SMTP's do:
 *
 *     C: HELLO alice      S: 200 hello alice
 *     C: ADD 5            S: 210 5
 *     C: ADD -2           S: 210 3
 *     C: SUM              S: 211 3
 *     C: BYE              S: 221 bye alice: 3 from 2 adds
 *
 * Before HELLO only HELLO and BYE are accepted (`503`). A bad command is
 * answered `500`, a bad number `501`; neither ends the session. A session
 * idle for `--idle-timeout` ms gets `421 idle timeout` and is closed; one
 * that sends a line over 1 KiB is closed at once. A last command that the
 * stream ends before its newline (`ADD 12` cut to `ADD 1`) is not carried
 * out: the session ends, and the server prints what it dropped.
 *
 * Prints `listening on HOST:PORT` first. SIGINT/SIGTERM shut it down with a
 * 1 s grace; it then prints `served N sessions, at most M at once`.
 *
 * @module
 */

import {
  type Connection,
  IncompleteReadError,
  LineTooLongError,
  serve,
  TimeoutError,
} from "@corio/corio";
import { parseFlags } from "./_flags.ts";
import { orExit } from "./_main.ts";

/** The largest line a session reads, in bytes. */
export const MAX_LINE = 1024;

const NUMBER = /^[+-]?\d{1,9}$/;

/**
 * One session. The connection's receive timeout (the server's
 * `recvTimeout`) is the idle timeout; the connection is closed when the
 * session returns. `log` gets a line for a command cut off by the end of
 * the stream.
 */
export async function* tallySession(
  conn: Connection,
  log: (line: string) => void = (line) => console.log(line),
) {
  const reply = (line: string) => conn.send(line + "\r\n");
  // A command is only one when its newline came: at the end of the stream,
  // `ADD 12` may have arrived as `ADD 1`.
  const whole = { requireNewline: true };
  try {
    // Who is it? Nothing else is allowed until we know.
    let name = "";
    while (name === "") {
      const line = yield* conn.recvLine(whole);
      if (line === null) return;
      const [verb, arg] = split(line);
      if (verb === "HELLO" && arg !== "") {
        name = arg;
        yield* reply(`200 hello ${name}`);
      } else if (verb === "BYE") {
        yield* reply("221 bye");
        return;
      } else {
        yield* reply("503 say HELLO <name> first");
      }
    }
    // The tally.
    let total = 0;
    let adds = 0;
    for (let line; (line = yield* conn.recvLine(whole)) !== null;) {
      const [verb, arg] = split(line);
      if (verb === "ADD") {
        if (!NUMBER.test(arg)) {
          yield* reply(`501 not an integer of at most 9 digits: ${arg}`);
          continue;
        }
        total += Number(arg);
        adds++;
        yield* reply(`210 ${total}`);
      } else if (verb === "SUM") {
        yield* reply(`211 ${total}`);
      } else if (verb === "BYE") {
        yield* reply(`221 bye ${name}: ${total} from ${adds} adds`);
        return;
      } else {
        yield* reply(`500 unknown command: ${verb}`);
      }
    }
  } catch (error) {
    // A receive that timed out leaves the connection intact for a last
    // word. A line too long has closed it (it would not fit a buffer), as
    // has a send that timed out.
    if (error instanceof TimeoutError && error.op === "recvLine") {
      yield* reply("421 idle timeout");
    } else if (error instanceof IncompleteReadError) {
      const partial = new TextDecoder().decode(error.partial);
      log(
        `${conn.peer}: the stream ended inside a command, not carried out: ${
          JSON.stringify(partial)
        }`,
      );
    } else if (!(error instanceof LineTooLongError)) {
      throw error;
    }
  }
}

/** "ADD 5" → ["ADD", "5"]; the verb in upper case, the rest trimmed. */
function split(line: string): [string, string] {
  const text = line.trim();
  const space = text.indexOf(" ");
  if (space < 0) return [text.toUpperCase(), ""];
  return [text.slice(0, space).toUpperCase(), text.slice(space + 1).trim()];
}

if (import.meta.main) {
  const flags = parseFlags({
    port: 7000,
    hostname: "0.0.0.0",
    "max-connections": 20000,
    "idle-timeout": 30000,
  }, {
    "max-connections": { integer: true, min: 1, orInfinity: true },
    // At 0 a session would time out before its client's HELLO arrived.
    "idle-timeout": { above: 0, orInfinity: true },
  }, {
    about: `Seed 004's stateful line protocol, one coroutine per session:
HELLO <name>, then ADD <n> (a running total), SUM, BYE.

  --port N               port to listen on (0: any free one)
  --hostname ADDR        address to listen on
  --max-connections N    sessions at once
  --idle-timeout MS      a session silent this long gets 421 and is closed

Prints "listening on HOST:PORT" first; SIGINT/SIGTERM stop it, and it
prints how many sessions it served.`,
  });
  const stop = new AbortController();
  const signals = ["SIGINT", "SIGTERM"] as const;
  const onSignal = () => stop.abort();
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);

  let open = 0;
  let mostAtOnce = 0;
  const where = `${flags.hostname}:${flags.port}`;
  const server = orExit(`listen on ${where}`, () =>
    serve({
      port: flags.port,
      hostname: flags.hostname,
      maxConnections: flags["max-connections"],
      recvTimeout: flags["idle-timeout"],
      sendTimeout: 10_000,
      maxLineLength: MAX_LINE,
      signal: stop.signal,
      shutdownGrace: 1000,
    }, async function* (conn) {
      mostAtOnce = Math.max(mostAtOnce, ++open);
      try {
        yield* tallySession(conn);
      } finally {
        open--;
      }
    }));
  console.log(`listening on ${server.addr.hostname}:${server.addr.port}`);
  await server.finished;
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  console.log(
    `served ${server.stats.accepted} sessions, at most ${mostAtOnce} at once`,
  );
}
