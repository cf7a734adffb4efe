import assert from "node:assert/strict";
import { startExample } from "./_example.ts";
import { startClient } from "./_client.ts";

Deno.test("examples/pool_client.ts runs many clients over a few connections and prints the stats", async () => {
  const server = await startExample("echo_server.ts", ["--allow-net"]);
  try {
    const { code, lines, stderr } = await startClient("pool_client.ts", [
      "--host",
      "127.0.0.1",
      "--port",
      String(server.port),
      "--pool",
      "4",
      "--clients",
      "40",
      "--requests",
      "25",
    ]).finished;
    assert.equal(code, 0, stderr);
    assert.match(
      lines[0],
      /^1000 requests from 40 clients over a pool of 4 connections in \d+ ms: \d+ requests\/s$/,
    );
    const stats = JSON.parse(lines[1].replace(/^pool stats: /, ""));
    assert.deepEqual(stats, {
      open: 4,
      idle: 4,
      leased: 0,
      connecting: 0,
      waiting: 0,
      created: 4,
      discarded: 0,
    });
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    // four connections, each closed by the client when its pool closed
    assert.match(lines.join("\n"), /stopped: .*"accepted":4,.*"completed":4/);
  }
});

Deno.test("examples/pool_client.ts exits 1 with a clear error when nothing listens", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const { code, stderr } = await startClient("pool_client.ts", [
    "--port",
    String(port),
    "--clients",
    "3",
  ]).finished;
  assert.equal(code, 1);
  assert.match(
    stderr,
    new RegExp(
      `failed: Cannot connect to 127\\.0\\.0\\.1:${port}: connection refused`,
    ),
  );
});
