// The README's first code block is seed 002's echo server, copied from
// examples/echo_server.ts. It runs forever, so `deno test --doc` skips it
// (`ts ignore`): this test keeps it true instead.

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
