/**
 * Where an echo message's time goes on a real socket, by layer and by
 * function: the servers run together under `perf record`, the load client
 * drives them in turns (as `compare.ts --interleave` does), and each sample
 * of a server is charged to the code it was taken in: the kernel, libc or
 * another binary (node), the Deno binary's own code (Rust, V8's C++), a V8
 * builtin, or a JavaScript function. Figures are ns of CPU per echoed message, over all
 * rounds (each round starts the servers afresh: one run can differ from
 * the next by a few hundred ns per message in every layer).
 *
 *     deno task attribute [--conns 50] [--seconds 4] [--size 64] [--depth 1]
 *       [--top 30] [--rounds 3] SERVER...
 *
 * SERVERs are named as for `compare.ts`. Deno servers get V8's
 * `--perf-basic-prof`, so that perf can name JavaScript functions. V8's
 * builtins run from the copy embedded in the Deno binary, which is
 * stripped: they are named by finding that copy in the binary (the bytes
 * of one builtin, read from the running server's memory) and reading the
 * names and offsets V8 writes for its builtins to the same perf map.
 *
 * Needs `perf` (Debian: linux-perf) allowed to sample the servers (root, or
 * `kernel.perf_event_paranoid` at most 1), and `--allow-all`: Deno gives
 * `/proc/PID/mem` to nothing less. A server whose builtins cannot be found
 * has them counted with the rest of the Deno binary, and the table says so. Turns have no unmeasured settle
 * here: the few replies in flight when a turn ends are not counted, about
 * 0.3% of a turn's messages at 50 connections.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { parseArgs } from "node:util";
import { compileC, interleave, runClient, startServer } from "./_procs.ts";
import type { RunningServer } from "./_procs.ts";
import { fmt } from "./_report.ts";
import { serverFromSpec, SERVERS } from "./_servers.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    conns: { type: "string", default: "50" },
    seconds: { type: "string", default: "4" },
    size: { type: "string", default: "64" },
    depth: { type: "string", default: "1" },
    top: { type: "string", default: "30" },
    rounds: { type: "string", default: "3" },
  },
});
if (positionals.length < 1) {
  console.error(
    "usage: attribute.ts [--conns N] [--seconds S] [--size B] [--depth N] [--top N] [--rounds N] SERVER...",
  );
  Deno.exit(2);
}

try {
  await new Deno.Command("perf", { args: ["--version"], stdout: "null" })
    .output();
} catch {
  console.error("attribute.ts needs perf (Debian: linux-perf)");
  Deno.exit(2);
}

const FREQUENCY = 4999; // samples per second (prime: no lockstep with timers)
const benchDir = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
const repoUrl = new URL("..", import.meta.url).href;
const { server: cServer, client } = await compileC(
  benchDir,
  `${benchDir}/results`,
);
SERVERS.c.cmd = [cServer, "0"];

const LAYERS = [
  "kernel",
  "libc and other binaries",
  "Deno binary: Rust, V8's C++",
  "V8 builtins",
  "JavaScript",
] as const;
type Layer = typeof LAYERS[number];

/** A server's samples, by layer and by function. */
interface Profile {
  samples: number;
  byLayer: Map<Layer, number>;
  byFunction: Map<string, number>;
}

/** V8's builtins: where the binary holds them, and their names. */
interface Builtins {
  /** File offset in the Deno binary of the first builtin. */
  fileBase: number;
  starts: number[]; // offsets from the first builtin, ascending
  ends: number[];
  names: string[];
}

/**
 * Every process of this Deno binary holds its builtins at the same place
 * in the file, with the same names: found once, for all the servers.
 */
let found: Promise<Builtins | null> | null = null;

