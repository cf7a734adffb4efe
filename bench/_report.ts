// Turns the runner's figures into BENCHMARKS.md and its SVG chart. Every
// figure is a median over the rounds with min..max, and every ratio is
// against a baseline measured in the same run: within each round, then the
// median over the rounds (see `paired`).

type Figures = Record<string, number> & {
  /** Ping-pong: median over connections of each one's longest wait, ms. */
  maxWaitMedianMs?: number;
  /** Ping-pong: the worst connection's longest wait, ms. */
  maxWaitMs?: number;
};

/** Everything one run of the suite measured. */
export interface Results {
  machine: Record<string, string>;
  command: string;
  date: string;
  rounds: number;
  warmup: number;
  duration: number;
  /** CPUs the load client and the servers were pinned to (taskset). */
  pinning?: { client: string; server: string } | null;
  /** Scenarios run interleaved (`load_client --ports`), and their turns. */
  interleave?: { scenarios: string[]; slice: number; settle: number };
  isQuick: boolean;
  labels: Record<string, string>;
  scenarios: Record<
    string,
    { title: string; runs: Record<string, Figures[]> }
  >;
  micro?: { title: string; rows: string[][] }[];
  /** B5, B6, B7 as measured (the figures `micro` is formatted from). */
  microFigures?: MicroFigures;
  /** B12, from `bench/pool_bench.ts --json`. */
  pool?: PoolResults;
  /** B13, from `bench/sip_bench.ts --json`. */
  sip?: SipResults;
  elapsedSeconds?: number;
}

/** What `ops_bench.ts --report` and `timers_bench.ts --report` print. */
export interface MicroFigures {
  /** B5: per case, the median over `opsRuns`. */
  ops: { name: string; nsPerOp: number; turnsPerOp: number }[];
  /** B5: every process's report (older results: absent, one process). */
  opsRuns?: { name: string; nsPerOp: number; turnsPerOp: number }[][];
  b6: Record<string, number>;
  b7:
    & Record<"corio" | "setTimeout", Record<string, number>>
    & { floor?: Record<string, number> };
  /** Every B7 run by form (b7 holds their medians). */
  b7Runs?: Record<string, Record<string, number>[]>;
}

/** B12: requests/s of each round, pool vs one connection per request. */
export type PoolResults = {
  clients: number;
  requests: number;
  poolSize: number;
  rounds: number;
  results: { pool: number[]; perRequest: number[] };
} | { error: string };

/** B13: one sipp run per offered rate, stepped up until one fails. */
export type SipResults =
  | {
    rates: number[];
    seconds: number;
    runs: {
      rate: number;
      calls: number;
      ok: number;
      failed: number;
      code: number;
      seconds: number;
      completedPerSec: number;
      rssMiB: number;
      /** Absent in results before 2026-12-06. */
      serverCpuSec?: number;
      socketDrops?: number;
    }[];
    best: number;
    rssBeforeMiB: number;
    rssAfterMiB: number;
    rmemDefault?: number;
    server: unknown;
  }
  | { skipped: string }
  | { error: string };

export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A median with the min and max it came from. */
export interface Stat {
  median: number;
  min: number;
  max: number;
}

export function stat(
  runs: Figures[] | undefined,
  pick: (f: Figures) => number,
): Stat {
  const xs = (runs ?? []).map(pick).filter((x) => Number.isFinite(x));
  return {
    median: median(xs),
    min: xs.length ? Math.min(...xs) : NaN,
    max: xs.length ? Math.max(...xs) : NaN,
  };
}

/** `x` with thousands separators and `digits` decimals; "–" for none. */
export function fmt(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return "–";
  return x.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/** "median (min..max)". */
export function range(s: Stat, digits = 0): string {
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}..${
    fmt(s.max, digits)
  })`;
}

function ratio(a: number, b: number): string {
  return Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : "–";
}

/**
 * `a` against `b` in one scenario: the median over rounds of the ratio
 * within each round, whose servers ran back to back. The machine's speed
 * drifts between rounds (B1's raw Deno has ranged 137k-174k msgs/s in one
 * run), and a ratio of two medians taken from different rounds carries that
 * drift; a ratio within a round does not. Runs without a round number (older
 * results) fall back to the ratio of the medians.
 */
function paired(
  a: Figures[] | undefined,
  b: Figures[] | undefined,
  pick: (f: Figures) => number,
): number {
  if (!a || !b) return NaN;
  if (a.some((f) => f.round === undefined)) {
    return stat(a, pick).median / stat(b, pick).median;
  }
  return median(roundRatios(a, b, pick));
}

/** `a` against `b` within each round both ran in. */
function roundRatios(
  a: Figures[],
  b: Figures[],
  pick: (f: Figures) => number,
): number[] {
  return a.flatMap((fa) => {
    const fb = b.find((f) => f.round === fa.round);
    return fb ? [pick(fa) / pick(fb)] : [];
  });
}

/** What the client check found, and the figures the report then uses. */
interface ClientCheck {
  /** The Method section's sentences on it. */
  text: string;
  /** False when a scenario kept too few rounds (see `failed`). */
  isValid: boolean;
  /** Scenarios left with fewer than `MIN_ROUNDS` rounds. */
  failed: string[];
  /** `r` without the rounds the check left out. */
  results: Results;
}

/** The ping-pong scenarios that have a C server and raw Deno to compare. */
const CHECKED = ["B1", "B2", "B11-1k", "B11-16k"];
/** Fewest rounds a scenario must keep for its ratios to count. */
const MIN_ROUNDS = 3;

/**
 * A client at this share of a CPU or more while it drove raw Deno may have
 * set raw Deno's pace (see `clientCheck`).
 */
const CLIENT_BUSY = 0.85;

/**
 * The suite's check that the load client is not the limit, round by round.
 * A round of a ping-pong scenario is left out when the C server did not
 * echo more than raw Deno in it and the client was busy (at `CLIENT_BUSY`
 * of a CPU or more) while it drove raw Deno: then the client, not the
 * servers, set the pace. In the run of 2026-12-05 (a5afd4b) such rounds had
 * the client at 90-97% while it drove raw Deno, against 53-86% in the
 * others, and they pulled every ratio of their round towards 1.
 * The C server alone is not enough: at 1000 connections it is itself
 * client-bound (the client at 97-99% in every round of 2026-12-06), and
 * raw Deno, which serves only part of its connections, outscored it in
 * three rounds with the client at only 58-75%: the client had room, so
 * those rounds measured the servers and are kept.
 * A left-out round is left out of every figure of its scenario
 * (`results.json` keeps it); a scenario left with fewer than `MIN_ROUNDS`
 * (or all of a shorter run's) fails the check. Null when the run has no C
 * or raw Deno figures.
 */
export function clientCheck(r: Results): ClientCheck | null {
  const parts: string[] = [];
  const failed: string[] = [];
  const scenarios = { ...r.scenarios };
  for (const id of CHECKED) {
    const runs = scenarios[id]?.runs;
    if (!runs?.c || !runs.raw) continue;
    const compared = runs.c.filter((c) =>
      c.round !== undefined && runs.raw.some((f) => f.round === c.round)
    );
    const limited = compared.filter((c) => {
      const raw = runs.raw.find((f) => f.round === c.round)!;
      return !(c.msgsPerSec > raw.msgsPerSec) &&
        !(raw.clientCpu / raw.seconds < CLIENT_BUSY);
    }).map((c) => c.round);
    const kept = compared.length - limited.length;
    if (kept < Math.min(MIN_ROUNDS, r.rounds)) failed.push(id);
    if (limited.length > 0) {
      scenarios[id] = {
        ...scenarios[id],
        runs: Object.fromEntries(
          Object.entries(runs).map(([server, figures]) => [
            server,
            figures.filter((f) => !limited.includes(f.round)),
          ]),
        ),
      };
    }
    parts.push(
      `${id}: ${kept} of ${compared.length} rounds` +
        (limited.length > 0 ? ` (left out: round ${limited.join(", ")})` : ""),
    );
  }
  if (parts.length === 0) return null;
  const text = `Checked in this run, round by round: the C server echoed ` +
    `more than raw Deno in the same round, or the client was under ` +
    `${CLIENT_BUSY * 100}% of a CPU while it drove raw Deno, in ` +
    `${parts.join("; ")}. A round in which neither held was paced by the ` +
    `client or the machine, not by the servers: it is left out of every ` +
    `figure of its scenario (tables, ratios, chart), and \`results.json\` ` +
    `keeps it.`;
  return {
    isValid: failed.length === 0,
    failed,
    results: { ...r, scenarios },
    text: failed.length === 0 ? text : `${text} **Fewer than ${MIN_ROUNDS} ` +
      `rounds were left of ${failed.join(", ")}: this run's ` +
      `${failedRows(failed)} are not evidence for or against a target.**`,
  };
}

