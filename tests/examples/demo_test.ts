import assert from "node:assert/strict";

Deno.test("examples/demo.ts runs the echo server and its clients, then stops by itself", async () => {
  const demo = new URL("../../examples/demo.ts", import.meta.url).pathname;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--allow-run", "--allow-read", demo],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  assert.match(stdout, /server: listening on 127\.0\.0\.1:\d+/);
  assert.match(stdout, /20 clients x 5 messages echoed/);
  assert.match(stdout, /recv timed out as asked/);
  assert.match(
    stdout,
    /after the timeout the same connection still echoes: still here/,
  );
  assert.match(stdout, /server exited with code 0/);
});

/** True while something accepts connections on 127.0.0.1:`port`. */
async function isListening(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.test(`examples/demo.ts stopped by ${signal} stops its echo server too`, async () => {
    const demo = new URL("../../examples/demo.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net", "--allow-run", "--allow-read", demo],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let output = "";
    while (!output.includes("\n")) {
      const chunk = await reader.read();
      if (chunk.done) break;
      output += chunk.value;
    }
    const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(output)?.[1]);
    child.kill(signal);
    const status = await child.status;
    await reader.cancel();
    // The echo server closes its listener on the SIGTERM the demo sends it.
    // (One the demo left behind would go on listening after this test.)
    let listening = true;
    for (let i = 0; i < 150 && listening; i++) {
      listening = await isListening(port);
      if (listening) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(listening, false, `port ${port} still listening`);
    assert.equal(status.code, signal === "SIGTERM" ? 143 : 130);
  });
}
