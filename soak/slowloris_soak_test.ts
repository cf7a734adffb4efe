// R1 at full size (RELIABILITY.md): 10k slowloris connections from 100
// source addresses against a cap of 1000, and the same attack against a
// server without the defences, for comparison.
import assert from "node:assert/strict";
import { canRun } from "../tests/reliability/_helpers.ts";
import { runSlowloris } from "../tests/reliability/_slowloris.ts";

const hasNode = await canRun("node", ["--version"]);
if (!hasNode) console.warn("R1 soak skipped: node is not installed");

Deno.test({
  name:
    "R1 soak: 10k slowloris connections from 100 addresses, cap 1000: legitimate clients served",
  ignore: !hasNode,
  async fn() {
    const result = await runSlowloris({
      connections: 10_000,
      addresses: 100,
      cap: 1000,
      perPeer: 5, // cap / 200: the attack can hold 500 of the 1000 slots
      evictAfter: 100,
      lineTimeout: 1000,
      requests: 1000,
      streams: 2,
      patience: 2000,
      pace: 5,
    });
    console.log("R1 (soak):", JSON.stringify(result));
    assert.ok(
      result.served / result.requests >= 0.995,
      `served ${result.served}/${result.requests}`,
    );
    assert.ok(result.p99 < 100, `p99 ${result.p99} ms`);
  },
});

Deno.test({
  name:
    "R1 soak: the same attack against a server without the defences serves no one",
  ignore: !hasNode,
  async fn() {
    const result = await runSlowloris({
      connections: 10_000,
      addresses: 100,
      cap: 1000,
      perPeer: Infinity,
      evictAfter: Infinity,
      lineTimeout: Infinity,
      requests: 30,
      streams: 2,
      patience: 2000,
      pace: 0,
    });
    console.log("R1 (soak, no defences):", JSON.stringify(result));
    assert.equal(result.served, 0);
  },
});
