// Every example answers a flag it cannot use as a command-line tool does:
// what went wrong and its usage line on stderr, exit status 2, and no stack.

import assert from "node:assert/strict";
import { parseFlagsOrThrow } from "../../examples/_flags.ts";
import { startClient } from "./_client.ts";

const EXAMPLES = [
  "echo_server.ts",
  "echo_client.ts",
  "line_echo.ts",
  "pool_client.ts",
  "sip_uac.ts",
  "sip_uas.ts",
  "tally_server.ts",
  "tally_swarm.ts",
];

for (const file of EXAMPLES) {
  Deno.test(`examples/${file} answers a bad flag with its usage and exit status 2`, async () => {
    for (
      const [args, problem] of [
        [["--port", "abc"], `--port must be a number, got "abc"`],
        [["--bogus", "1"], "Unknown option '--bogus'"],
      ] as const
    ) {
      const { code, lines, stderr } = await startClient(file, [...args])
        .finished;
      assert.equal(code, 2, stderr);
      assert.deepEqual(lines, []);
      const [first, ...rest] = stderr.trimEnd().split("\n");
      assert.equal(first, problem);
      assert.match(
        rest.at(-1)!,
        new RegExp(`^usage: ${file} .*\\[--port \\d+\\]`),
      );
    }
  });
}

Deno.test("flags take their defaults' types: numbers, strings and booleans, as --name value or --name=value", () => {
  const defaults = { port: 9999, host: "127.0.0.1", quiet: false, t1: 500 };
  assert.deepEqual(parseFlagsOrThrow(defaults, []), defaults);
  assert.deepEqual(
    parseFlagsOrThrow(defaults, ["--port=0", "--host", "::1", "--quiet"]),
    { port: 0, host: "::1", quiet: true, t1: 500 },
  );
  assert.throws(() => parseFlagsOrThrow(defaults, ["--t1", ""]), {
    name: "TypeError",
    message: `--t1 must be a number, got ""`,
  });
  assert.throws(() => parseFlagsOrThrow(defaults, ["--port", "12abc"]), {
    message: `--port must be a number, got "12abc"`,
  });
  // A timeout of Infinity is none, as in the library's options.
  assert.equal(parseFlagsOrThrow(defaults, ["--t1", "Infinity"]).t1, Infinity);
});
