/**
 * Large messages: one connection asks a raw Deno server (same process) for
 * a header line and a body of `--size` bytes, `--messages` times, and reads
 * the body each of three ways: `recvExact(size)` (over 256 KiB, read into
 * a buffer of its own, which it returns), `recv({ borrow: true })` in a
 * loop (no copy) and `recv()` in a loop (a copy per chunk); and raw Deno
 * reading the same into one reused buffer, the baseline, or into a new
 * buffer per body ("raw into new": what a message of its own costs). The
 * ways alternate, `--rounds` times; the median messages/s of each is
 * reported, with its ratio to raw Deno.
 *
 *     deno run --allow-net bench/large_message_bench.ts \
 *       [--size 1048576] [--messages 40] [--rounds 5]
 *
 * The header line first is what makes `recvExact` take a new buffer for
 * every message, as an HTTP client reading a `Content-Length` body does.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { connect, run } from "@corio/corio";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: String(1 << 20) },
    messages: { type: "string", default: "40" },
    rounds: { type: "string", default: "5" },
  },
});
const size = Number(values.size);
const messages = Number(values.messages);
const rounds = Number(values.rounds);

const body = new Uint8Array(size).fill(0x61);
const header = new TextEncoder().encode(`LENGTH ${size}\n`);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const port = listener.addr.port;
const serving = (async () => {
  for await (const conn of listener) {
    (async () => {
      const request = new Uint8Array(16);
      try {
        while ((await conn.read(request)) !== null) {
          await conn.write(header);
          for (let at = 0; at < size;) {
            at += await conn.write(body.subarray(at));
          }
        }
      } catch { /* the client went away */ }
      conn.close();
    })();
  }
})();

type Way =
  | "raw"
  | "raw into new"
  | "recvExact"
  | "recv borrow"
  | "recv copy";

function corio(way: Way): Promise<number> {
  return run((function* () {
    const conn = yield* connect({ hostname: "127.0.0.1", port });
    try {
      const started = performance.now();
      for (let i = 0; i < messages; i++) {
        yield* conn.send("?");
        yield* conn.recvLine();
        if (way === "recvExact") {
          yield* conn.recvExact(size);
          continue;
        }
        for (let got = 0; got < size;) {
          const chunk = yield* conn.recv({ borrow: way === "recv borrow" });
          if (chunk === null) throw new Error("server closed");
          got += chunk.length;
        }
      }
      return messages / ((performance.now() - started) / 1000);
    } finally {
      conn.close();
    }
  })());
}

async function raw(intoNew: boolean): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buf = new Uint8Array(64 * 1024);
  const ask = new Uint8Array([0x3f]);
  try {
    const started = performance.now();
    for (let i = 0; i < messages; i++) {
      await conn.write(ask);
      if (intoNew) {
        // The header into the reused buffer, the body into one of its own.
        for (let want = header.length; want > 0;) {
          const n = await conn.read(buf.subarray(0, want));
          if (n === null) throw new Error("server closed");
          want -= n;
        }
        const message = new Uint8Array(size);
        for (let at = 0; at < size;) {
          const n = await conn.read(message.subarray(at));
          if (n === null) throw new Error("server closed");
          at += n;
        }
        continue;
      }
      let want = size + header.length;
      while (want > 0) {
        const n = await conn.read(buf.subarray(0, Math.min(want, buf.length)));
        if (n === null) throw new Error("server closed");
        want -= n;
      }
    }
    return messages / ((performance.now() - started) / 1000);
  } finally {
    conn.close();
  }
}

const ways: Way[] = [
  "raw",
  "raw into new",
  "recvExact",
  "recv borrow",
  "recv copy",
];
const results = new Map<Way, number[]>(ways.map((way) => [way, []]));
for (let round = 0; round < rounds; round++) {
  // Rotate the order, so no way always runs first in a round.
  for (let i = 0; i < ways.length; i++) {
    const way = ways[(i + round) % ways.length];
    results.get(way)!.push(
      way === "raw" || way === "raw into new"
        ? await raw(way === "raw into new")
        : await corio(way),
    );
  }
}
listener.close();
await serving;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const rawMedian = median(results.get("raw")!);
console.log(
  `${messages} messages of ${size} B after a header line, ${rounds} rounds`,
);
console.log("| way | messages/s median (min..max) | vs raw Deno |");
console.log("| --- | --- | --- |");
for (const way of ways) {
  const xs = results.get(way)!;
  const fmt = (x: number) => Math.round(x).toLocaleString("en-US");
  console.log(
    `| ${way} | ${fmt(median(xs))} (${fmt(Math.min(...xs))}..${
      fmt(Math.max(...xs))
    }) | ${(median(xs) / rawMedian).toFixed(2)}x |`,
  );
}
