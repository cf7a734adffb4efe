/**
 * SIP load figure (issue 4): the call rate sipp's UAC completes against
 * examples/sip_uas.ts over UDP with zero failures, and the server's RSS
 * before and after. Steps the offered rate up until a run fails.
 *
 *     deno run -A bench/sip_bench.ts [--rates 500,1000,2000,4000] [--seconds 5]
 *       [--json]
 *
 * `--json` prints one JSON object on stdout (progress goes to stderr):
 * `{ rates, seconds, runs: [{ rate, calls, ok, failed, code, seconds,
 * completedPerSec, rssMiB, serverCpuSec, socketDrops }], best, rssBeforeMiB,
 * rssAfterMiB, rmemDefault, server }`. `socketDrops` is what the kernel dropped at the
 * server's socket for want of room in its receive buffer (/proc/net/udp):
 * the datagrams sipp must retransmit.
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rates: { type: "string", default: "500,1000,2000,3000,4000" },
    seconds: { type: "string", default: "5" },
    json: { type: "boolean", default: false },
  },
});
const seconds = Number(values.seconds);
const rates = values.rates.split(",").map(Number);
// With --json, stdout carries only the JSON object.
const log = values.json ? console.error : console.log;

/** One sipp run at one offered rate. */
interface SipRun {
  rate: number;
  calls: number;
  ok: number;
  failed: number;
  code: number;
  seconds: number;
  completedPerSec: number;
  rssMiB: number;
  /** The server's CPU time over the sipp run, s (utime + stime). */
  serverCpuSec: number;
  /** Datagrams the kernel dropped at the server's socket (full buffer). */
  socketDrops: number;
}

const uas = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "--allow-net",
    "--unstable-net",
    new URL("../examples/sip_uas.ts", import.meta.url).pathname,
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
    "--max-calls",
    "200000",
  ],
  stdout: "piped",
}).spawn();
const reader = uas.stdout.pipeThrough(new TextDecoderStream()).getReader();
const first = (await reader.read()).value ?? "";
const port = Number(/:(\d+)/.exec(first)?.[1]);
const rss = async () => {
  const status = await Deno.readTextFile(`/proc/${uas.pid}/status`);
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) / 1024;
};
// CPU seconds of the server so far, from /proc/PID/stat (after the
// parenthesised command name: utime and stime are fields 14 and 15).
const cpuSeconds = async () => {
  const stat = await Deno.readTextFile(`/proc/${uas.pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
// The kernel's count of datagrams dropped at the server's socket: the last
// field of its line in /proc/net/udp (local address 127.0.0.1:port, hex).
const socketDrops = async () => {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const line = (await Deno.readTextFile("/proc/net/udp")).split("\n")
    .find((l) => l.trim().split(/\s+/)[1] === local);
  return line === undefined ? NaN : Number(line.trim().split(/\s+/).at(-1));
};
// The receive buffer a socket gets (Deno cannot set SO_RCVBUF).
const rmemDefault = Number(
  (await Deno.readTextFile("/proc/sys/net/core/rmem_default")).trim(),
);
const rssBeforeMiB = await rss();
log(`sip_uas.ts on 127.0.0.1:${port}, RSS ${rssBeforeMiB.toFixed(1)} MiB`);
const cwd = await Deno.makeTempDir();
const runs: SipRun[] = [];
let best = 0;
for (const rate of rates) {
  const calls = rate * seconds;
  const [cpuBefore, dropsBefore] = [await cpuSeconds(), await socketDrops()];
  const started = performance.now();
  const { code, stdout } = await new Deno.Command("sipp", {
    args: [
      "-sn",
      "uac",
      `127.0.0.1:${port}`,
      "-i",
      "127.0.0.1",
      "-r",
      String(rate),
      "-m",
      String(calls),
      "-l",
      "20000",
      "-nostdin",
      "-timeout",
      `${seconds * 4 + 30}s`,
      "-timeout_error",
    ],
    cwd,
    stdout: "piped",
    stderr: "null",
  }).output();
  const elapsed = (performance.now() - started) / 1000;
  const text = new TextDecoder().decode(stdout);
  const count = (name: string) =>
    Number(new RegExp(`${name}\\s*\\|.*\\|\\s*(\\d+)`).exec(text)?.[1] ?? NaN);
  const ok = count("Successful call");
  const failed = count("Failed call");
  const run: SipRun = {
    rate,
    calls,
    ok,
    failed,
    code,
    seconds: elapsed,
    completedPerSec: ok / elapsed,
    rssMiB: await rss(),
    serverCpuSec: await cpuSeconds() - cpuBefore,
    socketDrops: await socketDrops() - dropsBefore,
  };
  runs.push(run);
  log(
    `offered ${rate} calls/s x ${seconds} s: ${ok} ok, ${failed} failed, exit ${code}, ${
      run.completedPerSec.toFixed(0)
    } calls/s completed; RSS ${run.rssMiB.toFixed(1)} MiB; server CPU ${
      (100 * run.serverCpuSec / elapsed).toFixed(0)
    }% of a core; ${run.socketDrops} datagrams dropped at its socket`,
  );
  // An unreadable count (NaN) is a failure too.
  if (code !== 0 || !(failed === 0) || !(ok === calls)) break;
  best = rate;
}
const rssAfterMiB = await rss();
log(`highest offered rate with zero failures: ${best} calls/s`);
uas.kill("SIGTERM");
let server: unknown = null;
for (let chunk; !(chunk = await reader.read()).done;) {
  for (const line of chunk.value.split("\n").filter((l) => l.trim())) {
    log(`server: ${line.trim()}`);
    const stats = /^stopped: (.*)$/.exec(line.trim())?.[1];
    if (stats) server = JSON.parse(stats);
  }
}
await uas.status;
await Deno.remove(cwd, { recursive: true });
if (values.json) {
  console.log(JSON.stringify({
    rates,
    seconds,
    runs,
    best,
    rssBeforeMiB,
    rssAfterMiB,
    rmemDefault,
    server,
  }));
}
