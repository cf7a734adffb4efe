/**
 * The benchmark runner (`deno task bench`; `--quick` for a smoke run).
 *
 * Starts each server as its own process, drives it with the C load client,
 * alternates servers within every scenario over several rounds, and reads
 * the server's CPU time from /proc/PID/stat. Writes BENCHMARKS.md and
 * BENCHMARKS.svg at the repository root (a quick run, or a partial one with
 * `--only`, writes them under bench/results/ instead, so it never replaces
 * the full report), and the raw figures to bench/results/.
 *
 *     deno task bench [--quick] [--rounds N] [--only B1,B2]
 *
 * B5–B7 (`ops_bench.ts`, `timers_bench.ts`), B12 (`pool_bench.ts`) and B13
 * (`sip_bench.ts`, which needs sipp on PATH) run as their own programs and
 * report JSON.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  compileC,
  describeMachine,
  PINNING,
  readIdleServer,
  runClient,
  runInterleaved,
  startServer,
  TURN,
} from "./_procs.ts";
import {
  clientCheck,
  median,
  type MicroFigures,
  type Results,
  stat,
  writeReport,
} from "./_report.ts";
import { SERVERS } from "./_servers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    quick: { type: "boolean", default: false },
    rounds: { type: "string" },
    only: { type: "string" },
  },
});
const isQuick = values.quick;
const rounds = Number(values.rounds ?? (isQuick ? 1 : 3));
const only = values.only ? new Set(values.only.split(",")) : null;
const WARMUP = isQuick ? 0.5 : 1;
const DURATION = isQuick ? 1 : 2.5;
const IDLE_CONNS = isQuick ? 2000 : 10_000;
// B7: seconds per run of each form.
const B7_SECONDS = isQuick ? 1 : 3;
const BURST_CONNS = isQuick ? 2000 : 10_000;
// B12: total requests per round and mode (rounds: --rounds).
const POOL_REQUESTS = isQuick ? 1000 : 5000;
// B13: offered call rates, stepped up until one fails, and seconds each.
const SIP_RATES = isQuick ? "500,1000" : "500,1000,2000,4000,8000";
const SIP_SECONDS = isQuick ? 2 : 5;

const benchDir = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
const rootDir = benchDir.replace(/\/bench$/, "");
const resultsDir = `${benchDir}/results`;
const deno = Deno.execPath();

const ECHO_SERVERS = [
  "c",
  "raw",
  "node",
  "corio",
  "corio-timeout",
  "corio-sync",
  "corio-copy",
  "corio-untyped",
  "floor",
];

// B11's floors say what a pipelined stream costs any handler of each form
// with no library: whether "≥ 0.95× raw Deno" leaves corio room at all.
const B11_SERVERS = [
  "c",
  "raw",
  "node",
  "corio",
  "corio-sync",
  "floor",
  "floor-cancellable",
  "floor-sync",
];

interface Scenario {
  id: string;
  title: string;
  servers: string[];
  /** Runs one server alone. */
  run?(server: string, client: string): Promise<Record<string, number>>;
  /** Runs all the round's servers together (`interleaved`), in this order. */
  runRound?(
    servers: string[],
    client: string,
  ): Promise<Record<string, Record<string, number>>>;
}

function pingpong(
  conns: number,
  size = 64,
  depth = 1,
  extra: Record<string, number> = {},
): NonNullable<Scenario["run"]> {
  return async (id, client) => {
    const server = await startServer(SERVERS[id].cmd);
    try {
      return await runClient(client, {
        port: server.port,
        conns,
        size,
        depth,
        warmup: WARMUP,
        duration: DURATION,
        "server-pid": server.pid,
        ...extra,
      }, (WARMUP + DURATION + 40) * 1000);
    } finally {
      await server.stop();
    }
  };
}

/**
 * Ping-pong against all of a round's servers at once, in turns
 * (`runInterleaved`). B2 is not run this way: its longest wait per
 * connection would be cut to one turn, hiding the starvation it shows.
 */
