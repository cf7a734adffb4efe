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
