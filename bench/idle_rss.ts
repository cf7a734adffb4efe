/**
 * B8 over a longer hold: RSS per idle connection 1 s after the connections
 * go idle (what B8 reads) and again once V8's memory reducer has given the
 * young generation back (15–30 s of idle), so that what a server holds per
 * connection shows without the young generation's step-wise growth during
 * the burst. Servers alternate within each round; each ratio is against the
 * first server named, median against median.
 *
 *     deno task idle-rss [--conns 10000] [--rounds 3] [--settle 35]
 *       [--pads 64,128,240] SERVER...
 *
 * `--pads` adds the `function*` floor (`floor_echo.ts --sync`) holding that
 * many bytes more per connection, once per size: where its settled ratio
 * crosses B8's 1.05 is how much heap per connection the target leaves a
 * library of `function*` handlers over a bare generator. SERVERs are named
 * as for `compare.ts`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { compileC, readIdleServer } from "./_procs.ts";
import { fmt, median, range } from "./_report.ts";
import { serverFromSpec, SERVERS } from "./_servers.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    conns: { type: "string", default: "10000" },
    rounds: { type: "string", default: "3" },
    settle: { type: "string", default: "35" },
    pads: { type: "string", default: "" },
  },
});
if (positionals.length < 1) {
  console.error(
    "usage: idle_rss.ts [--conns N] [--rounds N] [--settle S] [--pads B,...] SERVER...",
  );
  Deno.exit(2);
}
const conns = Number(values.conns);
const rounds = Number(values.rounds);
const settleSeconds = Number(values.settle);

const servers = positionals.map(serverFromSpec);
for (const pad of values.pads ? values.pads.split(",") : []) {
  servers.push({
    name: `floor-sync +${pad} B`,
    cmd: [...SERVERS["floor-sync"].cmd, "--pad", pad],
  });
}

const benchDir = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
const { client } = await compileC(benchDir, `${benchDir}/results`);

/** One server's figures per round: KiB per connection, MiB of young gen. */
interface Reading {
  rssAt1s: number;
  rssSettled: number;
  heap: number;
  youngAt1s: number;
  youngSettled: number;
}

async function hold(cmd: string[]): Promise<Reading> {
  const { readings: [at1s, settled] } = await readIdleServer(
    client,
    cmd,
    conns,
    [1000, 1000 + settleSeconds * 1000],
  );
  const kib = (bytes: number) => bytes / 1024;
  return {
    rssAt1s: kib(at1s.rssPerConn),
    rssSettled: kib(settled.rssPerConn),
    heap: kib(settled.heapPerConn),
    youngAt1s: at1s.newSpaceMiB,
    youngSettled: settled.newSpaceMiB,
  };
}

const readings = new Map<string, Reading[]>(servers.map((s) => [s.name, []]));
for (let round = 0; round < rounds; round++) {
  for (const { name, cmd } of servers) {
    const reading = await hold(cmd);
    readings.get(name)!.push(reading);
    console.error(
      `round ${round + 1} ${name}: ${fmt(reading.rssAt1s, 2)} KiB at 1 s, ${
        fmt(reading.rssSettled, 2)
      } settled`,
    );
  }
}

const med = (name: string, pick: (r: Reading) => number) =>
  median(readings.get(name)!.map(pick));
const spread = (name: string, pick: (r: Reading) => number) => {
  const xs = readings.get(name)!.map(pick);
  return range(
    { median: med(name, pick), min: Math.min(...xs), max: Math.max(...xs) },
    2,
  );
};
const base = servers[0].name;
const at1s = (r: Reading) => r.rssAt1s;
const settled = (r: Reading) => r.rssSettled;
console.log(
  `${conns} idle connections, ${rounds} rounds; RSS KiB per connection 1 s after idle and after ${settleSeconds} s; ratios against ${base}\n`,
);
console.log(
  "| server | RSS at 1 s | vs | RSS settled | vs | heap KiB/conn | young generation MiB, 1 s / settled |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const { name } of servers) {
  console.log(
    `| ${name} | ${spread(name, at1s)} | ${
      fmt(med(name, at1s) / med(base, at1s), 3)
    }× | ${spread(name, settled)} | ${
      fmt(med(name, settled) / med(base, settled), 3)
    }× | ${fmt(med(name, (r) => r.heap), 3)} | ${
      fmt(med(name, (r) => r.youngAt1s), 1)
    } / ${fmt(med(name, (r) => r.youngSettled), 1)} |`,
  );
}
