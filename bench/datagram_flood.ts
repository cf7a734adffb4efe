/**
 * A UDP flood against `serveDatagram`: how many datagrams a server takes
 * in, and whether its replies keep up when they outnumber the requests (a
 * SIP server sends 100, 180 and 200 to one INVITE). Deno settles a UDP
 * send, and a receive that finds a datagram waiting, in a microtask, so a
 * server's reader loop and its send pump take turns; what it cannot send
 * in time it drops at a full send queue (`stats.sendDropped`).
 *
 *     deno task flood [--seconds 3] [--rounds 3] [--replies 2] [SERVER...]
 *
 * A SERVER is `name=PATH`, PATH a checkout's `mod.ts` (default: this one),
 * so that two versions of corio run side by side:
 *
 *     deno task flood new=mod.ts old=/tmp/old/mod.ts
 *
 * Each round starts every server afresh (order rotated) as
 * `bench/servers/datagram_replier.ts`, floods it for `--seconds` from this
 * process (400-byte datagrams over 1000 keys, sent in batches of 32 as
 * fast as they go), waits half a second for it to drain, and reads its
 * counters. Prints the median (min..max) over rounds of the datagrams it
 * received and sent per second, the replies it sent per datagram received
 * (the target is `--replies`), and the replies it dropped. Loopback only; the
 * kernel drops what the server does not read in time, so "received" is
 * what it kept up with.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { PINNING, startServer } from "./_procs.ts";
import { fmt, median, range } from "./_report.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    seconds: { type: "string", default: "3" },
    rounds: { type: "string", default: "3" },
    replies: { type: "string", default: "2" },
  },
});
const seconds = Number(values.seconds);
const replier = new URL("./servers/datagram_replier.ts", import.meta.url)
  .pathname;
const servers = (positionals.length ? positionals : ["corio=mod.ts"]).map(
  (spec) => {
    const at = spec.indexOf("=");
    if (at < 1) throw new TypeError(`SERVER must be name=PATH, got ${spec}`);
    return { name: spec.slice(0, at), path: spec.slice(at + 1) };
  },
);

// The flood comes from this process: on the load client's CPU, away from
// the server's (see PINNING).
if (PINNING) {
  await new Deno.Command("taskset", {
    args: ["-a", "-p", "-c", PINNING.client, String(Deno.pid)],
    stdout: "null",
  }).output();
}

interface Run {
  receivedPerSec: number;
  sentPerSec: number;
  repliesPerRequest: number;
  dropped: number;
}

async function flood(name: string, path: string): Promise<Run> {
  const server = await startServer([
    Deno.execPath(),
    "run",
    "--allow-read",
    "--allow-net",
    "--unstable-net",
    replier,
    "--replies",
    values.replies,
    "--corio",
    new URL(path, `file://${Deno.cwd()}/`).pathname,
  ]);
  const socket = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  try {
    const to = {
      transport: "udp" as const,
      hostname: "127.0.0.1",
      port: server.port,
    };
    const encoder = new TextEncoder();
    const datagrams = Array.from(
      { length: 1000 },
      (_, i) => encoder.encode(`k${i} `.padEnd(400, "x")),
    );
    let sent = 0;
    const end = performance.now() + seconds * 1000;
    const batch: Promise<number>[] = [];
    while (performance.now() < end) {
      for (let i = 0; i < 32; i++) {
        batch.push(socket.send(datagrams[sent++ % 1000], to));
      }
      await Promise.all(batch);
      batch.length = 0;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    const stats = await server.ask("stats");
    if (stats === null) throw new Error(`${name}: no stats`);
    const run = {
      receivedPerSec: stats.received / seconds,
      sentPerSec: stats.sent / seconds,
      repliesPerRequest: stats.sent / stats.received,
      dropped: stats.sendDropped,
    };
    console.log(
      `  ${name}: flooded ${fmt(sent)}, received ${fmt(stats.received)}, ` +
        `sent ${fmt(stats.sent)}, dropped ${fmt(stats.sendDropped)}`,
    );
    return run;
  } finally {
    socket.close();
    await server.stop();
  }
}

const runs = servers.map(() => [] as Run[]);
for (let round = 0; round < Number(values.rounds); round++) {
  console.log(`round ${round + 1}:`);
  for (let k = 0; k < servers.length; k++) {
    const index = (k + round) % servers.length;
    const { name, path } = servers[index];
    runs[index].push(await flood(name, path));
  }
}

const stat = (xs: number[], digits = 0) =>
  range(
    { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) },
    digits,
  );
console.log(
  `\n${seconds} s floods, ${values.replies} replies per datagram, ${values.rounds} rounds:`,
);
console.log(
  "| server | received/s | sent/s | replies sent per datagram received | replies dropped |",
);
console.log("| --- | --- | --- | --- | --- |");
servers.forEach(({ name }, k) => {
  const r = runs[k];
  console.log(
    `| ${name} | ${stat(r.map((x) => x.receivedPerSec))} | ${
      stat(r.map((x) => x.sentPerSec))
    } | ${stat(r.map((x) => x.repliesPerRequest), 2)} | ${
      stat(r.map((x) => x.dropped))
    } |`,
  );
});