const servers = positionals.map(serverFromSpec);
const rounds = Number(values.rounds);
const totals: Profile[] = servers.map(() => emptyProfile());
const messages = servers.map(() => 0);
const unnamed = new Set<string>();
for (let round = 0; round < rounds; round++) {
  // Each round starts the servers afresh, in an order rotated by one.
  const order = servers.map((_, k) => (k + round) % servers.length);
  const results = await runRound(order.map((i) => servers[i].cmd));
  const cells: string[] = [];
  order.forEach((i, k) => {
    const { messages: m, profile, hasBuiltins } = results[k];
    messages[i] += m;
    merge(totals[i], profile);
    if (!hasBuiltins) unnamed.add(servers[i].name);
    cells.push(
      `${servers[i].name} ${fmt(profile.samples / FREQUENCY * 1e9 / m)} ns`,
    );
  });
  console.log(`round ${round + 1}: ${cells.join(" | ")}`);
}
report(messages, totals);
for (const name of unnamed) {
  console.log(`\n${name}: V8's builtins not found, counted as the Deno binary`);
}

/** Runs `cmds` together under perf once: each one's messages and samples. */
async function runRound(
  cmds: string[][],
): Promise<{ messages: number; profile: Profile; hasBuiltins: boolean }[]> {
  const running: RunningServer[] = [];
  const recorders: Deno.ChildProcess[] = [];
  const dataFiles = cmds.map(() => Deno.makeTempFileSync({ suffix: ".perf" }));
  try {
    for (const cmd of cmds) running.push(await startServer(withPerfMap(cmd)));
    const args = {
      conns: Number(values.conns),
      size: Number(values.size),
      depth: Number(values.depth),
    };
    for (const server of running) {
      await runClient(client, {
        ...args,
        port: server.port,
        warmup: 0.5,
        duration: 0.5,
      }, 30_000);
    }
    const builtins: (Builtins | null | undefined)[] = [];
    for (const server of running) builtins.push(await findBuiltins(server.pid));
    running.forEach((server, i) => {
      recorders.push(
        new Deno.Command("perf", {
          args: [
            "record",
            ...["-F", String(FREQUENCY), "-e", "cpu-clock", "-g"],
            ...["-p", String(server.pid), "-o", dataFiles[i]],
          ],
          stdout: "null",
          stderr: "piped",
        }).spawn(),
      );
    });
    await new Promise((resolve) => setTimeout(resolve, 500)); // perf attaches
    const figures = await interleave(client, running, {
      ...args,
      warmup: 0,
      duration: Number(values.seconds),
    }, { slice: 0.25, settle: 0 });
    for (const recorder of recorders) {
      try {
        recorder.kill("SIGINT");
      } catch {
        // ended by itself: its output says why
      }
    }
    for (const recorder of recorders) {
      // Stopped by SIGINT, perf exits with a failure code even when it
      // wrote its data.
      const text = new TextDecoder().decode((await recorder.output()).stderr);
      if (!text.includes("Captured and wrote")) {
        throw new Error(`perf record failed: ${text}`);
      }
    }
    const results = [];
    for (let i = 0; i < running.length; i++) {
      const messages = figures[i]?.messages;
      if (!messages) throw new Error(`no figures for ${cmds[i].join(" ")}`);
      results.push({
        messages,
        profile: await profile(dataFiles[i], builtins[i] ?? null),
        hasBuiltins: builtins[i] !== null,
      });
    }
    return results;
  } finally {
    for (const recorder of recorders) {
      try {
        recorder.kill("SIGKILL");
      } catch {
        // already ended
      }
    }
    for (const server of running) {
      await server.stop();
      await Deno.remove(`/tmp/perf-${server.pid}.map`).catch(() => {});
    }
    for (const file of dataFiles) await Deno.remove(file).catch(() => {});
  }
}

function emptyProfile(): Profile {
  return { samples: 0, byLayer: new Map(), byFunction: new Map() };
}

/** Adds `from`'s samples to `into`. */
function merge(into: Profile, from: Profile): void {
  into.samples += from.samples;
  for (const [layer, n] of from.byLayer) {
    into.byLayer.set(layer, (into.byLayer.get(layer) ?? 0) + n);
  }
  for (const [name, n] of from.byFunction) {
    into.byFunction.set(name, (into.byFunction.get(name) ?? 0) + n);
  }
}

