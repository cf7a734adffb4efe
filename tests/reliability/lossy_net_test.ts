import assert from "node:assert/strict";
import { canUseNetns, runLossy } from "./_lossy.ts";

const hasNetns = await canUseNetns();
if (!hasNetns) {
  console.warn("R11 skipped: `unshare -n` with nftables is not permitted here");
}

Deno.test({
  name:
    "R11: with 5% packet loss no request fails spuriously, resets give typed errors, and a black hole times out at its deadline",
  ignore: !hasNetns,
  async fn() {
    const result = await runLossy(300, 100, 5, 30);
    console.log("R11 (CI):", JSON.stringify(result));
    // 5% loss: TCP retransmits; every request completes before its deadline.
    // No timeout through 5% loss: TCP's retransmits beat every deadline. A
    // rare reset is TCP's own (a loopback port reused from a TIME_WAIT
    // connection meets a late segment): typed, and counted, not hidden.
    const { ConnectionResetError: resets = 0, ...others } = result.lossy.errors;
    assert.deepEqual(others, {});
    assert.ok(resets <= 1, `${resets} resets`);
    assert.equal(result.lossy.ok + resets, 300);
    // Resets: every request ends, with a reply or a typed error, by its deadline.
    const typed = [
      "ConnectionResetError",
      "ConnectError",
      "ConnectionClosedError",
      "TimeoutError",
    ];
    for (const name of Object.keys(result.resets.errors)) {
      assert.ok(typed.includes(name), `untyped: ${name}`);
    }
    assert.ok(
      result.resets.worstLate <= 100,
      `a reset request ended ${result.resets.worstLate} ms late`,
    );
    // A black hole: every request times out, at the deadline and not later than 100 ms.
    assert.deepEqual(result.blackhole.errors, { TimeoutError: 5 });
    assert.ok(
      result.blackhole.worstLate >= 0 && result.blackhole.worstLate <= 100,
      `late ${result.blackhole.worstLate}`,
    );
  },
});
