import assert from "node:assert/strict";
import { exchange, startExample } from "./_example.ts";
import { eventually } from "./_client.ts";

Deno.test("examples/line_echo.ts echoes lines to many clients at once", async () => {
  const server = await startExample("line_echo.ts", ["--allow-net"]);
  try {
    // All clients connect first, then talk: one slow client blocks no one.
    const conns = await Promise.all(
      Array.from(
        { length: 20 },
        () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      ),
    );
    const replies = await Promise.all(conns.map(async (conn, i) => {
      const lines = [`hello from ${i}`, `line two\r`, `ünïcode ${i}`];
      await conn.write(
        new TextEncoder().encode(lines.map((l) => l + "\n").join("")),
      );
      const reader = conn.readable.pipeThrough(new TextDecoderStream())
        .getReader();
      let text = "";
      while (text.split("\n").length <= lines.length) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      await reader.cancel();
      return text;
    }));
    replies.forEach((text, i) => {
      assert.equal(text, `hello from ${i}\nline two\nünïcode ${i}\n`);
    });
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    assert.equal(
      lines.filter((line) => line.startsWith("connect ")).length,
      20,
    );
  }
});

Deno.test("examples/line_echo.ts closes a connection on a line over 64 KiB with one log line, and logs how each session ended", async () => {
  const server = await startExample("line_echo.ts", ["--allow-net"]);
  const connect = () =>
    Deno.connect({ hostname: "127.0.0.1", port: server.port });
  let idle: Deno.Conn | undefined;
  try {
    // 1: a line, then EOF.
    assert.equal(
      new TextDecoder().decode(await exchange(server.port, "hi\n", 3)),
      "hi\n",
    );
    await eventually(() => server.lines.includes("EOF on 1"));
    // 2: 70,000 bytes and no newline: closed, nothing echoed.
    const long = await connect();
    try {
      await long.write(new Uint8Array(70_000).fill(120)).catch(() => {});
      const n = await long.read(new Uint8Array(10)).catch(() => null);
      assert.equal(n, null);
    } finally {
      long.close();
    }
    await eventually(() => server.lines.some((l) => l.startsWith("closed 2")));
    // 3: still connected when the server stops.
    idle = await connect();
    await eventually(() =>
      server.lines.filter((line) => line.startsWith("connect ")).length === 3
    );
  } finally {
    const { code, lines, stderr } = await server.stop();
    idle?.close();
    assert.equal(code, 0);
    assert.ok(!stderr.includes("    at "), stderr);
    assert.equal(stderr, "");
    assert.deepEqual(lines.filter((line) => !line.startsWith("connect ")), [
      "EOF on 1",
      "closed 2: a line longer than 65536 bytes (the limit)",
      "cancelled on 3: the server is shutting down",
      "served 3 clients, echoed 1 line",
    ]);
  }
});