/** The rows of the targets table that scenarios `ids` give. */
function failedRows(ids: string[]): string {
  return ids.map((id) =>
    id === "B1" || id === "B2"
      ? `${id} ratios (with B3's and B4's rows of ${id})`
      : `${id} ratios`
  ).join(", ");
}

const msgs = (f: Figures) => f.msgsPerSec;
const cpuPerMsg = (f: Figures) => f.serverCpu / f.messages * 1e6;

function table(head: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join(
    "\n",
  );
}

function pingpongTable(
  r: Results,
  id: string,
  isBytes = false,
  baseline = "raw",
): string {
  const scenario = r.scenarios[id];
  if (!scenario) return "";
  const runs = scenario.runs;
  const raw = runs[baseline];
  const vsWhat = baseline === "raw" ? "raw Deno" : r.labels[baseline];
  const rows = Object.keys(runs).map((server) => {
    const rate = stat(runs[server], isBytes ? (f) => f.mbPerSec : msgs);
    const cpu = stat(runs[server], cpuPerMsg);
    return [
      r.labels[server] ?? server,
      range(rate, isBytes ? 1 : 0),
      ratio(paired(runs[server], raw, isBytes ? (f) => f.mbPerSec : msgs), 1),
      range(cpu, 2),
      ratio(paired(runs[server], raw, cpuPerMsg), 1),
      fmt(stat(runs[server], (f) => f.p50Ms).median, 3),
      fmt(stat(runs[server], (f) => f.p99Ms).median, 3),
      fmt(stat(runs[server], (f) => f.jain).median, 4),
      `${
        fmt(stat(runs[server], (f) => f.maxWaitMedianMs ?? NaN).median, 1)
      } / ${fmt(stat(runs[server], (f) => f.maxWaitMs ?? NaN).median, 1)}`,
      range(stat(runs[server], (f) => f.served ?? NaN), 0),
      `${
        fmt(stat(runs[server], (f) => f.clientCpu / f.seconds * 100).median)
      }%`,
    ];
  });
  return `### ${id}: ${scenario.title}\n\n` + table([
    "server",
    isBytes ? "MB/s median (min..max)" : "msgs/s median (min..max)",
    `vs ${vsWhat}`,
    "server CPU µs/msg",
    baseline === "raw" ? "CPU vs raw" : `CPU vs ${vsWhat}`,
    "p50 ms",
    "p99 ms",
    "Jain",
    "longest wait per connection, median / worst ms",
    "connections served",
    "client CPU",
  ], rows) +
    (id === "B2"
      ? b2Note(scenario.runs) + pacedNote(scenario.runs, r.scenarios.B1?.runs) +
        denoNodeNote(scenario.runs, r.scenarios.B1?.runs)
      : id === B2I
      ? b2InterleavedNote(r)
      : id === "B1" || id.startsWith("B11")
      ? cancellableNote(
        scenario.runs,
        id.slice(0, 3),
        isBytes ? "MB/s" : "msgs/s",
      )
      : "");
}

/**
 * What Deno's own node:net says about B2's p99 and fairness: whether a fair
 * server with a low tail exists on this runtime.
 */
function denoNodeNote(
  runs: Record<string, Figures[]>,
  b1Runs: Record<string, Figures[]> | undefined,
): string {
  const id = "deno-node";
  if (!runs[id] || !runs.raw || !runs.corio) return "";
  const med = (server: string, pick: (f: Figures) => number) =>
    stat(runs[server], pick).median;
  const p99 = (f: Figures) => f.p99Ms;
  const jain = med(id, (f) => f.jain);
  const isFairAndQuick = jain >= 0.99 && med(id, p99) <= med("raw", p99);
  const verdict = isFairAndQuick
    ? "so a fair server whose p99 is no worse than raw Deno's exists on this runtime, through that path rather than `Deno.Conn.read`"
    : "so in this run it did not show a fair server with raw Deno's p99";
  const atFifty = b1Runs?.[id] && b1Runs.raw
    ? ` At 50 connections it does ${
      fix(paired(b1Runs[id], b1Runs.raw, msgs))
    }× raw Deno's msgs/s at ${
      fix(paired(b1Runs[id], b1Runs.raw, cpuPerMsg))
    }× its CPU per message (corio ${
      fix(paired(b1Runs.corio, b1Runs.raw, msgs))
    }× and ${fix(paired(b1Runs.corio, b1Runs.raw, cpuPerMsg))}×).`
    : "";
  return `\n\nThe node:net under Deno row is \`bench/servers/node_echo.mjs\` run by Deno: Deno's node:net reads through a native stream wrap that calls back for each socket with data, with no promise per read. At 1000 connections it serves ${
    fmt(med(id, (f) => f.served ?? NaN), 0)
  } of 1000 with Jain ${fmt(jain, 4)} and a p99 of ${
    fmt(med(id, p99), 1)
  } ms (corio ${fmt(med("corio", p99), 1)} ms, raw Deno ${
    fmt(med("raw", p99), 1)
  } ms) at ${
    fix(paired(runs[id], runs.raw, msgs))
  }× raw Deno's msgs/s, ${verdict}.${atFifty}`;
}

/** What the paced raw server says about B2's ≥ 1.0× raw target. */
function pacedNote(
  runs: Record<string, Figures[]>,
  b1Runs: Record<string, Figures[]> | undefined,
): string {
  if (!runs["raw-paced"] || !runs.raw || !runs.corio) return "";
  const vs = (a: string, b: string, pick = msgs) =>
    fix(paired(runs[a], runs[b], pick));
  const pacedVsRaw = paired(runs["raw-paced"], runs.raw, msgs);
  const verdict = pacedVsRaw < 1
    ? 'so in this run pacing as corio does kept even a hand-written server below "≥ 1.0× raw"'
    : "so in this run fairness cost a hand-written server nothing measurable";
  return `\n\nThe paced raw row is \`bench/servers/raw_deno_echo.ts\` with that same rule (it imports \`src/_io_pacer.ts\`) and no other library code: fair service alone takes a hand-written Deno server to ${
    vs("raw-paced", "raw")
  }× raw Deno's msgs/s at ${
    vs("raw-paced", "raw", cpuPerMsg)
  }× its CPU per message, ${verdict}. corio is ${
    vs("corio", "raw-paced")
  }× the paced raw server (CPU per message ${
    vs("corio", "raw-paced", cpuPerMsg)
  }×), with \`function*\` handlers ${vs("corio-sync", "raw-paced")}×.${
    pacedFloorNote(runs, b1Runs)
  }`;
}

