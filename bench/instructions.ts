/**
 * Instructions per echo message and per B7 fire, counted by valgrind's
 * callgrind: unlike a time, a count does not move with whatever else the
 * machine is doing, so it can see a change in corio's own code on a host
 * whose speed swings by a third between runs.
 *
 *     deno task instructions [--small N] [--large N] [CASE...]
 *
 * Each case runs in a process of its own under
 * `valgrind --tool=callgrind` with V8's `--predictable` (no concurrent
 * compilation or collection), once at `small` and once at `large` units;
 * the difference divided by `large - small` is the count per unit, without
 * the runtime's start-up. Counts still differ between runs, mostly by a few
 * percent and now and then by 15% (when the JIT tiers up at another
 * moment): run a case two or three times before reading a change into it.
 * Cases (the code is in `echo_js_bench.ts` and `timers_bench.ts`):
 *
 * - `echo:raw`, `echo:floor-sync`, `echo:floor-cancellable`, `echo:corio`,
 *   `echo:corio-timeout` (a 30 s recv timeout), `echo:corio-sync`: one
 *   64-byte echo message over a transport that completes at once.
 * - `b7:floor`, `b7:corio`: one fire of B7's 10k looping delays on a
 *   hand-moved clock.
 *
 * What it leaves out: the kernel and the runtime's own I/O, which the
 * socket benchmarks measure. Needs valgrind on PATH.
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    small: { type: "string", default: "100000" },
    large: { type: "string", default: "300000" },
  },
});

const benchDir = new URL(".", import.meta.url).pathname.replace(/\/$/, "");

/** Each case, its baseline, and the script arguments that run it. */
const CASES: Record<string, { baseline: string; args: string[] }> = {
  "echo:raw": { baseline: "echo:raw", args: echo("raw") },
  "echo:floor-sync": { baseline: "echo:raw", args: echo("floor-sync") },
  "echo:floor-cancellable": {
    baseline: "echo:raw",
    args: echo("floor-cancellable"),
  },
  "echo:corio": { baseline: "echo:floor-cancellable", args: echo("corio") },
  "echo:corio-timeout": { baseline: "echo:corio", args: echo("corio-timeout") },
  "echo:corio-sync": {
    baseline: "echo:floor-sync",
    args: echo("corio-sync"),
  },
  "b7:floor": { baseline: "b7:floor", args: b7("floor") },
  "b7:corio": { baseline: "b7:floor", args: b7("corio") },
};

function echo(name: string): string[] {
  return [`${benchDir}/echo_js_bench.ts`, "--case", name];
}

function b7(form: string): string[] {
  return [`${benchDir}/timers_bench.ts`, "--manual", form];
}

/** Instructions callgrind counts for `args` run over `units` units. */
async function count(args: string[], units: number): Promise<number> {
  const output = await new Deno.Command("valgrind", {
    args: [
      "--tool=callgrind",
      "--callgrind-out-file=/dev/null",
      Deno.execPath(),
      "run",
      "--v8-flags=--predictable",
      ...args,
      String(units),
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stderr);
  const refs = text.match(/I\s+refs:\s+([\d,]+)/);
  if (!output.success || refs === null) {
    throw new Error(`callgrind failed (${output.code}): ${text.slice(-500)}`);
  }
  return Number(refs[1].replaceAll(",", ""));
}

const names = positionals.length > 0 ? positionals : Object.keys(CASES);
for (const name of names) {
  if (!CASES[name]) throw new TypeError(`unknown case ${name}`);
}
const small = Number(values.small);
const large = Number(values.large);
const perUnit: Record<string, number> = {};
// valgrind runs one thread at a time: run two processes at once.
const queue = [...names];
await Promise.all([0, 1].map(async () => {
  for (let name; (name = queue.shift()) !== undefined;) {
    const { args } = CASES[name];
    const [a, b] = [await count(args, small), await count(args, large)];
    perUnit[name] = (b - a) / (large - small);
  }
}));

console.log(`instructions per unit (callgrind, ${large} - ${small} units):`);
console.log("| case | instructions | vs |");
console.log("| --- | --- | --- |");
for (const name of names) {
  const { baseline } = CASES[name];
  const base = perUnit[baseline];
  const vs = baseline === name || base === undefined
    ? "–"
    : `${(perUnit[name] / base).toFixed(3)}× ${baseline}`;
  console.log(`| ${name} | ${Math.round(perUnit[name])} | ${vs} |`);
}