/** `cmd` with V8 writing a perf map (`/tmp/perf-PID.map`), when it runs V8. */
function withPerfMap(cmd: string[]): string[] {
  const run = cmd.indexOf("run");
  if (run > 0 && /deno$/.test(cmd[run - 1])) {
    const flags = cmd.findIndex((a, i) =>
      i > run && a.startsWith("--v8-flags=")
    );
    if (flags < 0) {
      return [
        ...cmd.slice(0, run + 1),
        "--v8-flags=--perf-basic-prof",
        ...cmd.slice(run + 1),
      ];
    }
    return cmd.map((a, i) => i === flags ? `${a},--perf-basic-prof` : a);
  }
  if (/node$/.test(cmd[0])) {
    return [cmd[0], "--perf-basic-prof", ...cmd.slice(1)];
  }
  return cmd;
}

/**
 * V8's builtins in the Deno binary that server `pid` runs; null when they
 * cannot be found (its memory cannot be read), undefined when it runs
 * another program.
 */
async function findBuiltins(
  pid: number,
): Promise<Builtins | null | undefined> {
  const exe = await Deno.realPath(`/proc/${pid}/exe`).catch(() => null);
  if (exe !== await Deno.realPath(Deno.execPath())) return undefined;
  const builtins = await (found ??= locateBuiltins(pid));
  if (builtins === null) found = null; // try the next server's memory
  return builtins;
}

/** Finds the builtins of the Deno binary through the memory of `pid`. */
async function locateBuiltins(pid: number): Promise<Builtins | null> {
  let map: string;
  try {
    map = await Deno.readTextFile(`/tmp/perf-${pid}.map`);
  } catch {
    return null;
  }
  const entries = map.split("\n").flatMap((line) => {
    const [addr, size, name] = line.split(" ", 3) as [string, string, string];
    return name?.startsWith("Builtin:")
      ? [{
        addr: parseInt(addr, 16),
        size: parseInt(size, 16),
        name: name.slice(8),
      }]
      : [];
  }).sort((a, b) => a.addr - b.addr);
  if (entries.length === 0) return null;
  const first = entries[0].addr;
  const binary = Buffer.from(await Deno.readFile(Deno.execPath()));
  let mem: Deno.FsFile;
  try {
    mem = await Deno.open(`/proc/${pid}/mem`);
  } catch {
    return null;
  }
  try {
    // Any builtin long enough to be unique in the binary places them all.
    for (const entry of entries.filter((e) => e.size >= 256).slice(0, 8)) {
      const bytes = new Uint8Array(64);
      await mem.seek(entry.addr, Deno.SeekMode.Start);
      if ((await mem.read(bytes)) !== 64) continue;
      const at = binary.indexOf(bytes);
      if (at < 0 || binary.indexOf(bytes, at + 1) >= 0) continue;
      return {
        fileBase: at - (entry.addr - first),
        starts: entries.map((e) => e.addr - first),
        ends: entries.map((e) => e.addr - first + e.size),
        names: entries.map((e) => e.name),
      };
    }
    return null;
  } finally {
    mem.close();
  }
}

/** The builtin at `offset` in the Deno binary, if one is there. */
function builtinAt(builtins: Builtins | null, offset: number): string | null {
  if (builtins === null) return null;
  const at = offset - builtins.fileBase;
  let lo = 0;
  let hi = builtins.starts.length - 1;
  if (at < 0 || at < builtins.starts[0]) return null;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (builtins.starts[mid] <= at) lo = mid;
    else hi = mid - 1;
  }
  return at < builtins.ends[lo] ? builtins.names[lo] : null;
}

