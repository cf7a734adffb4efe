// R11, shared by the CI test and the soak: runs tests/fixtures/lossy_net.ts
// in a private network namespace (`unshare -n`) whose loopback drops and
// resets packets by nftables rules.

import { canRun, CONFIG, fixture } from "./_helpers.ts";

const RULES = [
  "nft add table inet corio",
  "nft add chain inet corio out '{ type filter hook output priority 0; policy accept; }'",
  // 5% loss on each direction of port 7000
  "nft add rule inet corio out tcp dport 7000 numgen random mod 100 lt 5 drop",
  "nft add rule inet corio out tcp sport 7000 numgen random mod 100 lt 5 drop",
  // 3% of the packets on port 7001 are answered by a TCP reset
  "nft add rule inet corio out tcp dport 7001 numgen random mod 100 lt 3 reject with tcp reset",
  "nft add rule inet corio out tcp sport 7001 numgen random mod 100 lt 3 reject with tcp reset",
  // nothing reaches port 7002
  "nft add rule inet corio out tcp dport 7002 drop",
];

/** True when `unshare -n` with nftables works here (root or user namespaces). */
export async function canUseNetns(): Promise<boolean> {
  return await canRun("unshare", [
    "-n",
    "sh",
    "-c",
    "ip link set lo up && nft add table inet probe",
  ]);
}

export interface LossyOutcome {
  ok: number;
  errors: Record<string, number>;
  worstLate: number;
  elapsed: number[];
  maxOk: number;
}

export async function runLossy(
  lossy: number,
  resets: number,
  blackhole: number,
  concurrency: number,
): Promise<
  {
    deadlines: Record<string, number>;
    lossy: LossyOutcome;
    resets: LossyOutcome;
    blackhole: LossyOutcome;
  }
> {
  const deno = [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--config",
    CONFIG,
    fixture("lossy_net.ts"),
    lossy,
    resets,
    blackhole,
    concurrency,
  ]
    .map((arg) => `'${arg}'`).join(" ");
  const script = ["ip link set lo up", ...RULES, `exec ${deno}`].join(" && ");
  const { success, stdout, stderr } = await new Deno.Command("unshare", {
    args: ["-n", "sh", "-c", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(stdout);
  if (!success) {
    throw new Error(
      `lossy_net failed: ${out}\n${new TextDecoder().decode(stderr)}`,
    );
  }
  return JSON.parse(out.trim().split("\n").at(-1)!);
}
