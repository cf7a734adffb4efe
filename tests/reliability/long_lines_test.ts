import assert from "node:assert/strict";
import { runLongLines } from "./_long_lines.ts";

Deno.test("R4: 200 clients each sending 1 MiB without a newline get LineTooLongError and a close; memory stays bounded", async () => {
  const result = await runLongLines(200);
  console.log("R4 (CI):", JSON.stringify(result));
  assert.equal(result.lineTooLong, 200);
  assert.equal(result.closedByServer, 200);
  // The live bound is clients × (limit + one read). Read buffers grow in
  // place, so the peak holds no outgrown buffers: measured 1.38–1.42× the
  // bound (the runtime's own per-connection memory), against 1.65–2.04×
  // when each growth step allocated anew. 1.6× tells the two apart.
  assert.ok(
    result.growth < 1.6 * result.bound,
    `RSS grew ${result.growth} bytes, bound ${1.6 * result.bound}`,
  );
});