/** What the paced floor says: the least fair typed handlers can cost. */
function pacedFloorNote(
  runs: Record<string, Figures[]>,
  b1Runs: Record<string, Figures[]> | undefined,
): string {
  if (!runs["floor-paced"]) return "";
  const vs = (a: string, b: string, pick = msgs) =>
    fix(paired(runs[a], runs[b], pick));
  return ` The paced floor row is the floor server with the same rule (\`bench/servers/floor_echo.ts --paced\`): typed \`yield*\` in an \`async function*\` per connection, served fairly, and no library. It reaches ${
    vs("floor-paced", "raw")
  }× raw Deno's msgs/s. corio is ${
    vs("corio", "floor-paced")
  }× the paced floor (CPU per message ${
    vs("corio", "floor-paced", cpuPerMsg)
  }×): corio's own cost at 1000 connections${
    b1Runs?.floor
      ? `, against ${
        fix(paired(b1Runs.corio, b1Runs.floor, msgs))
      }× the floor at 50`
      : ""
  }.${pacedCancellableNote(runs)}`;
}

/** B2's scenario with its servers interleaved (throughput, B3 at 1000). */
const B2I = "B2-interleaved";

/**
 * Why B2's throughput comes from the interleaved scenario: corio / raw
 * Deno round by round, one after the other (B2) and interleaved.
 */
function b2InterleavedNote(r: Results): string {
  const spread = (id: string) => {
    const runs = r.scenarios[id]?.runs;
    if (!runs?.corio || !runs.raw) return "–";
    const ratios = roundRatios(runs.corio, runs.raw, msgs);
    return `${fix(Math.min(...ratios))}–${fix(Math.max(...ratios))}`;
  };
  const raw = r.scenarios.B2?.runs.raw ?? [];
  return `\n\nB2 runs its servers one after another, and raw Deno's msgs/s at 1000 connections swings with how many connections it happens to starve: in B2 above it ranged ${
    range(stat(raw, msgs), 0)
  } msgs/s, serving ${
    range(stat(raw, (f) => f.served ?? NaN), 0)
  } connections, and corio / raw Deno round by round ranged ${
    spread("B2")
  }. Here the same servers start together and the client drives them in turns, as in B1, and corio / raw Deno ranged ${
    spread(B2I)
  } round by round: the targets table takes B2's throughput, and B3's ratio at 1000 connections, from here. Fairness, p99 and the longest wait come from B2, since a turn (0.25 s) is shorter than the stalls they show: here every server's connections idle between its turns, and raw Deno's stalls end with each pause.`;
}

/** Baselines reported against raw Deno and corio in B1/B2, with their rows' text. */
const BASELINES = [
  [
    "floor",
    "floor (typed `yield*` in an async function* over Deno's promises, nothing else) / raw Deno msgs/s; corio / floor",
  ],
  [
    "raw-paced",
    "raw Deno paced by corio's read pacing (fair, no library) / raw Deno msgs/s; corio / paced raw",
  ],
  [
    "floor-paced",
    "floor paced the same way (fair typed `yield*`, no library) / raw Deno msgs/s; corio / paced floor",
  ],
  [
    "floor-cancellable",
    "floor with cancellable waits (a promise of its own per wait, as timeouts and cancellation need; no library) / raw Deno msgs/s; corio / it",
  ],
  [
    "floor-paced-cancellable",
    "paced floor with cancellable waits (fair, no library) / raw Deno msgs/s; corio / it",
  ],
  [
    "floor-sync",
    "floor for `function*` handlers (a bare generator driven by a loop over Deno's promises; no library) / raw Deno msgs/s; corio `function*` / it",
    "corio-sync",
  ],
] as const;

/**
 * What the cancellable floor says about B1's (or B11's) target: the least
 * any library whose waits a deadline or a cancel can end pays in the
 * documented form.
 */
function cancellableNote(
  runs: Record<string, Figures[]>,
  target: string,
  unit: string,
): string {
  const id = "floor-cancellable";
  if (!runs[id] || !runs.raw || !runs.corio) return "";
  const vs = (a: string, b: string, pick = msgs) =>
    fix(paired(runs[a], runs[b], pick));
  const floorVsRaw = paired(runs[id], runs.raw, msgs);
  const verdict = floorVsRaw < 0.95
    ? `below ${target}'s ≥ 0.95 with no library code at all, so in this run no library whose waits can time out or be cancelled could meet ${target} with \`async function*\` handlers`
    : `so ${target}'s ≥ 0.95 leaves a library with timeouts and cancellation ${
      ((floorVsRaw - 0.95) * 100).toFixed(1)
    }% of raw Deno's ${unit} for its own work`;
  return `\n\nThe cancellable floor row is \`bench/servers/floor_echo.ts --cancellable\`: the floor, with each wait a promise of the server's own that the socket's promise settles. A wait that a deadline or a cancel can end while its read stays in flight (so no bytes are lost) needs one, because only its holder can settle what the generator awaits; nothing ends a wait early here, so the row is what that promise costs. It reaches ${
    vs(id, "raw")
  }× raw Deno's ${unit} (CPU per message ${
    vs(id, "raw", cpuPerMsg)
  }×), ${verdict}. corio is ${vs("corio", id)}× it (CPU per message ${
    vs("corio", id, cpuPerMsg)
  }×): its own work beyond what any such library pays.`;
}

/** The same for B2: the least a fair server with timeouts can cost. */
function pacedCancellableNote(runs: Record<string, Figures[]>): string {
  const id = "floor-paced-cancellable";
  if (!runs[id] || !runs.raw || !runs.corio) return "";
  const floorVsRaw = paired(runs[id], runs.raw, msgs);
  const verdict = floorVsRaw < 0.95
    ? "below issue 2's 0.95 and B2's 1.0 with no library code at all"
    : floorVsRaw < 1
    ? "between issue 2's 0.95 and B2's 1.0"
    : "at or above B2's 1.0";
  return ` With cancellable waits as well (\`--paced --cancellable\`), the least a fair server whose waits can time out or be cancelled can cost, it reaches ${
    fix(floorVsRaw)
  }×, ${verdict}; corio is ${
    fix(paired(runs.corio, runs[id], msgs))
  }× that floor.`;
}

/** B2's note, with this run's p99 for corio. */
function b2Note(runs: Record<string, Figures[]>): string {
  const p99 = stat(runs.corio ?? [], (f) => f.p99Ms).median;
  return B2_NOTE.replace(
    "and a p99 of 50–100 ms.",
    `and a p99 of ${fmt(p99, 0)} ms in this run (50–100 ms in earlier runs).`,
  );
}

const B2_NOTE =
  "\n\nConnections served = those with at least one reply in the measured window. At 1000 connections Deno 2.9.6 starves connections under a plain `Deno.listen` server: once more reads complete in one event-loop iteration than about 128 (`strace`: 128 reads per `epoll_wait`, tokio's cooperative budget), it keeps completing the reads of the connections answered fastest, and reads whose bytes already sit in the socket wait (`ss` showed the message in the receive queue of every stalled connection). In a 2 s run of the raw server the median connection's longest gap between two replies was 1.6 s, 360–1000 of 1000 connections got any reply, and the stalls ended together when the load stopped; the C server and Node serve all 1000. corio counts reads per iteration and, past 128, starts the next reads on the next timer turn (`src/_io_pacer.ts`), so it serves all 1000 evenly. The price, at 1000 connections only: fewer messages/s and more CPU per message (raw Deno's figure comes partly from serving the same fast connections over and over, their reads completing at once without a round trip through the runtime's queue), and a p99 of 50–100 ms. p99 counts messages, so a connection left waiting 2 s adds one sample to it; the column \"longest wait per connection\" shows starvation instead: each connection's longest wait for a reply within the measured window (an unanswered message counts by its age at the window's end, so the window's length is the most it can show). At 50 connections the rule never deferred a read (counted in a 2 s run; at 200 connections it deferred 27% of them). At 1000 it defers about half of them (60–64k of 107–129k reads a second), and 128 is the runtime's budget, not a tuning choice: with 192 or 256 in its place corio starved connections again (3 alternated rounds each: 777–1000 of 1000 served, Jain 0.30–0.45, against 1000 served and Jain 0.98–0.99 with 128).";

