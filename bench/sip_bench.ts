/**
 * SIP load figure (issue 4): the call rate sipp's UAC completes against
 * examples/sip_uas.ts over UDP with zero failures, and the server's RSS
 * before and after. Steps the offered rate up until a run fails.
 *
 *     deno run -A bench/sip_bench.ts [--rates 500,1000,2000,4000] [--seconds 5]
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    rates: { type: "string", default: "500,1000,2000,3000,4000" },
    seconds: { type: "string", default: "5" },
  },
});
const seconds = Number(values.seconds);

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
console.log(
  `sip_uas.ts on 127.0.0.1:${port}, RSS ${(await rss()).toFixed(1)} MiB`,
);
const cwd = await Deno.makeTempDir();
let best = 0;
for (const rate of values.rates.split(",").map(Number)) {
  const calls = rate * seconds;
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
  console.log(
    `offered ${rate} calls/s x ${seconds} s: ${ok} ok, ${failed} failed, exit ${code}, ${
      (ok / elapsed).toFixed(0)
    } calls/s completed; RSS ${(await rss()).toFixed(1)} MiB`,
  );
  if (code !== 0 || failed > 0) break;
  best = rate;
}
console.log(`highest offered rate with zero failures: ${best} calls/s`);
uas.kill("SIGTERM");
for (let chunk; !(chunk = await reader.read()).done;) {
  console.log(`server: ${chunk.value.trim()}`);
}
await uas.status;
await Deno.remove(cwd, { recursive: true });
