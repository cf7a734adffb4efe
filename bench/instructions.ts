/**
 * Instructions per echo message and per B7 fire, counted by valgrind's
 * callgrind: unlike a time, a count does not move with whatever else the
 * machine is doing, so it can see a change in corio's own code on a host
 * whose speed swings by a third between runs.
 *
 *     deno task instructions [--small N] [--large N] [--cache] [--ll KIB]
 *       [CASE...]
 *
 * Each case runs in a process of its own under
 * `valgrind --tool=callgrind` with V8's `--predictable` (no concurrent
 * compilation or collection), once at `small` and once at `large` units;
 * the difference divided by `large - small` is the count per unit, without
 * the runtime's start-up and the JIT's warm-up. The defaults, 200k and
 * 600k, gave b7:corio within 0.4% in three runs; 100k and 300k spread it
 * over 10% (the JIT tiers up at another moment in each run, and at 100k
 * that still shows). Even so, run a case two or three times before
 * reading a change of a percent or two into it, and compare two trees one
 * run after the other: two runs at once on 2 cores read echo:corio-sync
 * 3,191 and 3,494 for trees that, run one at a time, read 3,545-3,581 and
 * 3,565 (V8's tier-up moments still follow the host's timing).
 * Cases (the code is in `echo_js_bench.ts` and `timers_bench.ts`):
 *
 * - `echo:raw`, `echo:floor-sync`, `echo:floor-cancellable`, `echo:corio`,
 *   `echo:corio-timeout` (a 30 s recv timeout), `echo:corio-sync`: one
 *   64-byte echo message over a transport that completes at once.
 * - `echo:raw-50`, `echo:floor-cancellable-50`, `echo:corio-50`,
 *   `echo:corio-timeout-50`: the same over 50 connections served side by
 *   side, as in B1 and B3 (one clock read per round of connections, 50
 *   deadlines pending).
 * - `echo:floor-cancellable-1000`, `echo:corio-1000`,
 *   `echo:corio-timeout-1000`: over 1000 connections, as in B2 (see
 *   `--ll`).
 * - `echo:corio-lines`, `echo:corio-sync-lines`: a line echo (`recvLine`,
 *   then `send` of the string), one 64-byte line per read.
 * - `echo:corio-sync-mixed`: the `function*` echo, in a program that first
 *   waited on ten kinds of operation (the code all operations share has
 *   then seen their classes, as in a real server).
 * - `b7:floor`, `b7:corio`: one fire of B7's 10k looping delays on a
 *   hand-moved clock.
 *
 * `--cache` adds callgrind's cache simulation (about half again slower):
 * first-level instruction and data cache misses per unit, on the cache
 * sizes valgrind reads off this CPU. A count of instructions cannot see a
 * hot path whose code outgrows the instruction cache; this can (B7, while
 * the scheduler still called each generator's own `next` megamorphically:
 * corio 30 instruction-cache misses per fire, the floor 0.2; since, 0.5).
 *
 * `--ll KIB` (implies `--cache`) gives the simulated last-level cache that
 * size, and adds its data read misses per unit: lines fetched from beyond
 * it. At `--ll 512`, this CPU's second level, it shows what a server pays
 * for the state of many connections: `echo:corio-1000` and
 * `echo:floor-cancellable-1000` serve 1000 connections side by side, whose
 * records no longer fit, and each message of corio's misses 97-99 lines
 * against the floor's 61-62 (at 50 connections, under 1 for both). Of those,
 * about 6 are `AsyncLocalStorage.getStore()`, twice a message: Deno keeps a
 * store behind a context object, an entry object and a WeakMap's table
 * (measured by caching the coroutine on the operation instead, which is
 * not safe to ship: two coroutines may share a connection's operation).
 * A 30 s recv timeout adds about 2 (`echo:corio-timeout-1000`: 100.9
 * against 98.6) and 300 instructions: a wait that ends leaves its deadline
 * queued, and the next wait's later one moves it only when it comes up
 * (before, each wait's removal moved other coroutines' entries: 6,413
 * instructions per message with the timeout, 6,000 since).
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
    small: { type: "string", default: "200000" },
    large: { type: "string", default: "600000" },
    cache: { type: "boolean", default: false },
    ll: { type: "string" },
  },
});
const isCache = values.cache || values.ll !== undefined;

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
  "echo:raw-50": { baseline: "echo:raw", args: echo("raw-50") },
  "echo:floor-cancellable-50": {
    baseline: "echo:raw-50",
    args: echo("floor-cancellable-50"),
  },
  "echo:corio-50": {
    baseline: "echo:floor-cancellable-50",
    args: echo("corio-50"),
  },
  "echo:corio-timeout-50": {
    baseline: "echo:corio-50",
    args: echo("corio-timeout-50"),
  },
  "echo:floor-cancellable-1000": {
    baseline: "echo:floor-cancellable-50",
    args: echo("floor-cancellable-1000"),
  },
  "echo:corio-1000": {
    baseline: "echo:floor-cancellable-1000",
    args: echo("corio-1000"),
  },
  "echo:corio-timeout-1000": {
    baseline: "echo:corio-1000",
    args: echo("corio-timeout-1000"),
  },
  "echo:corio-sync": {
    baseline: "echo:floor-sync",
    args: echo("corio-sync"),
  },
  "echo:corio-sync-mixed": {
    baseline: "echo:corio-sync",
    args: echo("corio-sync-mixed"),
  },
  "echo:corio-lines": { baseline: "echo:corio", args: echo("corio-lines") },
  "echo:corio-sync-lines": {
    baseline: "echo:corio-sync",
    args: echo("corio-sync-lines"),
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

/** What callgrind counts for one run: instructions, and cache misses. */
interface Counts {
  instructions: number;
  /** First-level instruction cache misses (with `--cache`, else NaN). */
  i1Misses: number;
  /** First-level data cache misses, reads and writes (else NaN). */
  d1Misses: number;
  /** Last-level data cache read misses (with `--ll`, else NaN). */
  llReadMisses: number;
}