function idleTable(r: Results): string {
  const scenario = r.scenarios.B8;
  if (!scenario) return "";
  const runs = scenario.runs;
  const rows = Object.keys(runs).map((id) => [
    r.labels[id] ?? id,
    range(stat(runs[id], (f) => f.rssPerConn / 1024), 2),
    ratio(paired(runs[id], runs.raw, (f) => f.rssPerConn), 1),
    ratio(paired(runs[id], runs.node, (f) => f.rssPerConn), 1),
    id === "c" ? "–" : range(stat(runs[id], (f) => f.heapPerConn / 1024), 2),
    id === "c"
      ? "–"
      : range(stat(runs[id], (f) => f.externalPerConn / 1024), 2),
    range(stat(runs[id], (f) => f.newSpaceMiB ?? NaN), 1),
  ]);
  return `### B8: ${scenario.title}\n\n` + table([
    "server",
    "RSS KiB/conn",
    "vs raw Deno",
    "vs Node",
    "JS heap KiB/conn",
    "external KiB/conn",
    "V8 young generation MiB after",
  ], rows) +
    "\n\nRSS is read after a full GC, and still holds heap pages V8 keeps committed: old-space pages that are not full, and the young generation, which grows while the burst of long-lived connection objects survives scavenges and is not given back (its size after the run: last column). That growth is a step function of the bytes that survived: at 10,000 connections the same corio server has shown 26.8 and 44.8 MiB of young generation in two runs, 1.8 KiB of RSS per connection apart." +
    idleFloorNote(runs);
}

/** What the floor server says about B8's ≤ 1.05× raw target. */
function idleFloorNote(runs: Record<string, Figures[]>): string {
  if (!runs.floor || !runs.raw || !runs.corio) return "";
  const med = (id: string, f: (x: Figures) => number) =>
    stat(runs[id], f).median;
  const heap = (id: string) => med(id, (f) => f.heapPerConn);
  const kib = (bytes: number) => (bytes / 1024).toFixed(2);
  return `\n\nThe floor server is no library at all: an \`async function*\` per connection whose typed \`yield*\` reads and writes are bare promise wrappers. It already holds ${
    kib(heap("floor") - heap("raw"))
  } KiB more JS heap per idle connection than raw Deno's \`async function\` (the async generator, its queued request and the promise its \`yield*\` awaits) and ${
    ratio(paired(runs.floor, runs.raw, (f) => f.rssPerConn), 1)
  } its RSS, so "≤ 1.05× raw Deno" cannot be met by any handler written as the documented \`async function*\`. corio ${
    heap("corio") >= heap("floor")
      ? `adds ${kib(heap("corio") - heap("floor"))} KiB of heap on top of`
      : `holds ${kib(heap("floor") - heap("corio"))} KiB less heap than`
  } the floor, though it holds the connection, the coroutine record, the reusable receive, the server's slot and connection info, and the async context through which an operation finds its coroutine (about 0.5 KiB in a heap snapshot: Deno's \`AsyncLocalStorage\` makes a dictionary-mode object and a \`WeakMap\` entry per context): its idle handlers, once compacted, wait by a yield, without the promise and resolving functions the floor's \`yield*\` awaits.${
    runs["corio-sync"]
      ? ` A \`function*\` handler, which needs no async context, holds ${
        kib(heap("corio-sync"))
      } KiB of heap against ${kib(heap("corio"))} for \`async function*\`.`
      : ""
  }${syncFloorSentence(runs)}${
    runs.node
      ? ` Raw Deno itself, a hand-written server with the same 1 KiB read pending on each connection, holds ${
        ratio(paired(runs.raw, runs.node, (f) => f.rssPerConn), 1)
      } Node's RSS per idle connection: on Deno 2.9.6 "≤ 2× Node" is out of reach before any library code runs.`
      : ""
  }

Measured by hand, not in this run (\`deno task idle-rss --pads 64,128,240 raw floor-sync corio-sync corio\`: 10,000 idle connections held 36 s, 3 rounds, on the code of 43f7040): after 15–30 s of idle, V8's memory reducer gives the young generation back (0.5 MiB for every server), and RSS per connection settles at 4.53 KiB for raw Deno, 4.74 for the \`function*\` floor (1.046×), 4.77 for that floor holding 64 B more (1.053×), 4.84 with 128 B more (1.069×), 4.99 with 240 B more (1.101×), 5.35 for corio's \`function*\` handler (1.18×) and 5.54 for its \`async function*\` one (1.22×). So settled, B8's ≤ 1.05× leaves a library of \`function*\` handlers less than 64 B of heap per idle connection over a bare generator and the loop that drives it (at 1 s, less than 128 B). A V8 object here costs 24 B of header and 8 B per field (\`Connection\`: 26 fields, 232 B): 64 B is one object of five fields, while corio's \`function*\` handler holds 0.45 KiB more than the floor (its connection 232 B, coroutine record 184 B, pending receive 160 B and server slot 104 B, less the floor's own driver, I/O record and views, about 210 B). Meeting the target would take those four records in under 280 B together, fewer fields than the timeouts, the cap's eviction order, cancellation and the reuse of operations and views need: on Deno 2.9.6 it is out of reach for corio's design, and for any library whose handlers hold a connection object and a coroutine record of its own beside a floor this close to the target. On an earlier run's code the \`async function*\` floor settled at 1.22× raw Deno and Node at 1.39 KiB, raw Deno 3.2× Node. The table reads RSS 1 s after the connections are idle, before that.`;
}

/** What the `function*` floor says about B8's target, when it ran. */
function syncFloorSentence(runs: Record<string, Figures[]>): string {
  if (!runs["floor-sync"]) return "";
  const rss = paired(runs["floor-sync"], runs.raw, (f) => f.rssPerConn);
  const heap = (id: string) => stat(runs[id], (f) => f.heapPerConn).median;
  const kib = (bytes: number) => (bytes / 1024).toFixed(2);
  return ` The floor for \`function*\` handlers (\`floor_echo.ts --sync\`: a bare generator whose reads and writes a loop performs, no library) holds ${
    kib(heap("floor-sync") - heap("raw"))
  } KiB more heap than raw Deno and ${ratio(rss, 1)} its RSS${
    Number(rss.toFixed(2)) > 1.05
      ? ": above the target as well, so in this run no handler of either form could meet it"
      : ": within the target, so a `function*` handler has room"
  }${
    runs["corio-sync"]
      ? `; corio's \`function*\` handler holds ${
        kib(heap("corio-sync") - heap("floor-sync"))
      } KiB more than it (\`deno task heap\` lists them, object by object)`
      : ""
  }.${padSentence(runs)}`;
}

/** What 240 B more per connection does to the `function*` floor's RSS. */
function padSentence(runs: Record<string, Figures[]>): string {
  if (!runs["floor-sync-pad"] || !runs["floor-sync"]) return "";
  const rss = paired(runs["floor-sync-pad"], runs.raw, (f) => f.rssPerConn);
  const young = (id: string) =>
    stat(runs[id], (f) => f.newSpaceMiB ?? NaN).median.toFixed(1);
  return ` The same floor holding 240 B more per connection (an array and nothing else: as much as corio's \`Connection\` object alone) is at ${
    ratio(rss, 1)
  } raw Deno's RSS${
    Number(rss.toFixed(2)) > 1.05
      ? ": past the target, so a `function*` library has less than 240 B of heap per connection to spend over a bare generator, for its connection, its coroutine record, its receive and its server's bookkeeping together"
      : ": still within the target"
  }. RSS grows faster than the heap: the young generation V8 keeps after the burst grows with the bytes that survived it (${
    young("floor-sync")
  } MiB for the floor, ${young("floor-sync-pad")} with the 240 B${
    runs["corio-sync"]
      ? `, ${young("corio-sync")} for corio's \`function*\` handler`
      : ""
  }).`;
}

function burstTable(r: Results): string {
  const scenario = r.scenarios.B9;
  if (!scenario) return "";
  const runs = scenario.runs;
  const rows = Object.keys(runs).map((id) => [
    r.labels[id] ?? id,
    range(stat(runs[id], (f) => f.seconds), 3),
    ratio(paired(runs[id], runs.node, (f) => f.seconds), 1),
    fmt(stat(runs[id], (f) => f.completed).median),
    fmt(stat(runs[id], (f) => f.errors).median),
  ]);
  return `### B9: ${scenario.title}\n\n` + table([
    "server",
    "seconds median (min..max)",
    "vs Node",
    "echoed",
    "connect retries",
  ], rows) +
    "\n\nraw Deno listens with Deno's default backlog, node:net with Node's (511); corio's default is 4096. The times come in steps of about one second (1.2, 2.2, 3.2 s): 10,000 connects arrive faster than any of the JS servers accepts them, the listen queue overflows (`netstat -s`: \"SYNs to LISTEN sockets dropped\"), and a connection whose handshake was dropped completes when the kernel retries it a second later. A round's time is how many retries its slowest connection needed, so the median of a server can move a whole step between runs; only the C server, which accepts in a tight loop, drains the queue in time. `serve({ acceptQueues: 4 })` listens with four sockets on the port (SO_REUSEPORT; needs `--unstable-net`), each with its own queue of 4096: the kernel spreads the burst over them, none overflows, and no client waits for a retry. It accepts no faster; its queues hold the burst while it accepts.";
}

