// The README's first code block is seed 002's echo server, copied from
// examples/echo_server.ts. It runs forever, so `deno test --doc` skips it
// (`ts ignore`): this test keeps it true instead. The "TLS and Unix
// sockets" block reads cert.pem, key.pem and ca.pem from where it runs, so
// `deno test --doc` skips it too: this test runs it in a directory that has
// them.

import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url);
const readme = await Deno.readTextFile(new URL("README.md", root));
const example = await Deno.readTextFile(
  new URL("examples/echo_server.ts", root),
);

/** The README's first TypeScript block. */
function firstBlock(): string {
  const match = /```ts[^\n]*\n([\s\S]*?)```/.exec(readme);
  assert.ok(match, "README.md has no ts code block");
  return match[1];
}

/** The first TypeScript block of the README's section `heading`. */
function sectionBlock(heading: string): string {
  const section = readme.slice(readme.indexOf(`\n## ${heading}\n`));
  const match = /```ts[^\n]*\n([\s\S]*?)```/.exec(section);
  assert.ok(match, `README.md's "${heading}" has no ts code block`);
  return match[1];
}

/** `source`'s lines, trimmed, without blanks and comments. */
function codeLines(source: string): string[] {
  return source.split("\n").map((line) => line.trim()).filter((line) =>
    line !== "" && !line.startsWith("//") && !line.startsWith("*") &&
    !line.startsWith("/**")
  );
}

Deno.test("README's first code block serves with the echo example's handler and limits", () => {
  const block = codeLines(firstBlock());
  const handler = /export async function\* echo[^{]*\{\n([\s\S]*?)\n\}/
    .exec(example);
  assert.ok(handler, "examples/echo_server.ts has no echo handler");
  const body = codeLines(handler[1]);
  const start = block.findIndex((line) => line === body[0]);
  assert.ok(start >= 0, `README lacks the handler's "${body[0]}"`);
  assert.deepEqual(block.slice(start, start + body.length), body);
  for (
    const limit of [
      "maxConnections: 100",
      "recvTimeout: 3000",
      "sendTimeout: 3000",
    ]
  ) {
    assert.ok(block.join(" ").includes(limit), `README lacks ${limit}`);
    assert.ok(example.includes(limit), `the example lacks ${limit}`);
  }
  assert.ok(/parseFlags\(\{\s*port: 9999,/.test(example));
  assert.ok(block.join(" ").includes("port: 9999"));
});

Deno.test("README's first code block type-checks against the package", async () => {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(file, firstBlock());
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "check",
        "--config",
        new URL("deno.json", root).pathname,
        file,
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
  } finally {
    await Deno.remove(file);
  }
});

/** True when nothing listens on `port` now. */
function isFree(port: number): boolean {
  try {
    Deno.listen({ port }).close();
    return true;
  } catch {
    return false;
  }
}

const SOCKET = "/tmp/echo.sock"; // the block's
const isSocketFree = (() => {
  try {
    Deno.lstatSync(SOCKET);
    return false;
  } catch {
    return true;
  }
})();

Deno.test({
  name:
    "README's TLS and Unix sockets block reads both echoes, ends, and removes its socket file: it runs twice",
  // Its fixed port and path may be taken on this machine.
  ignore: !isFree(8443) || !isSocketFree,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "corio_readme_" });
    try {
      await Deno.writeTextFile(
        `${dir}/block.ts`,
        sectionBlock("TLS and Unix sockets"),
      );
      for (const name of ["cert.pem", "key.pem", "ca.pem"]) {
        await Deno.copyFile(
          new URL(`tests/fixtures/tls/${name}`, root),
          `${dir}/${name}`,
        );
      }
      for (const run of [1, 2]) {
        const { code, stdout, stderr } = await new Deno.Command(
          Deno.execPath(),
          {
            args: [
              "run",
              "--check",
              "--config",
              new URL("deno.json", root).pathname,
              "--allow-net",
              "--allow-read",
              "--allow-write",
              "block.ts",
            ],
            cwd: dir,
            stdout: "piped",
            stderr: "piped",
            signal: AbortSignal.timeout(20_000),
          },
        ).output();
        const decoder = new TextDecoder();
        assert.equal(code, 0, `run ${run}: ${decoder.decode(stderr)}`);
        assert.equal(
          decoder.decode(stdout),
          `[ "hello over TLS", "hello over Unix" ]\n`,
        );
        assert.throws(() => Deno.lstatSync(SOCKET), Deno.errors.NotFound);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
