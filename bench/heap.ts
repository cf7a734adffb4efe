/**
 * What an idle connection holds in the JavaScript heap, object by object:
 * B8's "heap KiB per connection" taken apart. Each server runs with V8's
 * inspector on; after a little echo traffic the tool takes a heap
 * snapshot (after a full GC), has the load client open N connections and
 * leave them idle, waits 1.5 s (corio compacts handlers that have waited a
 * while) and takes another. The difference, grouped by V8's node type and
 * name (a class, "closure", "Promise", the ArrayBuffer's bytes), divided by
 * N, is what one idle connection costs. A snapshot counts objects, not
 * time: the figures repeat to the byte from run to run, so a change that
 * saves a field shows.
 *
 *     deno task heap [--conns 2000] [--top 30] SERVER...
 *
 * SERVERs are named as for `compare.ts` (ids, or `name=command words` for a
 * Deno command whose first word after `run` can take `--inspect`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { compileC, holdIdle, startServer, warmUp } from "./_procs.ts";
import { fmt } from "./_report.ts";
import { serverFromSpec } from "./_servers.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    conns: { type: "string", default: "2000" },
    top: { type: "string", default: "30" },
  },
});
if (positionals.length < 1) {
  console.error("usage: heap.ts [--conns N] [--top N] SERVER...");
  Deno.exit(2);
}
const conns = Number(values.conns);

const benchDir = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
const { client } = await compileC(benchDir, `${benchDir}/results`);

/** Object count and self size by "type: name". */
type Census = Map<string, { count: number; bytes: number }>;

/** One inspector session: requests by id, snapshot chunks gathered. */
class Inspector {
  #ws: WebSocket;
  #nextId = 1;
  #waiting = new Map<number, () => void>();
  #chunks: string[] = [];
  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.method === "HeapProfiler.addHeapSnapshotChunk") {
        this.#chunks.push(message.params.chunk);
      }
      this.#waiting.get(message.id)?.();
      this.#waiting.delete(message.id);
    };
  }
  static async open(port: number): Promise<Inspector> {
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`))
      .json();
    const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    return new Inspector(ws);
  }
  #call(method: string, params: Record<string, unknown> = {}): Promise<void> {
    const id = this.#nextId++;
    const done = new Promise<void>((resolve) => this.#waiting.set(id, resolve));
    this.#ws.send(JSON.stringify({ id, method, params }));
    return done;
  }
  /** A census of the heap after a full GC. */
  async census(): Promise<Census> {
    await this.#call("HeapProfiler.collectGarbage");
    this.#chunks = [];
    await this.#call("HeapProfiler.takeHeapSnapshot", {
      reportProgress: false,
    });
    const snapshot = JSON.parse(this.#chunks.join(""));
    this.#chunks = [];
    return censusOf(snapshot);
  }
  close(): void {
    this.#ws.close();
  }
}

function censusOf(snapshot: {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}): Census {
  const fields = snapshot.snapshot.meta.node_fields;
  const types = snapshot.snapshot.meta.node_types[0];
  const { nodes, strings } = snapshot;
  const width = fields.length;
  const typeAt = fields.indexOf("type");
  const nameAt = fields.indexOf("name");
  const sizeAt = fields.indexOf("self_size");
  const census: Census = new Map();
  for (let i = 0; i < nodes.length; i += width) {
    const type = types[nodes[i + typeAt]];
    // A string's name is its text, a closure's its function's name.
    const name = type.includes("string") ? "" : strings[nodes[i + nameAt]];
    const key = `${type}: ${name.length > 60 ? name.slice(0, 60) : name}`;
    const entry = census.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += nodes[i + sizeAt];
    census.set(key, entry);
  }
  return census;
}

/** Each kind's bytes and count per idle connection, largest first. */
async function perConnection(spec: string, inspectPort: number) {
  const { cmd } = serverFromSpec(spec);
  const at = cmd.indexOf("run");
  if (at < 0) throw new TypeError(`${spec}: not a "deno run" command`);
  const server = await startServer([
    ...cmd.slice(0, at + 1),
    `--inspect=127.0.0.1:${inspectPort}`,
    ...cmd.slice(at + 1),
  ]);
  try {
    await warmUp(client, server.port);
    const inspector = await Inspector.open(inspectPort);
    try {
      const before = await inspector.census();
      const held = await holdIdle(client, {
        port: server.port,
        mode: "idle",
        conns,
        duration: 60,
      });
      try {
        await new Promise((resolve) => setTimeout(resolve, 1500));
        const after = await inspector.census();
        return [...after].map(([key, { count, bytes }]) => ({
          key,
          count: (count - (before.get(key)?.count ?? 0)) / conns,
          bytes: (bytes - (before.get(key)?.bytes ?? 0)) / conns,
        })).sort((a, b) => b.bytes - a.bytes);
      } finally {
        await held.release();
      }
    } finally {
      inspector.close();
    }
  } finally {
    await server.stop();
  }
}

const names = positionals.map((spec) => serverFromSpec(spec).name);
const rows = new Map<string, number[]>();
const counts = new Map<string, number[]>();
const totals: number[] = [];
for (const [k, spec] of positionals.entries()) {
  const kinds = await perConnection(spec, 9329 + k);
  totals.push(kinds.reduce((sum, kind) => sum + kind.bytes, 0));
  for (const kind of kinds) {
    if (!rows.has(kind.key)) {
      rows.set(kind.key, names.map(() => 0));
      counts.set(kind.key, names.map(() => 0));
    }
    rows.get(kind.key)![k] = kind.bytes;
    counts.get(kind.key)![k] = kind.count;
  }
}

console.log(
  `\n${conns} idle connections; JavaScript heap per connection after a full GC (bytes, and objects per connection)\n`,
);
const delta = names.slice(1).map((name) => `${name} − ${names[0]}`);
console.log(`| kind | ${[...names, ...delta].join(" | ")} |`);
console.log(`| --- |${" ---: |".repeat(names.length * 2 - 1)}`);
const cells = (xs: number[]) => [
  ...xs.map((x) => fmt(x, 0)),
  ...xs.slice(1).map((x) => `${x - xs[0] >= 0 ? "+" : ""}${fmt(x - xs[0], 0)}`),
];
console.log(`| **all** | ${cells(totals).join(" | ")} |`);
const largest = [...rows].sort((a, b) =>
  Math.max(...b[1].map(Math.abs)) - Math.max(...a[1].map(Math.abs))
).slice(0, Number(values.top));
for (const [key, bytes] of largest) {
  const n = counts.get(key)!.map((c) => c.toFixed(2)).join(", ");
  console.log(`| ${key} (${n}) | ${cells(bytes).join(" | ")} |`);
}