const fix = (x: number) => Number.isFinite(x) ? x.toFixed(2) : "–";
/** `got` to 2 decimals, or 3 where 2 would read as the target itself. */
const onTheLine = (got: number, target: number) =>
  got !== target && got.toFixed(2) === target.toFixed(2)
    ? got.toFixed(3)
    : got.toFixed(2);

/** The targets of issues 2 and 5, each with its measured figure. */
function targets(r: Results): string[][] {
  const s = r.scenarios;
  const p = (id: string, a: string, b: string, pick = msgs) =>
    paired(s[id]?.runs[a], s[id]?.runs[b], pick);
  const rows: string[][] = [];
  const add = (
    id: string,
    what: string,
    target: number,
    got: number,
    isMax = false,
  ) =>
    rows.push([
      id,
      what,
      `${isMax ? "≤" : "≥"} ${target.toFixed(2)}`,
      Number.isFinite(got) ? onTheLine(got, target) : "–",
      !Number.isFinite(got)
        ? "–"
        : (isMax ? got <= target : got >= target)
        ? "yes"
        : "**no**",
    ]);
  // B1 for both handler forms a user can write.
  for (
    const [server, form, note] of [
      ["corio", "corio", ", 50 conns (issue 2: 0.90)"],
      ["corio-sync", "corio `function*`", ""],
    ]
  ) {
    add("B1", `${form} / raw Deno msgs/s${note}`, 0.95, p("B1", server, "raw"));
    add(
      "B1",
      `${form} / raw Deno CPU per msg`,
      1.05,
      p("B1", server, "raw", cpuPerMsg),
      true,
    );
  }
  // B2's throughput from its interleaved scenario where the run has it.
  const b2Rate = s[B2I] ? B2I : "B2";
  add(
    "B2",
    `corio / raw Deno msgs/s, 1000 conns (issue 2: 0.95)${
      b2Rate === B2I ? `, interleaved (${B2I})` : ""
    }`,
    1.0,
    p(b2Rate, "corio", "raw"),
  );
  add(
    "B2",
    "corio / raw Deno p99",
    1.0,
    p("B2", "corio", "raw", (f) => f.p99Ms),
    true,
  );
  // "No worse" with the index's third decimal as noise.
  add(
    "B2",
    "corio / raw Deno Jain index",
    0.995,
    p("B2", "corio", "raw", (f) => f.jain),
  );
  add(
    "B2",
    "corio / raw Deno longest wait per connection (median over connections)",
    1.0,
    p("B2", "corio", "raw", (f) => f.maxWaitMedianMs ?? NaN),
    true,
  );
  // Context: each baseline against raw Deno, and corio against it. The
  // floor: typed yield* in an async function* over Deno's promises with no
  // scheduler at all (bench/servers/floor_echo.ts); the paced ones (B2): the
  // same servers made fair by corio's read pacing.
  const baselineRows = (
    id: string,
    label: (what: string) => string,
    pick = msgs,
  ) => {
    for (const [baseline, what, against = "corio"] of BASELINES) {
      if (!s[id]?.runs[baseline]) continue;
      rows.push([
        id.slice(0, id.startsWith("B11") ? 3 : 2),
        label(what),
        "report",
        `${fix(p(id, baseline, "raw", pick))}; ${
          fix(p(id, against, baseline, pick))
        }`,
        "–",
      ]);
    }
  };
  for (const id of ["B1", "B2", B2I]) {
    if (id === B2I) {
      baselineRows(id, (what) => `${what}, interleaved (${B2I})`);
      continue;
    }
    baselineRows(id, (what) => what);
    add(
      "B3",
      `corio with 30 s recv timeout / raw Deno, ${id} (issue 2)`,
      id === "B1" ? 0.90 : 0.95,
      p(id, "corio-timeout", "raw"),
    );
    // At 1000 connections from its own interleaved scenario where the run
    // has it: one after the other, B2's servers drift apart by more than
    // the 3% this ratio is about.
    const b3 = id === "B2" && s[B2I] ? B2I : id;
    add(
      "B3",
      `corio with / without recv timeout, ${id}${
        b3 === id ? "" : `, interleaved (${B2I})`
      }`,
      0.97,
      p(b3, "corio-timeout", "corio"),
    );
    // The same for B4: at 1000 connections, one after the other, it read
    // 0.89-1.27 over three runs.
    const b4 = id === "B2" && s[B2I]?.runs["corio-untyped"] ? B2I : id;
    add(
      "B4",
      `typed async function* / plain-yield untyped, ${id}${
        b4 === id ? "" : `, interleaved (${B2I})`
      }`,
      0.97,
      p(b4, "corio", "corio-untyped"),
    );
  }
  const rss = (f: Figures) => f.rssPerConn;
  add(
    "B8",
    "corio / raw Deno RSS per idle connection",
    1.05,
    p("B8", "corio", "raw", rss),
    true,
  );
  add(
    "B8",
    "corio / Node RSS per idle connection",
    2.0,
    p("B8", "corio", "node", rss),
    true,
  );
  const secs = (f: Figures) => f.seconds;
  add(
    "B9",
    "corio / Node accept-burst time",
    1.0,
    p("B9", "corio", "node", secs),
    true,
  );
  add(
    "B9",
    "corio with `acceptQueues: 4` / Node accept-burst time",
    1.0,
    p("B9", "corio-queues", "node", secs),
    true,
  );
  add(
    "B10",
    "capped (1000 of 2000) / uncapped corio at 1000, same round",
    0.95,
    p("B10", "corio-cap", "corio"),
  );
  const mb = (f: Figures) => f.mbPerSec;
  for (const id of ["B11-1k", "B11-16k"]) {
    const size = id.slice(4);
    add(
      "B11",
      `corio / raw Deno MB/s, ${size}`,
      0.95,
      p(id, "corio", "raw", mb),
    );
    add(
      "B11",
      `corio \`function*\` / raw Deno MB/s, ${size}`,
      0.95,
      p(id, "corio-sync", "raw", mb),
    );
    baselineRows(
      id,
      (what) => `${size}: ${what.replace("msgs/s", "MB/s")}`,
      mb,
    );
  }
  if (r.microFigures) microTargets(r.microFigures, add);
  rows.push(poolTarget(r.pool), sipTarget(r.sip));
  return rows;
}

