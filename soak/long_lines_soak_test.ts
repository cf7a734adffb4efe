// R4 at full size (RELIABILITY.md): 1000 clients at once, 1 MiB each, no newline.
import assert from "node:assert/strict";
import { runLongLines } from "../tests/reliability/_long_lines.ts";

Deno.test("R4 soak: 1000 clients each sending 1 MiB without a newline: LineTooLongError, closed, bounded memory", async () => {
  const result = await runLongLines(1000);
  console.log("R4 (soak):", JSON.stringify(result));
  assert.equal(result.lineTooLong, 1000);
  assert.equal(result.closedByServer, 1000);
  assert.ok(
    result.growth < 2 * result.bound,
    `RSS grew ${result.growth} bytes`,
  );
});
