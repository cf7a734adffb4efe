import assert from "node:assert/strict";
import { exchange, startExample } from "./_example.ts";

Deno.test("examples/echo_server.ts echoes, drops a silent client after 3 s, and stops on SIGTERM", async () => {
  const server = await startExample("echo_server.ts", ["--allow-net"]);
  try {
    const payload = new Uint8Array(100_000).map(() =>
      Math.floor(Math.random() * 256)
    );
    const echoed = await exchange(server.port, payload, payload.length);
    assert.deepEqual(echoed, payload);

    // Seed 002's 3 s recv timeout: a silent client is disconnected.
    const silent = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    const started = performance.now();
    const n = await silent.read(new Uint8Array(10));
    const waited = performance.now() - started;
    silent.close();
    assert.equal(n, null);
    assert.ok(waited >= 2900 && waited < 10_000, `closed after ${waited} ms`);
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    assert.match(lines.join("\n"), /stopped: .*"timeouts":1/);
  }
});