function interleaveText(
  { scenarios, slice, settle }: NonNullable<Results["interleave"]>,
  duration: number,
): string {
  return `- ${
    scenarios.join(", ")
  } run interleaved: a round's servers start together, each with its own connections, and the one client drives them one server at a time in turns of ${slice} s (the first ${settle} s of a turn unmeasured: the last server's replies still in flight) until each had ${duration} s measured, its CPU and round trips counted in its own turns only. A shared machine's speed can swing from one second to the next (on the 2-core VM this suite was built on, 12 back-to-back 1 s runs of one raw Deno server gave 61k to 91k msgs/s); in turns, a slow spell falls on every server alike instead of on whichever ran through it. The other ping-pong scenarios run one server after another: B2's longest wait per connection needs a window longer than a turn.`;
}

function b7Note(figures: MicroFigures | undefined): string {
  if (!figures) return "";
  const { corio, setTimeout } = figures.b7;
  const share = (f: Record<string, number>) =>
    `${(f.firesPerSec / f.idealFiresPerSec * 100).toFixed(0)}%`;
  return `\n\nBoth forms sleep the same delays, so the delays bound fires/s: 10,000 loops at a mean of 50.5 ms give ${
    fmt(setTimeout.idealFiresPerSec)
  } fires/s if every timer fired on time. \`setTimeout\` already reaches ${
    share(setTimeout)
  } of that and corio ${
    share(corio)
  }, so B7's "≥ 3× the fires/s" cannot be met by any timer in this benchmark; what a cheaper timer buys here is CPU. CPU counts every thread of the process (V8's collector included), as \`process.cpuUsage()\` does.${
    floorNote(figures)
  }`;
}

/**
 * `form` against `setTimeout` in B7: paired by round like the servers'
 * ratios, or the ratio of the medians for results without rounds.
 */
function b7Ratio(
  { b7, b7Runs }: MicroFigures,
  key: string,
  form = "corio",
): number {
  const runs = b7Runs?.[form];
  return runs
    ? paired(runs, b7Runs!.setTimeout, (f) => f[key])
    : b7[form as "corio"][key] / b7.setTimeout[key];
}

function floorNote(figures: MicroFigures): string {
  const { corio, floor } = figures.b7;
  if (!floor) return "";
  const us = (f: Record<string, number>) => f.cpuUsPerFire.toFixed(2);
  return `\n\nThe floor row is what the CPU goal asks of the mechanism itself: bare generators that yield a number, on the same deadline queue, with one \`setTimeout\`, use ${
    us(floor)
  } µs per fire, ${
    b7Ratio(figures, "cpuPerSec", "floor").toFixed(2)
  }× \`setTimeout\`'s CPU. corio uses ${
    us(corio)
  } µs: the rest is the scheduler's bookkeeping around each delay (unpark, resume, the checks for signals, cancellation and idle clocks when it parks again). A delay of whole milliseconds under a second is one operation per value, shared by the coroutines that wait it, so these loops allocate nothing per wait. Each loop here is a closure of its own, and each closure's generator objects get a hidden class of their own, so \`gen.next(x)\` over 10k loops is a megamorphic load and call (in \`perf\`, V8's \`LoadIC_Megamorphic\` alone took 0.19 µs per fire): corio and the floor both step a \`function*\` with the generator prototype's own \`next\` instead, one known function, which took corio's CPU per fire from 1.87..2.59 to 1.33..1.90 µs and the floor's from 1.43..2.20 to 1.06..1.37 µs (5 alternated 3 s runs of \`bench/timers_bench.ts --b7\`, 2026-12-05).`;
}

/** B5, B6 and B7's targets. */
function microTargets(
  figures: MicroFigures,
  add: (
    id: string,
    what: string,
    target: number,
    got: number,
    isMax?: boolean,
  ) => void,
): void {
  const { ops, b6 } = figures;
  // The worst of the documented form's cases: immediate, parked, ready.
  const typedAsync = ops.filter((o) =>
    o.name.startsWith("async function*, yield*")
  );
  add(
    "B5",
    "ns per operation, `async function*` with `yield*` (worst case)",
    250,
    Math.max(...typedAsync.map((o) => o.nsPerOp)),
    true,
  );
  add(
    "B5",
    "microtask turns per operation, `async function*` with `yield*` (worst case)",
    3,
    Math.max(...typedAsync.map((o) => o.turnsPerOp)),
    true,
  );
  add(
    "B6",
    "deadline queue / `setTimeout`+`clearTimeout`, arm+cancel with 100k pending",
    0.10,
    b6.queueArmCancelNs / b6.timerArmCancelNs,
    true,
  );
  add(
    "B6",
    "bytes per pending deadline",
    100,
    b6.queueBytesPerEntry,
    true,
  );
  add(
    "B7",
    "corio / `setTimeout` fires/s, 10k loops of delay(1..100 ms) (see B7)",
    3,
    b7Ratio(figures, "firesPerSec"),
  );
  add(
    "B7",
    "corio / `setTimeout` CPU per second, same loops",
    1 / 3,
    b7Ratio(figures, "cpuPerSec"),
    true,
  );
}

/** B12's median requests/s, pool and per request. */
function poolMedians(pool: Exclude<PoolResults, { error: string }>) {
  const toStat = (xs: number[]) => stat(xs.map((x) => ({ x })), (f) => f.x);
  return {
    pool: toStat(pool.results.pool),
    perRequest: toStat(pool.results.perRequest),
  };
}

function poolTarget(pool: PoolResults | undefined): string[] {
  const row = (measured: string) => [
    "B12",
    "pool of 10 vs one connection per request, requests/s",
    "report",
    measured,
    "–",
  ];
  if (!pool) return row("not run");
  if ("error" in pool) return row(`failed: ${pool.error}`);
  const m = poolMedians(pool);
  return row(
    `${fmt(m.pool.median)} vs ${fmt(m.perRequest.median)}: ${
      ratio(m.pool.median, m.perRequest.median)
    }`,
  );
}

/** The run at the highest offered rate with 0 failures. */
function bestRun(sip: Extract<SipResults, { runs: unknown }>) {
  return sip.runs.find((run) => run.rate === sip.best);
}

function sipTarget(sip: SipResults | undefined): string[] {
  const row = (measured: string, met = "–") => [
    "B13",
    "highest offered SIP call rate (sipp → `examples/sip_uas.ts`) completed with 0 failures",
    "report; goal ≥ 1000 calls/s",
    measured,
    met,
  ];
  if (!sip) return row("not run");
  if ("skipped" in sip) return row(`not run: ${sip.skipped}`);
  if ("error" in sip) return row(`failed: ${sip.error}`);
  const isTop = sip.best === sip.rates[sip.rates.length - 1];
  const completed = bestRun(sip)?.completedPerSec;
  return row(
    `${fmt(sip.best)} calls/s offered${isTop ? " (highest tried)" : ""}, ${
      fmt(completed ?? NaN)
    } completed/s; RSS ${fmt(sip.rssBeforeMiB, 1)} → ${
      fmt(sip.rssAfterMiB, 1)
    } MiB`,
    sip.best >= 1000 ? "yes" : "**no**",
  );
}

