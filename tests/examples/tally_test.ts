import assert from "node:assert/strict";
import { type Connection, type Coroutine, run, spawn } from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
import { MAX_LINE, tallySession } from "../../examples/tally_server.ts";
import { startExample } from "./_example.ts";

/** Runs `session` owning `conn`, as `serve` runs a handler: its end closes it. */
async function* owning(conn: Connection, session: Coroutine<unknown>) {
  try {
    yield* session;
  } finally {
    conn.close();
  }
}

/** Sends each line and collects the reply to it; null once the session ended. */
function* converse(conn: Connection, lines: string[]) {
  const replies: (string | null)[] = [];
  for (const line of lines) {
    yield* conn.send(line + "\r\n");
    replies.push(yield* conn.recvLine());
  }
  return replies;
}

Deno.test("tally session: HELLO first, then a running total, errors answered, BYE sums up", async () => {
  const [client, server] = memoryConnPair();
  const replies = await run((function* () {
    yield* spawn(owning(server, tallySession(server)));
    return yield* converse(client, [
      "ADD 1",
      "hello",
      "HELLO alice",
      "ADD 5",
      "add -2",
      "ADD five",
      "ADD 1234567890",
      "MUL 3",
      "SUM",
      "BYE",
    ]);
  })());
  assert.deepEqual(replies, [
    "503 say HELLO <name> first",
    "503 say HELLO <name> first",
    "200 hello alice",
    "210 5",
    "210 3",
    "501 not an integer of at most 9 digits: five",
    "501 not an integer of at most 9 digits: 1234567890",
    "500 unknown command: MUL",
    "211 3",
    "221 bye alice: 3 from 2 adds",
  ]);
  assert.ok(server.isClosed);
  client.close();
});

Deno.test("tally session: BYE before HELLO gets 221 and ends it; a client gone before HELLO ends it quietly", async () => {
  const [client, server] = memoryConnPair();
  const replies = await run((function* () {
    yield* spawn(owning(server, tallySession(server)));
    return yield* converse(client, ["BYE"]);
  })());
  assert.deepEqual(replies, ["221 bye"]);
  assert.ok(server.isClosed);
  client.close();
  const [quitter, other] = memoryConnPair();
  await run((function* () {
    const session = yield* spawn(owning(other, tallySession(other)));
    yield* quitter.closeWrite();
    yield* session.join();
  })());
  assert.ok(other.isClosed);
  quitter.close();
});

Deno.test("tally session: pipelined commands in one write are answered in order", async () => {
  const [client, server] = memoryConnPair();
  const replies = await run((function* () {
    yield* spawn(owning(server, tallySession(server)));
    yield* client.send("HELLO carol\nADD 40\r\nADD 2\nSUM\nBYE\n");
    const lines: (string | null)[] = [];
    for (let line; (line = yield* client.recvLine()) !== null;) {
      lines.push(line);
    }
    return lines;
  })());
  assert.deepEqual(replies, [
    "200 hello carol",
    "210 40",
    "210 42",
    "211 42",
    "221 bye carol: 42 from 2 adds",
  ]);
  client.close();
});

Deno.test("tally session: idle for the receive timeout gets 421 at exactly that time, then EOF", async () => {
  const clock = new VirtualClock();
  const [client, server] = memoryConnPair();
  server.recvTimeout = 30_000; // as serve({ recvTimeout }) sets it
  const got = await run(
    (function* () {
      yield* spawn(owning(server, tallySession(server)));
      const [hello] = yield* converse(client, ["HELLO bob"]);
      const idle = yield* client.recvLine();
      const at = clock.now();
      return [hello, idle, at, yield* client.recvLine()];
    })(),
    { clock },
  );
  assert.deepEqual(got, ["200 hello bob", "421 idle timeout", 30_000, null]);
  client.close();
});

Deno.test("tally session: a line over the limit ends the session", async () => {
  const [client, server] = memoryConnPair();
  server.maxLineLength = MAX_LINE; // as serve({ maxLineLength }) sets it
  const got = await run((function* () {
    const session = yield* spawn(owning(server, tallySession(server)));
    yield* client.send("HELLO " + "x".repeat(MAX_LINE) + "\r\n");
    const reply = yield* client.recvLine();
    yield* session.join();
    return reply;
  })());
  assert.equal(got, null);
  assert.ok(server.isClosed);
  client.close();
});

async function swarm(port: number, args: string[]) {
  const path = new URL("../../examples/tally_swarm.ts", import.meta.url)
    .pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", path, "--port", String(port), ...args],
  }).output();
  const decoder = new TextDecoder();
  return {
    code,
    out: decoder.decode(stdout).trim(),
    err: decoder.decode(stderr).trim(),
  };
}

Deno.test("examples/tally_server.ts holds every session of examples/tally_swarm.ts at once", async () => {
  const server = await startExample("tally_server.ts", ["--allow-net"]);
  let result;
  try {
    result = await swarm(server.port, [
      "--clients",
      "300",
      "--adds",
      "3",
      "--pause",
      "20",
    ]);
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    assert.deepEqual(lines, ["served 300 sessions, at most 300 at once"]);
  }
  assert.equal(result.code, 0, result.err);
  assert.match(
    result.out,
    /^300 of 300 sessions ok, 300 open at once; [\d.]+ s, RSS \d+ MiB$/,
  );
});

Deno.test("examples/tally_swarm.ts exits 1 and says why when sessions fail", async () => {
  // A port nothing listens on: every connect is refused at once.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const result = await swarm(port, ["--clients", "3", "--timeout", "2000"]);
  assert.equal(result.code, 1);
  assert.match(result.out, /^0 of 3 sessions ok, 0 open at once;/);
  assert.equal(result.err.split("\n").length, 3);
  assert.match(result.err, /refused/i);
});

Deno.test("examples/tally_server.ts does not carry out a command the stream cut off before its newline, and says so", async () => {
  const server = await startExample("tally_server.ts", ["--allow-net"]);
  let replies = "";
  try {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    try {
      // `ADD 12`, cut to `ADD 1` by the end of the stream.
      await conn.write(new TextEncoder().encode("HELLO ada\r\nADD 1"));
      await conn.closeWrite();
      replies = await new Response(conn.readable).text();
    } catch (error) {
      conn.close();
      throw error;
    }
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    assert.equal(lines.length, 2, lines.join("\n"));
    assert.match(
      lines[0],
      /^127\.0\.0\.1:\d+: the stream ended inside a command, not carried out: "ADD 1"$/,
    );
    assert.equal(lines[1], "served 1 sessions, at most 1 at once");
  }
  assert.equal(replies, "200 hello ada\r\n");
});
