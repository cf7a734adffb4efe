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

/** The processes `pid` started, from /proc (Linux). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
    const text = Deno.readTextFileSync(
      `/proc/${pid}/task/${task.name}/children`,
    );
    children.push(...text.trim().split(/\s+/).filter(Boolean).map(Number));
  }
  return children;
}

/** True while `pid` runs (not gone, not a zombie). */
function isAlive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
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
    while (!output.includes("listening on")) {
      const chunk = await reader.read();
      if (chunk.done) break;
      output += chunk.value;
    }
    const servers = childrenOf(child.pid);
    child.kill(signal);
    const status = await child.status;
    await reader.cancel();
    // The echo server stops on the SIGTERM the demo sends it (its grace is
    // 1 s); one left behind is killed here, and the test fails.
    for (let i = 0; i < 300 && servers.some(isAlive); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const orphans = servers.filter(isAlive);
    for (const pid of orphans) Deno.kill(pid, "SIGKILL");
    assert.equal(servers.length, 1);
    assert.deepEqual(orphans, []);
    assert.equal(status.code, signal === "SIGTERM" ? 143 : 130);
  });
}