function poolSection(r: Results): string {
  const pool = r.pool;
  if (!pool) return "";
  const title = "### B12: pool of 10 connections vs one connection per request";
  if ("error" in pool) return `${title}\n\nFailed: ${pool.error}`;
  const m = poolMedians(pool);
  return `${title} (\`bench/pool_bench.ts\`; ${pool.clients} client coroutines, ${
    fmt(pool.requests)
  } requests per round and mode, ${pool.rounds} round(s))\n\n` + table([
    "mode",
    "requests/s median (min..max)",
    "vs one connection per request",
  ], [
    [
      `\`Pool\` of ${pool.poolSize} connections`,
      range(m.pool),
      ratio(m.pool.median, m.perRequest.median),
    ],
    [
      "one connection per request (connect, send, receive, close)",
      range(m.perRequest),
      "1.00×",
    ],
  ]) +
    "\n\nOne request = one line sent and its echo received from `examples/echo_server.ts`, a separate process on loopback; the two modes alternate within each round, after one warm-up round of each.";
}

function sipSection(r: Results): string {
  const sip = r.sip;
  if (!sip) return "";
  const title = "### B13: SIP calls/s with zero failures";
  if ("skipped" in sip) return `${title}\n\nNot run: ${sip.skipped}.`;
  if ("error" in sip) return `${title}\n\nFailed: ${sip.error}`;
  const last = sip.runs[sip.runs.length - 1];
  const best = bestRun(sip);
  // Below 90% of the offered rate, calls queue: the server is saturated.
  const isSaturated = best !== undefined &&
    best.completedPerSec < 0.9 * best.rate;
  const stopped = last && last.rate !== sip.best
    ? `; ${fmt(last.rate)} calls/s failed, so higher rates were not tried`
    : isSaturated
    ? " (the highest rate tried; calls completed slower than offered there: below, what held them back)"
    : sip.best === sip.rates[sip.rates.length - 1]
    ? " (the highest rate tried: the limit may be higher)"
    : "";
  return `${title} (\`bench/sip_bench.ts\`; sipp's built-in \`uac\` scenario against \`examples/sip_uas.ts\` over UDP, ${sip.seconds} s per offered rate)\n\n` +
    table(
      [
        "offered calls/s",
        "calls",
        "successful",
        "failed",
        "sipp exit",
        "completed calls/s",
        "server RSS after, MiB",
        "server CPU, % of a core",
        "datagrams dropped at the server's socket",
      ],
      sip.runs.map((run) => [
        fmt(run.rate),
        fmt(run.calls),
        fmt(run.ok),
        fmt(run.failed),
        String(run.code),
        fmt(run.completedPerSec),
        fmt(run.rssMiB, 1),
        fmt(100 * (run.serverCpuSec ?? NaN) / run.seconds),
        fmt(run.socketDrops ?? NaN),
      ]),
    ) +
    `\n\nHighest offered rate completed with 0 failures: **${
      fmt(sip.best)
    } calls/s**${stopped}, at ${
      fmt(best?.completedPerSec ?? NaN)
    } completed calls/s. Server RSS ${
      fmt(sip.rssBeforeMiB, 1)
    } MiB before the first run, ${
      fmt(sip.rssAfterMiB, 1)
    } MiB after the last. One run per rate (not rounds); completed calls/s = successful calls / wall time of the sipp run, startup and call teardown included.\n\nThe server's RSS grows over the runs because it keeps, for 32 s after each BYE (RFC 3261 Timer J, over UDP), the answer a retransmitted BYE must get again, and the runs follow each other within that window; the calls sipp has in flight at once (up to 20,000) come on top. A call's coroutine ends when it has answered the BYE, and the answer waits out Timer J in a table of completed transactions (\`examples/sip/completed.ts\`): a key and the response's text, 395 B of JS heap per call (1.16 KiB while it kept the parsed response, whose arrays and header values, slices of the request's lines, weigh more than its text; 50,000 answers to BYE kept, heap after a full GC), where a coroutine that waited out Timer J itself held the call's INVITE, BYE, suspended generators and inbox, 8.59 KiB per call (10,000 calls through the UAS on a virtual clock, heap read after a full GC, 2026-12-06). Measured apart from this run, the two side by side on one machine (one sipp run per rate up to 8,000 calls/s offered, 2026-12-06): the lingering coroutines' heap made the server slower the longer the series ran: it completed 2,641 calls/s at 4,000 offered and 1,208 at 8,000, with 8 failed calls and 1,305 MiB of RSS at the end; with the table, 3,812 and 2,126, no failed call, and 621 MiB.` +
    sipCounters(sip.server) + sipLimit(sip);
}

/**
 * What held completed calls below the offered rate, where they were: the
 * server's CPU and the datagrams its socket dropped.
 */
function sipLimit(sip: Extract<SipResults, { runs: unknown }>): string {
  const slow = sip.runs.filter((run) =>
    run.completedPerSec < 0.9 * run.rate && run.socketDrops !== undefined
  );
  if (slow.length === 0) return "";
  const at = slow.map((run) =>
    `${
      fmt(100 * (run.serverCpuSec ?? NaN) / run.seconds)
    }% of a core, and the kernel dropped ${
      fmt(run.socketDrops ?? NaN)
    } datagrams at its socket, at ${fmt(run.rate)} calls/s offered`
  ).join("; ");
  const buffer = sip.rmemDefault === undefined
    ? ""
    : ` (Deno cannot set a socket's SO_RCVBUF, so it is the system default, \`net.core.rmem_default\`: ${
      fmt(sip.rmemDefault)
    } B here)`;
  const isIdle = slow.every((run) =>
    (run.serverCpuSec ?? Infinity) < 0.9 * run.seconds
  );
  return `\n\nWhere calls completed slower than offered, the server used ${at}. The socket's receive buffer${buffer} holds some milliseconds of this traffic, and the server's pauses are longer (scavenges of 15–50 ms with this many calls in flight, batches of timers). Every dropped datagram costs its call a retransmission timer (T1 = 500 ms, doubling), so calls wait, and sipp's limit of 20,000 calls in flight holds back new ones${
    isIdle
      ? ": with a core not used in full, the limit at these rates is the drops, not the server's CPU"
      : ""
  }. (Measured by hand, 2026-12-06: sipp itself used about a quarter of a core at 8,000 calls/s; with \`net.core.rmem_default\` raised to 4 MiB a run at 8,000 still dropped 126,000 datagrams, against 160,000 at the default, and took 15.2 s against 20.7.)`;
}

/**
 * The UAS's own counters over the series (`server` in sip_bench's JSON),
 * and what they showed of its send queue.
 */
function sipCounters(server: unknown): string {
  const counters = server as Record<string, number> | null;
  if (typeof counters?.received !== "number") return "";
  return `\n\nThe server's counters over the series: ${
    fmt(counters.received)
  } datagrams received, ${fmt(counters.sent)} sent, ${
    fmt(counters.sendDropped)
  } replies dropped at its full send queue (\`maxSendQueue\`, 4,096). Before \`DatagramServer\` sent its queue in batches, it awaited each send, and Deno settles a UDP send in a microtask, as it does a receive that finds a datagram waiting, so the send pump and the reader loop took turns and the pump sent about one datagram per datagram received. A SIP server's replies outnumber its requests: two series each at 4,000, 6,000 and 8,000 calls/s offered, alternated with the old code on one machine (2026-12-06), dropped 74,293 and 93,932 replies with the old pump and none with batches, and the server's RSS after the series was 649–654 MiB against 484–495. \`bench/datagram_flood.ts\` shows the same without SIP.`;
}

