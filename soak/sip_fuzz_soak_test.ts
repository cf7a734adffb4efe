// Issue 6, R10: 100k mutated SIP messages; 0 unexpected exceptions, p99
// parse time under 1 ms. Prints the figures.
import assert from "node:assert/strict";
import { fuzz } from "../examples/sip/fuzz.ts";

Deno.test("parseSipMessage() survives 100k mutated inputs with p99 parse < 1 ms", () => {
  const started = performance.now();
  const report = fuzz(100_000, Date.now() % 1_000_000);
  const elapsed = performance.now() - started;
  const p = (q: number) =>
    report.times[Math.floor(q * (report.times.length - 1))];
  console.log(
    `R10: ${report.inputs} inputs in ${
      (elapsed / 1000).toFixed(1)
    } s; parsed ${report.parsed}, rejected ${report.rejected}, ` +
      `unexpected ${report.unexpected.length}; p50 ${
        p(0.5).toFixed(4)
      } ms, p99 ${p(0.99).toFixed(4)} ms, max ${p(1).toFixed(3)} ms`,
  );
  assert.deepEqual(report.unexpected.map((u) => String(u.error)), []);
  assert.ok(p(0.99) < 1, `p99 ${p(0.99)} ms`);
  assert.ok(elapsed < 60_000);
});