function interleaved(
  conns: number,
  size = 64,
  depth = 1,
): NonNullable<Scenario["runRound"]> {
  return async (ids, client) => {
    const figures = await runInterleaved(
      client,
      ids.map((id) => SERVERS[id].cmd),
      { conns, size, depth, warmup: WARMUP, duration: DURATION },
    );
    return Object.fromEntries(
      ids.flatMap((id, i) => figures[i] ? [[id, figures[i]]] : []),
    );
  };
}

async function idle(id: string, client: string) {
  // Idle means idle for a while: corio moves handlers that have waited in
  // place for 0.25-0.5 s to the compact way of waiting.
  const { connectSeconds, readings: [after] } = await readIdleServer(
    client,
    SERVERS[id].cmd,
    IDLE_CONNS,
    [1000],
  );
  return {
    conns: IDLE_CONNS,
    connectSeconds,
    rssPerConn: after.rssPerConn,
    heapPerConn: after.heapPerConn,
    externalPerConn: after.externalPerConn,
    // V8 grows its young generation while a burst of long-lived objects
    // survives, and keeps it after a full GC: resident, yet no heap.
    newSpaceMiB: after.newSpaceMiB,
    rssAfter: after.rss,
  };
}

async function burst(id: string, client: string) {
  const server = await startServer(SERVERS[id].cmd);
  try {
    return await runClient(client, {
      port: server.port,
      mode: "burst",
      conns: BURST_CONNS,
      warmup: 0,
      duration: 60,
    }, 90000);
  } finally {
    await server.stop();
  }
}

const SCENARIOS: Scenario[] = [
  {
    id: "B1",
    title: "echo 64 B ping-pong, 50 connections",
    servers: [...ECHO_SERVERS, "floor-cancellable", "floor-sync", "deno-node"],
    runRound: interleaved(50),
  },
  {
    id: "B2",
    title: "echo 64 B ping-pong, 1000 connections",
    // Raw Deno and the floor made fair by corio's read pacing: at 50
    // connections the rule never defers a read, so only B2 runs them. The
    // cancellable floor runs paced here, unpaced in B1: the least a fair
    // server with timeouts and cancellation can cost, and the least any.
    servers: [
      ...ECHO_SERVERS,
      "raw-paced",
      "floor-paced",
      "floor-paced-cancellable",
      "deno-node",
    ],
    run: pingpong(1000),
  },
  {
    // B2's throughput, B3 and B4 at 1000 connections and the paced
    // baselines, with the servers interleaved as in B1: run one after the
    // other (B2), raw Deno's msgs/s swings with how many connections it
    // happens to starve, and corio / raw Deno has ranged 0.63-1.42 over one
    // run's rounds. B2 itself stays: its starvation shows only in windows
    // longer than a turn.
    id: "B2-interleaved",
    title: "echo 64 B ping-pong, 1000 connections, servers interleaved",
    servers: [
      "raw",
      "corio",
      "corio-timeout",
      "corio-sync",
      "corio-untyped",
      "raw-paced",
      "floor-paced-cancellable",
    ],
    runRound: interleaved(1000),
  },
  {
    id: "B8",
    title: `${IDLE_CONNS} idle connections parked in recv`,
    // Not the C server: its per-connection memory is kernel socket memory,
    // which RSS does not show.
    servers: [
      "raw",
      "node",
      "corio",
      "corio-sync",
      "floor",
      "floor-sync",
      "floor-sync-pad",
    ],
    run: idle,
  },
  {
    id: "B9",
    title: `accept burst: ${BURST_CONNS} connects + one echo each`,
    servers: ["c", "raw", "node", "corio", "corio-queues"],
    run: burst,
  },
  {
    id: "B10",
    title:
      "cap 1000 with 2000 offered, against uncapped corio at 1000 in the same round",
    servers: ["corio-cap", "corio"],
    // The capped server gets 2000 clients; its baseline, uncapped corio,
    // gets the 1000 the cap admits, in the same round.
    run: (id, client) =>
      id === "corio-cap"
        ? pingpong(2000, 64, 1, { "min-replied": 0.5 })(id, client)
        : pingpong(1000)(id, client),
  },
  {
    id: "B11-1k",
    title: "1 KiB messages, 4 pipelined per connection, 50 connections",
    servers: B11_SERVERS,
    runRound: interleaved(50, 1024, 4),
  },
  {
    id: "B11-16k",
    title: "16 KiB messages, 4 pipelined per connection, 50 connections",
    servers: B11_SERVERS,
    runRound: interleaved(50, 16384, 4),
  },
];

