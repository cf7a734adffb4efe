/**
 * One stream: a producer in a process of its own writes `--mib` MiB as
 * fast as the socket takes it, and one connection here reads it all, each
 * of three ways: raw Deno (`conn.read` into one 64 KiB buffer), corio
 * `recv({ borrow: true })` in a loop (no copy) and corio `recv()` (a copy
 * per chunk). The ways take turns, the order rotated each round; the
 * median MB/s and CPU time per MiB (this process's, from
 * `process.resourceUsage()`) of each are reported, with ratios to raw.
 *
 *     deno run --allow-net --allow-run --allow-read bench/download_bench.ts \
 *       [--mib 2048] [--rounds 5]
 *
 * What it shows: the read pacer (`src/_io_pacer.ts`) leaves one busy
 * connection alone; it deferred such a stream's read every ~128 reads
 * (0.62x raw's MB/s) until it counted the reads in flight.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { connect, run } from "@corio/corio";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mib: { type: "string", default: "2048" },
    rounds: { type: "string", default: "5" },
    producer: { type: "boolean", default: false },
    port: { type: "string", default: "0" },
  },
});
const total = Number(values.mib) * 2 ** 20;

if (values.producer) {
  // The producer: each connection gets `total` bytes, then is closed.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(listener.addr.port);
  const chunk = new Uint8Array(256 * 1024).fill(7);
  for await (const conn of listener) {
    (async () => {
      try {
        for (let sent = 0; sent < total;) {
          sent += await conn.write(chunk.subarray(0, total - sent));
        }
      } catch { /* the reader went away */ }
      conn.close();
    })();
  }
}

type Way = "raw" | "recv borrow" | "recv copy";

function cpu(): number {
  const usage = process.resourceUsage();
  return usage.userCPUTime + usage.systemCPUTime;
}

async function measure(way: Way, port: number): Promise<[number, number]> {
  const cpuStart = cpu();
  const started = performance.now();
  let got = 0;
  if (way === "raw") {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const buf = new Uint8Array(64 * 1024);
    try {
      for (let n; (n = await conn.read(buf)) !== null;) got += n;
    } finally {
      conn.close();
    }
  } else {
    got = await run((function* () {
      const conn = yield* connect({ hostname: "127.0.0.1", port });
      const options = { borrow: way === "recv borrow" };
      let got = 0;
      for (let c; (c = yield* conn.recv(options)) !== null;) got += c.length;
      conn.close();
      return got;
    })());
  }
  if (got !== total) throw new Error(`${way}: got ${got} of ${total} bytes`);
  const seconds = (performance.now() - started) / 1000;
  const mib = total / 2 ** 20;
  return [mib / seconds, (cpu() - cpuStart) / mib];
}

if (!values.producer) {
  const producer = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      new URL(import.meta.url).pathname,
      "--producer",
      "--mib",
      String(values.mib),
    ],
    stdout: "piped",
  }).spawn();
  const reader = producer.stdout.pipeThrough(new TextDecoderStream())
    .getReader();
  const port = Number((await reader.read()).value!.trim());
  const ways: Way[] = ["raw", "recv borrow", "recv copy"];
  const results = new Map<Way, [number, number][]>(
    ways.map((way) => [way, []]),
  );
  const rounds = Number(values.rounds);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < ways.length; i++) {
      const way = ways[(i + round) % ways.length];
      results.get(way)!.push(await measure(way, port));
    }
  }
  producer.kill();
  await producer.status;
  reader.releaseLock();
  await producer.stdout.cancel().catch(() => {});

  const median = (xs: number[]) =>
    [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const rawSpeed = median(results.get("raw")!.map(([speed]) => speed));
  const rawCpu = median(results.get("raw")!.map(([, cpu]) => cpu));
  console.log(
    `one connection reading ${values.mib} MiB from a producer process, ${rounds} rounds`,
  );
  console.log(
    "| way | MB/s median (min..max) | vs raw | CPU µs/MiB | vs raw |",
  );
  console.log("| --- | --- | --- | --- | --- |");
  for (const way of ways) {
    const speeds = results.get(way)!.map(([speed]) => speed);
    const cpus = results.get(way)!.map(([, cpu]) => cpu);
    const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
    console.log(
      `| ${way} | ${fmt(median(speeds))} (${fmt(Math.min(...speeds))}..${
        fmt(Math.max(...speeds))
      }) | ${(median(speeds) / rawSpeed).toFixed(2)}x | ${
        fmt(median(cpus))
      } | ${(median(cpus) / rawCpu).toFixed(2)}x |`,
    );
  }
}
