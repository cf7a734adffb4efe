/**
 * Paired echo runs of a few servers: the quick way to see whether a change
 * moves corio against its baselines on a machine whose speed drifts.
 * Servers alternate within every round (order rotated), and each figure is
 * the ratio to the first server measured in the same round, so the drift
 * between rounds cancels; the summary is the median (min..max) of those.
 *
 *     deno task compare [--conns 50] [--rounds 6] [--seconds 2.5]
 *       [--size 64] [--depth 1] [--interleave] SERVER...
 *
 * `--size` and `--depth` set the messages' bytes and how many each
 * connection keeps in flight (B11 is `--size 1024 --depth 4`).
 *
 * `--interleave` runs each round's servers together, in turns of 0.25 s,
 * as the suite runs B1 (`runInterleaved`): on a machine whose speed swings
 * from one second to the next, the ratios then spread far less.
 *
 * A SERVER is an id from the suite (`raw`, `corio`, `corio-sync`,
 * `floor-sync`, ...: see `_servers.ts`), or `name=command words`, which
 * starts any command that prints "listening on HOST:PORT" (a server from
 * another checkout, say):
 *
 *     deno task compare raw corio "old=deno run -A /tmp/old/bench/servers/corio_echo.ts"
 *
 * @module
 */

import { parseArgs } from "node:util";
import { compileC, runClient, runInterleaved, startServer } from "./_procs.ts";
import { fmt, median, range, type Stat } from "./_report.ts";
import { serverFromSpec, SERVERS } from "./_servers.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    conns: { type: "string", default: "50" },
    rounds: { type: "string", default: "6" },
    seconds: { type: "string", default: "2.5" },
    interleave: { type: "boolean", default: false },
    size: { type: "string", default: "64" },
    depth: { type: "string", default: "1" },
  },
});
if (positionals.length < 2) {
  console.error(
    "usage: compare.ts [--conns N] [--rounds N] [--seconds S] [--size B] [--depth N] [--interleave] SERVER SERVER...",
  );
  Deno.exit(2);
}

const benchDir = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
const { server: cServer, client } = await compileC(
  benchDir,
  `${benchDir}/results`,
);
SERVERS.c.cmd = [cServer, "0"];

const servers = positionals.map(serverFromSpec);

interface Run {
  msgsPerSec: number;
  cpuPerMsg: number; // µs
  p99Ms: number;
  jain: number;
}

const ratios = servers.map(() => ({
  msgs: [] as number[],
  cpu: [] as number[],
}));
const runs = servers.map(() => [] as Run[]);

for (let round = 0; round < Number(values.rounds); round++) {
  const results: Run[] = [];
  const order = servers.map((_, k) => (k + round) % servers.length);
  const args = {
    conns: Number(values.conns),
    size: Number(values.size),
    depth: Number(values.depth),
    warmup: 1,
    duration: Number(values.seconds),
  };
  const toRun = (f: Record<string, number>): Run => ({
    msgsPerSec: f.msgsPerSec,
    cpuPerMsg: f.serverCpu / f.messages * 1e6,
    p99Ms: f.p99Ms,
    jain: f.jain,
  });
  if (values.interleave) {
    const figures = await runInterleaved(
      client,
      order.map((i) => servers[i].cmd),
      args,
    );
    order.forEach((i, k) => {
      if (!figures[k]) throw new Error(`no figures for ${servers[i].name}`);
      results[i] = toRun(figures[k]);
    });
  }
  for (const i of values.interleave ? [] : order) {
    const server = await startServer(servers[i].cmd);
    try {
      results[i] = toRun(
        await runClient(client, {
          ...args,
          port: server.port,
          "server-pid": server.pid,
        }, 60_000),
      );
    } finally {
      await server.stop();
    }
  }
  const base = results[0];
  const cells = servers.map(({ name }, i) => {
    const r = results[i];
    runs[i].push(r);
    ratios[i].msgs.push(r.msgsPerSec / base.msgsPerSec);
    ratios[i].cpu.push(r.cpuPerMsg / base.cpuPerMsg);
    return `${name} ${fmt(r.msgsPerSec, 0)} (${
      fmt(r.msgsPerSec / base.msgsPerSec, 3)
    }×) ${fmt(r.cpuPerMsg, 2)} µs`;
  });
  console.log(`round ${round + 1}: ${cells.join(" | ")}`);
}

const over = (xs: number[]): Stat => ({
  median: median(xs),
  min: Math.min(...xs),
  max: Math.max(...xs),
});
console.log(
  `\n${values.conns} connections, ${values.rounds} rounds; ratios to ${
    servers[0].name
  } in the same round:`,
);
console.log(
  "| server | msgs/s | msgs/s ratio | CPU µs/msg | CPU ratio | p99 ms | Jain |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
servers.forEach(({ name }, i) => {
  const of = (key: keyof Run) => runs[i].map((r) => r[key]);
  console.log(
    `| ${name} | ${range(over(of("msgsPerSec")), 0)} | ${
      range(over(ratios[i].msgs), 3)
    } | ${range(over(of("cpuPerMsg")), 2)} | ${
      range(over(ratios[i].cpu), 3)
    } | ${range(over(of("p99Ms")), 2)} | ${range(over(of("jain")), 4)} |`,
  );
});
