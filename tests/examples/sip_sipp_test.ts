// The SIP examples against the real SIP peer sipp (Debian `sip-tester`;
// CI installs it). Every run is bounded in calls (-m) and time (-timeout).
import assert from "node:assert/strict";
import { startExample } from "./_example.ts";

const hasSipp = await (async () => {
  try {
    const { success } = await new Deno.Command("sipp", {
      args: ["-v"],
      stdout: "null",
      stderr: "null",
    }).output();
    return success || true;
  } catch {
    console.warn(
      "sipp is not on PATH: skipping the sipp tests (apt-get install sip-tester)",
    );
    return false;
  }
})();

const UAS_FLAGS = ["--allow-net", "--unstable-net"];

async function sipp(
  args: string[],
): Promise<
  { code: number; successful: number; failed: number; output: string }
> {
  const cwd = await Deno.makeTempDir({ prefix: "sipp-" }); // sipp may write logs here
  try {
    const { code, stdout, stderr } = await new Deno.Command("sipp", {
      args: [...args, "-nostdin", "-timeout", "60s", "-timeout_error"],
      cwd,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const output = new TextDecoder().decode(stdout) +
      new TextDecoder().decode(stderr);
    const count = (name: string) =>
      Number(
        new RegExp(`${name}\\s*\\|.*\\|\\s*(\\d+)`).exec(output)?.[1] ?? NaN,
      );
    return {
      code,
      successful: count("Successful call"),
      failed: count("Failed call"),
      output,
    };
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
}

async function uasAgainstSipp(
  transport: "udp" | "tcp",
  extra: string[],
  calls: number,
  t1 = 100,
) {
  const uas = await startExample("sip_uas.ts", UAS_FLAGS, [
    "--transport",
    transport,
    "--t1",
    String(t1),
  ]);
  try {
    const result = await sipp([
      "-sn",
      "uac",
      `127.0.0.1:${uas.port}`,
      "-i",
      "127.0.0.1",
      "-t",
      transport === "tcp" ? "t1" : "u1",
      "-m",
      String(calls),
      "-r",
      "100",
      ...extra,
    ]);
    assert.equal(result.code, 0, result.output.slice(-2000));
    assert.equal(result.failed, 0);
    assert.equal(result.successful, calls);
  } finally {
    const { code } = await uas.stop();
    assert.equal(code, 0);
  }
}

Deno.test({
  name: "sip_uas.ts completes 200 sipp UAC calls over UDP with zero failures",
  ignore: !hasSipp,
  fn: () => uasAgainstSipp("udp", [], 200),
});

Deno.test({
  name: "sip_uas.ts completes 100 sipp UAC calls over TCP with zero failures",
  ignore: !hasSipp,
  fn: () => uasAgainstSipp("tcp", [], 100),
});

Deno.test({
  name: "sip_uas.ts completes 100 sipp UAC calls over UDP with 10% packet loss",
  ignore: !hasSipp,
  // sipp retransmits on its own T1 of 500 ms, so ours must match: with a
  // shorter one our Timer J (64·T1) ends before sipp's BYE retransmissions
  // do, and a late BYE gets 481 (measured).
  fn: () => uasAgainstSipp("udp", ["-lost", "10"], 100, 500),
});

Deno.test({
  name: "sip_uac.ts completes every call against sipp's UAS",
  ignore: !hasSipp,
  fn: async () => {
    const probe = Deno.listenDatagram({
      hostname: "127.0.0.1",
      port: 0,
      transport: "udp",
    });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    const calls = 50;
    const server = sipp([
      "-sn",
      "uas",
      "-i",
      "127.0.0.1",
      "-p",
      String(port),
      "-m",
      String(calls),
    ]);
    // No wait for sipp to bind: an INVITE sent too early is retransmitted (Timer A).
    const client = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        ...UAS_FLAGS,
        new URL("../../examples/sip_uac.ts", import.meta.url).pathname,
        "--target",
        `127.0.0.1:${port}`,
        "--calls",
        String(calls),
        "--rate",
        "100",
        "--t1",
        "100",
      ],
      stdout: "piped",
    }).output();
    const lines = new TextDecoder().decode(client.stdout).trim().split("\n");
    assert.match(lines[0], /^listening on 127\.0\.0\.1:\d+$/);
    assert.equal(lines.at(-1), `calls: ${calls} completed: ${calls} failed: 0`);
    assert.equal(client.code, 0);
    const result = await server;
    assert.equal(result.code, 0, result.output.slice(-2000));
    assert.equal(result.successful, calls);
  },
});
