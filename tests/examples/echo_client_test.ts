import assert from "node:assert/strict";
import { startExample } from "./_example.ts";
import { eventually, startClient } from "./_client.ts";

/**
 * Runs echo_client.ts against `port` with `flags` until it exits, which must
 * be with status 0; gives its output lines, round-trip times as "T" (back-offs
 * are as printed: they do not depend on the machine).
 */
async function echoClientLines(
  port: number,
  flags: string[],
): Promise<string[]> {
  const { code, lines, stderr } = await startClient("echo_client.ts", [
    "--port",
    String(port),
    ...flags,
  ]).finished;
  assert.equal(code, 0, stderr);
  return lines.map((line) =>
    line.replace(/got it back in [\d.]+ ms$/, "got it back in T ms")
  );
}

Deno.test("examples/echo_client.ts connects, sends, receives, checks and closes", async () => {
  const server = await startExample("echo_server.ts", ["--allow-net"]);
  try {
    const lines = await echoClientLines(server.port, [
      "--host",
      "127.0.0.1",
      "--count",
      "3",
    ]);
    assert.deepEqual(lines, [
      `connected to 127.0.0.1:${server.port}`,
      `sent "message 1 of 3", got it back in T ms`,
      `sent "message 2 of 3", got it back in T ms`,
      `sent "message 3 of 3", got it back in T ms`,
      "done: 3 messages echoed, 0 reconnects",
    ]);
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    // the client closed its connection: the handler saw EOF and returned
    assert.match(lines.join("\n"), /stopped: .*"completed":1/);
  }
});

Deno.test("examples/echo_client.ts retries until the server comes up", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close(); // nothing listens there yet
  const client = startClient("echo_client.ts", [
    "--port",
    String(port),
    "--count",
    "2",
    "--retries",
    "100",
  ]);
  await eventually(() =>
    client.lines.some((line) => /^connect failed/.test(line))
  );
  const server = await startExample("echo_server.ts", ["--allow-net"], [
    "--port",
    String(port),
  ]);
  try {
    const { code, lines, stderr } = await client.finished;
    assert.equal(code, 0, stderr);
    assert.match(
      lines[0],
      new RegExp(
        `^connect failed \\(Cannot connect to 127\\.0\\.0\\.1:${port}: connection refused\\); retrying in 100 ms$`,
      ),
    );
    assert.ok(lines.includes(`connected to 127.0.0.1:${port}`));
    assert.equal(lines.at(-1), "done: 2 messages echoed, 0 reconnects");
  } finally {
    await server.stop();
  }
});

Deno.test("examples/echo_client.ts reconnects after the server drops it for silence", async () => {
  // echo_server.ts closes a connection silent for 3 s; pausing longer
  // between messages makes the client reconnect and send again.
  const server = await startExample("echo_server.ts", ["--allow-net"]);
  try {
    assert.deepEqual(
      await echoClientLines(server.port, ["--count", "2", "--pause", "3300"]),
      [
        `connected to 127.0.0.1:${server.port}`,
        `sent "message 1 of 2", got it back in T ms`,
        "the server closed the connection; reconnecting in 100 ms",
        `connected to 127.0.0.1:${server.port}`,
        `sent "message 2 of 2", got it back in T ms`,
        "done: 2 messages echoed, 1 reconnects",
      ],
    );
  } finally {
    await server.stop();
  }
});

Deno.test("examples/echo_client.ts gives up after --retries and exits 1", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const { code, lines, stderr } = await startClient("echo_client.ts", [
    "--port",
    String(port),
    "--retries",
    "2",
  ]).finished;
  assert.equal(code, 1);
  assert.equal(lines.length, 1);
  assert.match(
    stderr,
    new RegExp(
      `gave up: Cannot connect to 127\\.0\\.0\\.1:${port}: connection refused`,
    ),
  );
});

