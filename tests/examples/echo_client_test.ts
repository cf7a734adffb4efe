import assert from "node:assert/strict";
import { startExample } from "./_example.ts";
import { eventually, startClient } from "./_client.ts";

Deno.test("examples/echo_client.ts connects, sends, receives, checks and closes", async () => {
  const server = await startExample("echo_server.ts", ["--allow-net"]);
  try {
    const { code, lines, stderr } = await startClient("echo_client.ts", [
      "--host",
      "127.0.0.1",
      "--port",
      String(server.port),
      "--count",
      "3",
    ]).finished;
    assert.equal(code, 0, stderr);
    assert.equal(lines[0], `connected to 127.0.0.1:${server.port}`);
    for (let i = 1; i <= 3; i++) {
      assert.match(
        lines[i],
        new RegExp(`^sent "message ${i} of 3", got it back in [\\d.]+ ms$`),
      );
    }
    assert.equal(lines[4], "done: 3 messages echoed, 0 reconnects");
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
    const { code, lines, stderr } = await startClient("echo_client.ts", [
      "--port",
      String(server.port),
      "--count",
      "2",
      "--pause",
      "3300",
    ]).finished;
    assert.equal(code, 0, stderr);
    assert.deepEqual(
      lines.map((line) => line.replace(/in [\d.]+ ms/, "in T ms")),
      [
        `connected to 127.0.0.1:${server.port}`,
        `sent "message 1 of 2", got it back in T ms`,
        "the server closed the connection; reconnecting",
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
    const { code, lines, stderr } = await startClient("echo_client.ts", [
      "--port",
      String(port),
      "--count",
      "2",
      "--timeout",
      "1000",
    ]).finished;
    assert.equal(code, 0, stderr);
    assert.deepEqual(
      lines.map((line) => line.replace(/in [\d.]+ ms/, "in T ms")),
      [
        `connected to 127.0.0.1:${port}`,
        `connection lost (Cannot recvLine from 127.0.0.1:${port}: timed out after 1000 ms); reconnecting`,
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
