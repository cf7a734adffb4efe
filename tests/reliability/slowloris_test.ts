import assert from "node:assert/strict";
import { canRun } from "./_helpers.ts";
import { runSlowloris } from "./_slowloris.ts";

const hasNode = await canRun("node", ["--version"]);

Deno.test({
  name:
    "R1: under a slowloris flood from 20 addresses, legitimate clients are served (per-peer cap, line deadline, eviction)",
  ignore: !hasNode,
  async fn() {
    const result = await runSlowloris({
      connections: 1000,
      addresses: 20,
      cap: 200,
      perPeer: 5, // cap / 40: the attack can hold 100 of the 200 slots
      evictAfter: 100,
      lineTimeout: 1000,
      requests: 300,
      streams: 2, // legitimate clients share 127.0.0.1: stay under its cap
      patience: 2000,
      pace: 10,
    });
    console.log("R1 (CI):", JSON.stringify(result));
    assert.ok(
      result.served / result.requests >= 0.995,
      `served ${result.served}/${result.requests}`,
    );
    assert.ok(
      result.stats.peerLimited > 0,
      "expected the per-peer cap to refuse",
    );
    assert.ok(result.p99 < 100, `p99 ${result.p99} ms`);
    assert.ok(
      result.stats.timeouts > 0,
      "expected whole-line deadlines to fire",
    );
    assert.ok(result.stats.active <= 200);
  },
});

Deno.test({
  name:
    "R1: with no per-peer cap, eviction of the oldest silent connection alone still serves legitimate clients",
  ignore: !hasNode,
  async fn() {
    const result = await runSlowloris({
      connections: 1000,
      addresses: 20,
      cap: 200,
      perPeer: Infinity,
      evictAfter: 100,
      lineTimeout: 2000,
      requests: 100,
      streams: 10,
      patience: 2000,
      pace: 10,
    });
    console.log("R1 eviction only (CI):", JSON.stringify(result));
    assert.ok(
      result.served / result.requests >= 0.995,
      `served ${result.served}/${result.requests}`,
    );
    assert.ok(result.stats.evicted > 0, "expected evictions at the cap");
    assert.ok(result.stats.active <= 200);
  },
});

if (!hasNode) {
  console.warn(
    "R1 skipped: node is not installed (the attacker must bind source addresses)",
  );
}
