// A server example that cannot start (its port taken, a --cert file
// missing, a host that does not resolve, a path already there) says so in
// one line and exits with status 1, as a command-line tool does: no
// "Uncaught" and no stack.

import assert from "node:assert/strict";
import { startClient } from "./_client.ts";

/** Runs `file` with `args` until it exits; it must fail with exactly `line`. */
async function assertFailsWith(
  file: string,
  args: string[],
  line: string | RegExp,
  permissions = ["--allow-net"],
): Promise<void> {
  const { code, lines, stderr } = await startClient(
    file,
    args,
    10_000,
    permissions,
  ).finished;
  assert.equal(code, 1, stderr);
  assert.deepEqual(lines, []);
  const stderrLines = stderr.trimEnd().split("\n");
  assert.equal(stderrLines.length, 1, stderr);
  if (typeof line === "string") assert.equal(stderrLines[0], line);
  else assert.match(stderrLines[0], line);
}

for (const file of ["echo_server.ts", "line_echo.ts", "tally_server.ts"]) {
  Deno.test(`examples/${file} on a port in use says so in one line and exits 1`, async () => {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const { port } = taken.addr;
    await assertFailsWith(
      file,
      ["--hostname", "127.0.0.1", "--port", String(port)],
      `cannot listen on 127.0.0.1:${port}: address already in use`,
    );
  });
}

Deno.test("examples/echo_server.ts with a --cert file that is not there says so in one line and exits 1", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "corio_startup_" });
  try {
    await assertFailsWith(
      "echo_server.ts",
      ["--port", "0", "--cert", `${dir}/cert.pem`, "--key", `${dir}/key.pem`],
      `cannot read --cert ${dir}/cert.pem: no such file or directory`,
      ["--allow-net", "--allow-read"],
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("examples/echo_server.ts with a --hostname that does not resolve says so in one line and exits 1", async () => {
  await assertFailsWith(
    "echo_server.ts",
    ["--port", "0", "--hostname", "no-such-host.invalid"],
    /^cannot listen on no-such-host\.invalid:0: \S/,
  );
});

Deno.test("examples/echo_server.ts --unix on a path already there gives the library's message alone and exits 1", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "corio_startup_" });
  const path = `${dir}/echo.sock`;
  try {
    Deno.writeTextFileSync(path, "");
    await assertFailsWith(
      "echo_server.ts",
      ["--unix", path],
      `Cannot serve on unix:${path}: the path exists and is not a socket`,
      ["--allow-net", "--allow-read", "--allow-write"],
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("examples/sip_uas.ts and sip_uac.ts on a UDP port in use say so in one line and exit 1", async () => {
  const taken = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  try {
    const { port } = taken.addr as Deno.NetAddr;
    const where = ["--hostname", "127.0.0.1", "--port", String(port)];
    await assertFailsWith(
      "sip_uas.ts",
      where,
      `cannot listen on udp 127.0.0.1:${port}: address already in use`,
    );
    await assertFailsWith(
      "sip_uac.ts",
      [...where, "--calls", "1"],
      "cannot place calls: address already in use",
    );
  } finally {
    taken.close();
  }
});