/** What callgrind counts for `args` run over `units` units. */
async function count(args: string[], units: number): Promise<Counts> {
  const output = await new Deno.Command("valgrind", {
    args: [
      "--tool=callgrind",
      "--callgrind-out-file=/dev/null",
      ...(isCache ? ["--cache-sim=yes"] : []),
      ...(values.ll ? [`--LL=${Number(values.ll) * 1024},8,64`] : []),
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
  const figure = (pattern: RegExp) => {
    const match = text.match(pattern);
    return match === null ? NaN : Number(match[1].replaceAll(",", ""));
  };
  const instructions = figure(/I\s+refs:\s+([\d,]+)/);
  if (!output.success || Number.isNaN(instructions)) {
    throw new Error(`callgrind failed (${output.code}): ${text.slice(-500)}`);
  }
  return {
    instructions,
    i1Misses: figure(/I1\s+misses:\s+([\d,]+)/),
    d1Misses: figure(/D1\s+misses:\s+([\d,]+)/),
    llReadMisses: values.ll
      ? figure(/LLd misses:\s+[\d,]+\s+\(\s*([\d,]+) rd/)
      : NaN,
  };
}

const names = positionals.length > 0 ? positionals : Object.keys(CASES);
for (const name of names) {
  if (!CASES[name]) throw new TypeError(`unknown case ${name}`);
}
const small = Number(values.small);
const large = Number(values.large);
const perUnit: Record<string, Counts> = {};
// valgrind runs one thread at a time: run two processes at once.
const queue = [...names];
await Promise.all([0, 1].map(async () => {
  for (let name; (name = queue.shift()) !== undefined;) {
    const { args } = CASES[name];
    const [a, b] = [await count(args, small), await count(args, large)];
    const per = (key: keyof Counts) => (b[key] - a[key]) / (large - small);
    perUnit[name] = {
      instructions: per("instructions"),
      i1Misses: per("i1Misses"),
      d1Misses: per("d1Misses"),
      llReadMisses: per("llReadMisses"),
    };
  }
}));

console.log(`per unit (callgrind, ${large} - ${small} units):`);
const llColumn = values.ll ? ` LL (${values.ll} KiB) read misses |` : "";
const cacheColumns = isCache ? ` I1 misses | D1 misses |${llColumn}` : "";
console.log(`| case | instructions | vs |${cacheColumns}`);
console.log(
  `| --- | --- | --- |${isCache ? " --- | --- |" : ""}${
    values.ll ? " --- |" : ""
  }`,
);
for (const name of names) {
  const { baseline } = CASES[name];
  const counts = perUnit[name];
  const base = perUnit[baseline];
  const vs = baseline === name || base === undefined
    ? "–"
    : `${(counts.instructions / base.instructions).toFixed(3)}× ${baseline}`;
  const misses = isCache
    ? ` ${counts.i1Misses.toFixed(1)} | ${counts.d1Misses.toFixed(1)} |${
      values.ll ? ` ${counts.llReadMisses.toFixed(1)} |` : ""
    }`
    : "";
  console.log(
    `| ${name} | ${Math.round(counts.instructions)} | ${vs} |${misses}`,
  );
}
