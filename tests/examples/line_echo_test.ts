import assert from "node:assert/strict";
import { startExample } from "./_example.ts";

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