async function main() {
  const started = performance.now();
  const { server, client } = await compileC(benchDir, resultsDir);
  SERVERS.c.cmd = [server, "0"];
  const results: Results = {
    machine: await describeMachine(),
    command: `deno task bench${isQuick ? " --quick" : ""}${
      values.rounds ? ` --rounds ${rounds}` : ""
    }`,
    date: new Date().toISOString(),
    rounds,
    warmup: WARMUP,
    duration: DURATION,
    pinning: PINNING,
    interleave: {
      scenarios: SCENARIOS.filter((s) => s.runRound).map((s) => s.id),
      ...TURN,
    },
    isQuick,
    labels: Object.fromEntries(
      Object.entries(SERVERS).map(([id, s]) => [id, s.label]),
    ),
    scenarios: {},
  };
  for (const scenario of SCENARIOS) {
    if (only && !only.has(scenario.id.replace(/-.*/, ""))) continue;
    const runs: Record<string, Record<string, number>[]> = {};
    for (let round = 0; round < rounds; round++) {
      // Rotate the order each round so no server always goes first.
      const order = scenario.servers.map((_, i) =>
        scenario.servers[(i + round) % scenario.servers.length]
      );
      let t0 = performance.now();
      let together: Record<string, Record<string, number>> = {};
      if (scenario.runRound) {
        try {
          together = await scenario.runRound(order, client);
        } catch (error) {
          console.error(`${scenario.id} round ${round + 1}: ${error}`);
        }
      }
      for (const id of order) {
        let figures: Record<string, number> | undefined = together[id];
        if (scenario.run) {
          t0 = performance.now();
          try {
            figures = await scenario.run(id, client);
          } catch (error) {
            console.error(`${scenario.id} ${id}: ${error}`);
          }
        }
        if (!figures) continue;
        // The round pairs each server's run with its baseline's (ratios).
        (runs[id] ??= []).push({ ...figures, round: round + 1 });
        console.log(
          `${scenario.id} round ${round + 1} ${id.padEnd(14)} ${
            summarize(figures)
          } (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
        );
      }
    }
    results.scenarios[scenario.id] = { title: scenario.title, runs };
  }
  if (!only || only.has("B5") || only.has("B6") || only.has("B7")) {
    const figures = await microFigures();
    results.microFigures = figures;
    results.micro = microTables(figures);
  }
  if (!only || only.has("B12")) results.pool = await pool();
  if (!only || only.has("B13")) results.sip = await sip();
  results.elapsedSeconds = (performance.now() - started) / 1000;
  Deno.writeTextFileSync(
    `${resultsDir}/results${isQuick ? ".quick" : only ? ".only" : ""}.json`,
    JSON.stringify(results, null, 1),
  );
  const outDir = isQuick || only ? resultsDir : rootDir;
  writeReport(results, outDir, resultsDir);
  const check = clientCheck(results);
  if (check !== null && !check.isValid) console.error(`warning: ${check.text}`);
  console.log(
    `wrote ${outDir}/BENCHMARKS.md and BENCHMARKS.svg in ${
      results.elapsedSeconds.toFixed(0)
    } s`,
  );
}

async function runJson(
  file: string,
  args: string[],
  { permissions = [] as string[], timeout = 120_000 } = {},
) {
  const output = await new Deno.Command(deno, {
    args: [
      "run",
      ...permissions,
      "--v8-flags=--expose-gc",
      `${benchDir}/${file}`,
      ...args,
    ],
    stdout: "piped",
    signal: AbortSignal.timeout(timeout),
  }).output();
  if (!output.success) {
    throw new Error(`${file} ${args.join(" ")}: exit ${output.code}`);
  }
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

/** B12: pool of 10 vs one connection per request (`pool_bench.ts`). */
async function pool(): Promise<Results["pool"]> {
  const t0 = performance.now();
  try {
    const figures = await runJson("pool_bench.ts", [
      "--json",
      "--rounds",
      String(rounds),
      "--requests",
      String(POOL_REQUESTS),
    ], {
      permissions: ["--allow-net", "--allow-run", "--allow-read"],
      timeout: 300_000,
    });
    console.log(
      `B12 pool ${figures.results.pool.map(Math.round).join(", ")} req/s; ` +
        `per request ${
          figures.results.perRequest.map(Math.round).join(", ")
        } req/s (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
    );
    return figures;
  } catch (error) {
    console.error(`B12: ${error}`);
    return { error: String(error) };
  }
}

/** B13: calls/s sipp completes against examples/sip_uas.ts (`sip_bench.ts`). */
async function sip(): Promise<Results["sip"]> {
  try {
    await new Deno.Command("sipp", { args: ["-v"], stdout: "null" }).output();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    const skipped = "sipp not found on PATH";
    console.log(`B13: ${skipped}, so B13 is not run`);
    return { skipped };
  }
  const t0 = performance.now();
  try {
    const figures = await runJson("sip_bench.ts", [
      "--json",
      "--rates",
      SIP_RATES,
      "--seconds",
      String(SIP_SECONDS),
    ], {
      // It reads /proc/PID/status of the server it starts.
      permissions: ["--allow-all"],
      timeout: 600_000,
    });
    for (const run of figures.runs) {
      console.log(
        `B13 offered ${run.rate} calls/s: ${run.ok} ok, ${run.failed} failed, ` +
          `sipp exit ${run.code}, RSS ${run.rssMiB.toFixed(1)} MiB`,
      );
    }
    console.log(
      `B13 highest rate with 0 failures: ${figures.best} calls/s (${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s)`,
    );
    return figures;
  } catch (error) {
    console.error(`B13: ${error}`);
    return { error: String(error) };
  }
}

/** B5, B6, B7: the micro-benchmarks' own reports. */
async function microFigures(): Promise<MicroFigures> {
  // B5: a process per round. Within one process the cases alternate, but a
  // whole process can run corio's code 1.5-1.8x slower than the next one
  // (2026-12-06, 14 runs of `ops_bench.ts --report`: 2 gave 324-325 ns for
  // the parked operation, 12 gave 173-212, with `await Promise.resolve()` at
  // 22-25 ns in all of them), so a single process decides nothing.
  const opsRuns: MicroFigures["ops"][] = [];
  for (let round = 0; round < rounds; round++) {
    opsRuns.push(await runJson("ops_bench.ts", ["--report"]));
    console.log(`B5 round ${round + 1}`, JSON.stringify(opsRuns[round]));
  }
  const ops: MicroFigures["ops"] = opsRuns[0].map((row, i) => ({
    name: row.name,
    nsPerOp: median(opsRuns.map((run) => run[i].nsPerOp)),
    turnsPerOp: median(opsRuns.map((run) => run[i].turnsPerOp)),
  }));
  const { b6 } = await runJson("timers_bench.ts", ["--report"]);
  console.log("B6", JSON.stringify(b6));
  // B7: a process per run, forms alternated and rotated like the servers.
  const forms = ["corio", "setTimeout", "floor"] as const;
  const b7Runs: MicroFigures["b7Runs"] = {};
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < forms.length; i++) {
      const form = forms[(i + round) % forms.length];
      const figures = await runJson("timers_bench.ts", [
        "--b7",
        form,
        String(B7_SECONDS),
      ]);
      (b7Runs[form] ??= []).push({ ...figures, round: round + 1 });
      console.log(
        `B7 round ${round + 1} ${form.padEnd(10)} ${
          Math.round(figures.firesPerSec)
        } fires/s, ${figures.cpuUsPerFire.toFixed(2)} µs CPU/fire`,
      );
    }
  }
  const b7 = Object.fromEntries(
    Object.entries(b7Runs).map(([form, runs]) => [form, medians(runs)]),
  ) as MicroFigures["b7"];
  return { ops, opsRuns, b6, b7, b7Runs };
}

/** Field by field, the median over `runs`. */
function medians(runs: Record<string, number>[]): Record<string, number> {
  return Object.fromEntries(
    Object.keys(runs[0]).map((key) => [key, median(runs.map((r) => r[key]))]),
  );
}

/** B5, B6, B7 as table rows. */
function microTables(
  { ops, opsRuns, b6, b7, b7Runs }: MicroFigures,
): Results["micro"] {
  const ns = (x: number) => x.toFixed(0);
  const spread = (form: string, key: string, digits: number) => {
    const runs = b7Runs?.[form] ?? [];
    if (runs.length < 2) return "";
    const { min, max } = stat(runs, (f) => f[key]);
    return ` (${min.toFixed(digits)}..${max.toFixed(digits)})`;
  };
  const b7row = (name: string, form: string) => {
    const f = b7[form as keyof typeof b7]!;
    return [
      name,
      ns(f.firesPerSec) + spread(form, "firesPerSec", 0),
      ns(f.idealFiresPerSec),
      f.cpuPerSec.toFixed(2) + spread(form, "cpuPerSec", 2),
      f.cpuUsPerFire.toFixed(2) + spread(form, "cpuUsPerFire", 2),
    ];
  };
  return [{
    title: `B5: one operation without I/O (\`bench/ops_bench.ts\`; in each of ${
      opsRuns?.length ?? 1
    } processes, the best of 5 × 100k with the cases alternated; the median over the processes, min..max)`,
    rows: [
      ["case", "ns per op", "microtask turns per op"],
      ...ops.map((r, i) => {
        const all = opsRuns?.map((run) => run[i].nsPerOp) ?? [];
        const spread = all.length < 2
          ? ""
          : ` (${ns(Math.min(...all))}..${ns(Math.max(...all))})`;
        return [
          String(r.name),
          ns(r.nsPerOp as number) + spread,
          (r.turnsPerOp as number).toFixed(2),
        ];
      }),
    ],
  }, {
    title:
      "B6: deadline queue vs Deno timers, 100k pending (`bench/timers_bench.ts`)",
    rows: [
      ["measure", "corio DeadlineQueue", "setTimeout", "ratio"],
      [
        "arm+cancel, ns per pair",
        ns(b6.queueArmCancelNs),
        ns(b6.timerArmCancelNs),
        `${(b6.queueArmCancelNs / b6.timerArmCancelNs).toFixed(3)}×`,
      ],
      [
        "fire, ns per entry (queue: arm + pop expired; setTimeout: firing only)",
        ns(b6.queueArmAndFireNs),
        ns(b6.timerFireNs),
        `${(b6.queueArmAndFireNs / b6.timerFireNs).toFixed(3)}×`,
      ],
      [
        "bytes per pending entry (JS heap and off-heap; entry object included)",
        ns(b6.queueBytesPerEntry),
        `${ns(b6.timerHeapBytesPerEntry)} heap, ${
          ns(b6.timerRssBytesPerEntry)
        } RSS`,
        `${(b6.queueBytesPerEntry / b6.timerHeapBytesPerEntry).toFixed(3)}×`,
      ],
    ],
  }, {
    title:
      `B7: 10k coroutines looping delay(1..100 ms), ${B7_SECONDS} s per run, ${
        b7Runs?.corio?.length ?? 1
      } runs each, a process per run (\`bench/timers_bench.ts\`; median (min..max))`,
    rows: [
      [
        "form",
        "fires/s",
        "fires/s if timers were exact",
        "CPU s per s",
        "CPU µs per fire",
      ],
      b7row("corio `yield* delay(ms)`", "corio"),
      b7row("`await new Promise((r) => setTimeout(r, ms))`", "setTimeout"),
      ...(b7.floor
        ? [b7row(
          "floor: bare generators on the same heap, no library (not a corio form)",
          "floor",
        )]
        : []),
    ],
  }];
}

function summarize(f: Record<string, number>): string {
  if ("msgsPerSec" in f) {
    return `${Math.round(f.msgsPerSec)} msgs/s, ${
      (f.serverCpu / f.messages * 1e6).toFixed(2)
    } µs CPU/msg, p99 ${f.p99Ms} ms, client CPU ${
      (f.clientCpu / f.seconds * 100).toFixed(0)
    }%`;
  }
  if ("rssPerConn" in f) {
    return `${(f.rssPerConn / 1024).toFixed(2)} KiB RSS/conn, heap ${
      (f.heapPerConn / 1024).toFixed(2)
    } KiB/conn`;
  }
  return `${f.seconds} s, ${f.completed} done, ${f.errors} errors`;
}

await main();