/** Reads a perf data file: each sample charged to the frame it was taken in. */
async function profile(
  file: string,
  builtins: Builtins | null,
): Promise<Profile> {
  const out = await new Deno.Command("perf", {
    args: ["script", "-i", file, "-F", "ip,sym,dso"],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const result = emptyProfile();
  const add = (layer: Layer, name: string) => {
    result.samples++;
    result.byLayer.set(layer, (result.byLayer.get(layer) ?? 0) + 1);
    result.byFunction.set(name, (result.byFunction.get(name) ?? 0) + 1);
  };
  // A sample is its call chain, innermost frame first, then a blank line.
  let isFirst = true;
  for (const line of text.split("\n")) {
    if (line.trim() === "") {
      isFirst = true;
      continue;
    }
    if (!isFirst) continue;
    isFirst = false;
    const frame = line.trim().match(/^([0-9a-f]+) (.*) \((.*)\)$/);
    if (frame === null) continue;
    const [, ip, sym, dso] = frame;
    if (dso.includes("kernel")) add("kernel", `[k] ${sym}`);
    else if (dso.startsWith("/tmp/perf-")) {
      if (sym.startsWith("Builtin:")) add("V8 builtins", sym.slice(8));
      else if (sym.startsWith("JS:")) add("JavaScript", jsName(sym));
      else add("JavaScript", "(unnamed JIT code)");
    } else if (dso === Deno.execPath() || /\/deno$/.test(dso)) {
      const name = builtinAt(builtins, parseInt(ip, 16));
      if (name !== null) add("V8 builtins", name);
      else add("Deno binary: Rust, V8's C++", "(Deno binary)");
    } else {add(
        "libc and other binaries",
        `${sym} (${dso.replace(/.*\//, "")})`,
      );}
  }
  return result;
}

/** "JS:*'poll file:///repo/src/x.ts:1:2" -> "poll src/x.ts:1:2" */
function jsName(sym: string): string {
  return sym.replace(/^JS:[*+~^]?'?/, "").replaceAll(repoUrl, "").replace(
    "file:///",
    "/",
  );
}

function report(messages: number[], profiles: Profile[]): void {
  const names = servers.map((s) => s.name);
  const perMessage = (samples: number, i: number) =>
    samples / FREQUENCY * 1e9 / messages[i];
  const row = (label: string, cells: string[]) =>
    console.log(`| ${label} | ${cells.join(" | ")} |`);
  const diff = (xs: number[]) =>
    xs.slice(1).map((x) => `${x >= xs[0] ? "+" : ""}${fmt(x - xs[0])}`);
  const header = [
    ...names,
    ...names.slice(1).map((n) => `${n} − ${names[0]}`),
  ];
  console.log(
    `\n${values.conns} connections, ${values.size} B messages, ${values.depth} in flight per connection, ${rounds} rounds of ${values.seconds} s each in turns; ns of CPU per message (perf record -F ${FREQUENCY})\n`,
  );
  row("layer", header);
  row("---", header.map(() => "---:"));
  row(
    "messages",
    messages.map((m) => fmt(m)).concat(names.slice(1).map(() => "")),
  );
  const all = profiles.map((p, i) => perMessage(p.samples, i));
  row("**all**", [...all.map((x) => fmt(x)), ...diff(all)]);
  for (const layer of LAYERS) {
    const xs = profiles.map((p, i) => perMessage(p.byLayer.get(layer) ?? 0, i));
    row(layer, [...xs.map((x) => fmt(x)), ...diff(xs)]);
  }
  const functions = new Set(profiles.flatMap((p) => [...p.byFunction.keys()]));
  const ranked = [...functions].map((name) => ({
    name,
    xs: profiles.map((p, i) => perMessage(p.byFunction.get(name) ?? 0, i)),
  })).sort((a, b) => Math.max(...b.xs) - Math.max(...a.xs));
  console.log("");
  row("function (self)", header);
  row("---", header.map(() => "---:"));
  for (const { name, xs } of ranked.slice(0, Number(values.top))) {
    row(name.replaceAll("|", "\\|"), [...xs.map((x) => fmt(x)), ...diff(xs)]);
  }
}