Deno.test("examples/echo_client.ts reconnects when a reply does not come within --timeout, and sends the message again", async () => {
  // A server that reads the first connection's message and never answers
  // it; it echoes on every later connection.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      if (conns.length === 1) continue; // silent
      (async () => {
        const buf = new Uint8Array(1024);
        for (let n; (n = await conn.read(buf)) !== null;) {
          await conn.write(buf.subarray(0, n));
        }
      })().catch(() => {});
    }
  })();
  try {
    assert.deepEqual(
      await echoClientLines(port, ["--count", "2", "--timeout", "1000"]),
      [
        `connected to 127.0.0.1:${port}`,
        `connection lost (Cannot recvLine from 127.0.0.1:${port}: timed out after 1000 ms); reconnecting in 100 ms`,
        `connected to 127.0.0.1:${port}`,
        `sent "message 1 of 2", got it back in T ms`,
        `sent "message 2 of 2", got it back in T ms`,
        "done: 2 messages echoed, 1 reconnects",
      ],
    );
  } finally {
    listener.close();
    await serving;
    for (const conn of conns) conn.close();
  }
});

Deno.test("examples/echo_client.ts gives up after --retries connections that each closed before an echo, backing off between them", async () => {
  // Accepts, then closes at once: each connect succeeds, no echo comes.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let accepted = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      accepted++;
      conn.close();
    }
  })();
  try {
    const { code, lines, stderr } = await startClient("echo_client.ts", [
      "--port",
      String(listener.addr.port),
      "--count",
      "1",
      "--retries",
      "3",
    ]).finished;
    const port = listener.addr.port;
    assert.equal(code, 1);
    assert.deepEqual(lines, [
      `connected to 127.0.0.1:${port}`,
      "the server closed the connection; reconnecting in 100 ms",
      `connected to 127.0.0.1:${port}`,
      "the server closed the connection; reconnecting in 200 ms",
      `connected to 127.0.0.1:${port}`,
    ]);
    assert.match(
      stderr,
      /gave up: Cannot recvLine from 127\.0\.0\.1:\d+: the connection is closed/,
    );
    assert.equal(accepted, 3);
  } finally {
    listener.close();
    await accepting;
  }
});

/**
 * A server whose first connection is served by `first`, with each read's
 * bytes, for as long as it returns true; it echoes on every later
 * connection.
 */
function scriptedServer(
  first: (conn: Deno.Conn, request: Uint8Array) => Promise<boolean>,
) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      const isFirst = conns.length === 1;
      (async () => {
        const buf = new Uint8Array(1024);
        for (let n; (n = await conn.read(buf)) !== null;) {
          if (!isFirst) await conn.write(buf.subarray(0, n));
          else if (!await first(conn, buf.subarray(0, n))) return;
        }
      })().catch(() => {});
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      await serving;
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed by the script already
        }
      }
    },
  };
}

Deno.test("examples/echo_client.ts treats a server that closes mid-reply as a broken connection, and sends the message again", async () => {
  // The first connection gets 5 bytes of its echo, then EOF.
  const server = scriptedServer(async (conn, request) => {
    await conn.write(request.subarray(0, 5));
    conn.close();
    return false;
  });
  try {
    assert.deepEqual(
      await echoClientLines(server.port, ["--count", "2"]),
      [
        `connected to 127.0.0.1:${server.port}`,
        `connection lost (Cannot receive a line from 127.0.0.1:${server.port}: the peer closed the stream after 5 bytes of it, before its end); reconnecting in 100 ms`,
        `connected to 127.0.0.1:${server.port}`,
        `sent "message 1 of 2", got it back in T ms`,
        `sent "message 2 of 2", got it back in T ms`,
        "done: 2 messages echoed, 1 reconnects",
      ],
    );
  } finally {
    await server.close();
  }
});

Deno.test("examples/echo_client.ts backs off 100 ms first, as its doc says, also after a connection that had echoed", async () => {
  // The first connection echoes the first message, then closes when the
  // second arrives.
  let requests = 0;
  const server = scriptedServer(async (conn, request) => {
    if (++requests === 1) {
      await conn.write(request);
      return true;
    }
    conn.close();
    return false;
  });
  try {
    assert.deepEqual(
      await echoClientLines(server.port, ["--count", "2"]),
      [
        `connected to 127.0.0.1:${server.port}`,
        `sent "message 1 of 2", got it back in T ms`,
        "the server closed the connection; reconnecting in 100 ms",
        `connected to 127.0.0.1:${server.port}`,
        `sent "message 2 of 2", got it back in T ms`,
        "done: 2 messages echoed, 1 reconnects",
      ],
    );
  } finally {
    await server.close();
  }
});
