import assert from "node:assert/strict";
import { fuzz, mutate, prng } from "../examples/sip/fuzz.ts";

Deno.test("parseSipMessage() gives a message or a SipParseError for 5000 mutated inputs", () => {
  const report = fuzz(5000, 42);
  assert.deepEqual(report.unexpected.map((u) => String(u.error)), []);
  assert.equal(report.parsed + report.rejected, 5000);
  // The mutants exercise both outcomes, not only one.
  assert.ok(report.parsed > 50, `parsed ${report.parsed}`);
  assert.ok(report.rejected > 500, `rejected ${report.rejected}`);
});

Deno.test("mutate() is reproducible from its seed", () => {
  const a = prng(7);
  const b = prng(7);
  for (let i = 0; i < 20; i++) assert.deepEqual(mutate(a), mutate(b));
});
