import assert from "node:assert/strict";
import { runLongLines } from "./_long_lines.ts";

Deno.test("R4: 200 clients each sending 1 MiB without a newline get LineTooLongError and a close; memory stays bounded", async () => {
  const result = await runLongLines(200);
  console.log("R4 (CI):", JSON.stringify(result));
  assert.equal(result.lineTooLong, 200);
  assert.equal(result.closedByServer, 200);
  // The live bound is clients × (limit + one read); the peak RSS also holds
  // the buffers outgrown on the way up (1, 2, ... 64 KiB) until V8 collects
  // them, measured at ~1.7× the live bound: hence the factor 2.
  assert.ok(
    result.growth < 2 * result.bound,
    `RSS grew ${result.growth} bytes, bound ${2 * result.bound}`,
  );
});
