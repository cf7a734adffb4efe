// The echo servers the benchmarks start, by id: shared by the runner
// (run.ts) and the paired comparison (compare.ts).

const benchDir = new URL(".", import.meta.url).pathname.replace(/\/$/, "");
const denoRun: string[] = [
  Deno.execPath(),
  "run",
  "--allow-net",
  "--v8-flags=--expose-gc",
];

/**
 * Every echo server the suite knows, by id: its label in the report and the
 * command that starts it. The C server's command is set once it is compiled.
 */
export const SERVERS: Record<string, { label: string; cmd: string[] }> = {
  c: { label: "C epoll", cmd: [] }, // filled in once compiled
  raw: {
    label: "raw Deno",
    cmd: [...denoRun, `${benchDir}/servers/raw_deno_echo.ts`],
  },
  node: {
    label: "node:net",
    cmd: ["node", "--expose-gc", `${benchDir}/servers/node_echo.mjs`],
  },
  // The same file under Deno: Deno's node:net reads through a native stream
  // wrap that calls back for every ready socket, with no promise per read.
  "deno-node": {
    label: "node:net under Deno",
    cmd: [...denoRun, `${benchDir}/servers/node_echo.mjs`],
  },
  corio: { label: "corio", cmd: corio("async") },
  "corio-timeout": {
    label: "corio, 30 s recv timeout",
    cmd: corio("async", "--recv-timeout", "30000"),
  },
  "corio-sync": { label: "corio, function*", cmd: corio("sync") },
  "corio-copy": { label: "corio, recv() copying", cmd: corio("copy") },
  "raw-paced": {
    label: "raw Deno, paced (corio's read pacing, no library)",
    cmd: [...denoRun, `${benchDir}/servers/raw_paced_echo.ts`],
  },
  floor: {
    label: "floor: bare typed yield*, no library",
    cmd: [...denoRun, `${benchDir}/servers/floor_echo.ts`],
  },
  "floor-paced": {
    label: "floor, paced (corio's read pacing, no library)",
    cmd: [...denoRun, `${benchDir}/servers/floor_echo.ts`, "--paced"],
  },
  "floor-cancellable": {
    label: "floor, cancellable waits (a promise per wait, no library)",
    cmd: [...denoRun, `${benchDir}/servers/floor_echo.ts`, "--cancellable"],
  },
  "floor-sync": {
    label: "floor, function*: a bare generator driven by a loop, no library",
    cmd: [...denoRun, `${benchDir}/servers/floor_echo.ts`, "--sync"],
  },
  "floor-sync-pad": {
    label:
      "floor, function*, holding 240 B more per connection (as corio's Connection object does)",
    cmd: [
      ...denoRun,
      `${benchDir}/servers/floor_echo.ts`,
      "--sync",
      "--pad",
      "240",
    ],
  },
  "floor-paced-cancellable": {
    label: "floor, paced, cancellable waits (no library)",
    cmd: [
      ...denoRun,
      `${benchDir}/servers/floor_echo.ts`,
      "--paced",
      "--cancellable",
    ],
  },
  "corio-untyped": {
    label: "corio, plain yield (untyped)",
    cmd: corio("untyped"),
  },
  "corio-queues": {
    label: "corio, acceptQueues 4",
    cmd: corio("async", "--accept-queues", "4"),
  },
  "corio-cap": {
    label: "corio, maxConnections 1000",
    cmd: corio("async", "--max-connections", "1000"),
  },
};

function corio(variant: string, ...extra: string[]): string[] {
  return [
    ...denoRun,
    `${benchDir}/servers/corio_echo.ts`,
    "--variant",
    variant,
    ...extra,
  ];
}

/**
 * A server named on a command line: an id of `SERVERS`, or `name=command
 * words` for any command that prints "listening on HOST:PORT" (a server
 * from another checkout, say).
 */
export function serverFromSpec(spec: string): { name: string; cmd: string[] } {
  const at = spec.indexOf("=");
  if (at > 0) {
    return { name: spec.slice(0, at), cmd: spec.slice(at + 1).split(" ") };
  }
  const known = SERVERS[spec];
  if (!known) throw new TypeError(`unknown server ${spec}`);
  return { name: spec, cmd: known.cmd };
}