/** Throughput by server and connection count, as an SVG bar chart. */
export function chart(r: Results): string {
  const groups = ["B1", "B2"].filter((id) => r.scenarios[id]);
  const servers = [
    ...new Set(groups.flatMap((id) => Object.keys(r.scenarios[id].runs))),
  ];
  const colors = [
    "#555",
    "#1f77b4",
    "#2ca02c",
    "#d62728",
    "#ff7f0e",
    "#9467bd",
    "#e377c2",
    "#8c564b",
  ];
  const width = 820, height = 380, left = 70, top = 40, bottom = 60;
  const legendWidth = 230;
  const plotW = width - left - legendWidth - 20, plotH = height - top - bottom;
  const stats = groups.map((id) =>
    servers.map((s) => stat(r.scenarios[id].runs[s], msgs))
  );
  const yMax =
    Math.max(...stats.flat().map((s) => s.max).filter(Number.isFinite), 1) *
    1.1;
  const step = 10 ** Math.floor(Math.log10(yMax / 4));
  const tick = [1, 2, 5, 10].map((k) => k * step).find((t) => yMax / t <= 6)!;
  const y = (v: number) => top + plotH - v / yMax * plotH;
  const groupW = plotW / groups.length;
  const barW = (groupW - 30) / servers.length;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">Echo throughput, 64 B ping-pong (msgs/s, median over rounds; whiskers min..max)</text>`,
  ];
  for (let v = 0; v <= yMax; v += tick) {
    out.push(
      `<line x1="${left}" x2="${left + plotW}" y1="${y(v)}" y2="${
        y(v)
      }" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${
        fmt(v)
      }</text>`,
    );
  }
  groups.forEach((id, g) => {
    const x0 = left + g * groupW + 15;
    servers.forEach((_, i) => {
      const s = stats[g][i];
      if (!Number.isFinite(s.median)) return;
      const x = x0 + i * barW;
      out.push(
        `<rect x="${x.toFixed(1)}" y="${y(s.median).toFixed(1)}" width="${
          (barW - 3).toFixed(1)
        }" height="${(top + plotH - y(s.median)).toFixed(1)}" fill="${
          colors[i % colors.length]
        }"/>`,
        `<line x1="${(x + barW / 2 - 1.5).toFixed(1)}" x2="${
          (x + barW / 2 - 1.5).toFixed(1)
        }" y1="${y(s.min).toFixed(1)}" y2="${
          y(s.max).toFixed(1)
        }" stroke="black"/>`,
      );
    });
    const conns = id === "B1" ? 50 : 1000;
    out.push(
      `<text x="${x0 + (groupW - 30) / 2}" y="${
        top + plotH + 20
      }" text-anchor="middle">${conns} connections (${id})</text>`,
    );
  });
  out.push(
    `<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${
      top + plotH
    }" stroke="black"/>`,
  );
  servers.forEach((s, i) => {
    const ly = top + 10 + i * 20;
    const lx = left + plotW + 20;
    out.push(
      `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${
        colors[i % colors.length]
      }"/>`,
      `<text x="${lx + 18}" y="${ly}">${escape(r.labels[s] ?? s)}</text>`,
    );
  });
  out.push(
    `<text x="${left}" y="${height - 12}" fill="#555">${
      escape(r.machine.cpu)
    }; Deno ${escape(r.machine.deno.split(" ")[0])}, Node ${
      escape(r.machine.node)
    }; ${r.date.slice(0, 10)}</text>`,
    "</svg>",
  );
  return out.join("\n") + "\n";
}

function escape(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;");
}

/** Writes BENCHMARKS.md and BENCHMARKS.svg into `outDir`. */
export function writeReport(
  results: Results,
  outDir: string,
  resultsDir: string,
) {
  const check = clientCheck(results);
  const r = check?.results ?? results;
  const svg = chart(r);
  Deno.writeTextFileSync(`${resultsDir}/chart.svg`, svg);
  Deno.writeTextFileSync(`${outDir}/BENCHMARKS.svg`, svg);
  const machine = Object.entries(r.machine).map(([k, v]) => `- ${k}: ${v}`)
    .join("\n");
  const parts = [
    "# corio benchmarks",
    `Written by \`${r.command}\` on ${r.date} (${
      fmt(r.elapsedSeconds ?? NaN)
    } s). Current figures only: every number below comes from that run.${
      r.isQuick ? " **Quick smoke run: one short round, not for quoting.**" : ""
    }`,
    "![Echo throughput by server and connection count](BENCHMARKS.svg)",
    "## Method",
    [
      `- Machine:\n${machine.replace(/^/gm, "  ")}`,
      "- Loopback only. Each server is its own process; the load client (`bench/c/load_client.c`, epoll, one thread) is the same for all of them, compiled with `gcc -O2` at bench time, as is the C epoll echo server (`bench/c/echo_server.c`) that shows what the client can drive.",
      `- Servers alternate within each scenario (order rotated every round), ${r.rounds} round(s); each ping-pong run warms up ${r.warmup} s (and until every connection had a reply), then measures ${r.duration} s. Figures: median (min..max) over the rounds; ratios against a baseline (raw Deno, Node) are the median over rounds of the ratio within each round, whose servers ran back to back: the machine's speed drifts between rounds, and a ratio of medians taken from different rounds would carry that drift.`,
      ...(r.interleave ? [interleaveText(r.interleave, r.duration)] : []),
      ...(r.pinning
        ? [
          `- The load client runs on CPU ${r.pinning.client} and every echo server (B1, B2, B8–B11) on CPU ${r.pinning.server} (\`taskset\`, all of a process's threads), so that where the kernel places a process cannot differ from one server to the next.`,
        ]
        : []),
      "- Server CPU = utime + stime of all its threads from `/proc/PID/stat` over the measured window, read by the client; per message = that / messages echoed. Client CPU is its own `getrusage` over the window. The client is not the limit when the C server outruns every JS server, or when the client has CPU to spare. " +
      (check?.text ?? ""),
      "- Jain's fairness index over per-connection message counts (1 = perfectly even). p50/p99: round trip per message. Longest wait per connection: each connection's longest wait for a reply inside the measured window (a message still unanswered at the end counts by its age then), as the median over connections and the worst.",
      "- Servers: `bench/servers/raw_deno_echo.ts` (Deno.listen, corio's read-buffer policy: 1 KiB growing to 64 KiB), `bench/servers/node_echo.mjs` (`socket.on('data', d => socket.write(d))`), `bench/servers/corio_echo.ts` (`async function*` with `yield*`; variants: `function*`, plain `yield`, `--recv-timeout`), `bench/servers/floor_echo.ts`, no library at all: an `async function*` whose `yield*` operations are two reused objects returning Deno's read and write promises mapped to results, the least that typed `yield*` in an `async function*` can cost, and in B2 `bench/servers/raw_paced_echo.ts`, raw Deno made fair by corio's read pacing, and `floor_echo.ts --paced`, the floor made fair the same way; `floor_echo.ts --cancellable` gives each wait a promise of its own, as a library with timeouts and cancellation must (B1 and B11, and paced in B2); `floor_echo.ts --sync` is the floor of `function*` handlers, a bare generator whose yields a loop performs on the socket (B1 and B11).",
    ].join("\n"),
    "## Targets",
    ...(check && !check.isValid
      ? [`**${failedRows(check.failed)}: the client check failed (Method).**`]
      : []),
    table(["id", "what", "target", "measured", "met"], targets(r)),
    "## Throughput, CPU, latency, fairness",
    ["B1", "B2"].map((id) => pingpongTable(r, id)).filter(Boolean).join("\n\n"),
    pingpongTable(r, B2I),
    "B3 (30 s recv timeout) and B4 (typed vs untyped, `function*`) are rows of B1 and B2 (B3, and B4 where the run has it, at 1000 connections: of B2-interleaved).",
    idleTable(r),
    burstTable(r),
    pingpongTable(r, "B10"),
    ["B11-1k", "B11-16k"].map((id) => pingpongTable(r, id, true)).filter(
      Boolean,
    ).join("\n\n"),
    ...(r.micro ?? []).map((m) =>
      `### ${m.title}\n\n` + table(m.rows[0], m.rows.slice(1)) +
      (m.title.startsWith("B7") ? b7Note(r.microFigures) : "")
    ),
    poolSection(r),
    sipSection(r),
  ];
  Deno.writeTextFileSync(
    `${outDir}/BENCHMARKS.md`,
    parts.filter(Boolean).join("\n\n") + "\n",
  );
}
