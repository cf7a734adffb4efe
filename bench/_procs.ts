// Process plumbing for the benchmark runner: compile the C programs, start
// a server and read its "listening on" line, run the load client, read a
// process's CPU time and RSS from /proc.

/**
 * Where the load client and the servers run: on a machine with two or more
 * cores and `taskset`, the client on CPU 0 and every server on CPU 1, each
 * process with all its threads, so that where the kernel places a process
 * cannot differ from one server to the next. 4 interleaved rounds of raw
 * Deno, the C server, corio and corio `function*` pinned gave C 1.20-1.34x,
 * corio 0.86-0.91x and `function*` 0.91-0.95x raw Deno (unpinned, another
 * 3 rounds: corio 0.87-0.95x, `function*` 0.93-1.07x); pinned, the C server
 * still fell below raw Deno in one round of five in a full run (the report's
 * client check leaves such a round out). Null when not pinned.
 */
export const PINNING: { client: string; server: string } | null =
  await hasTaskset() && navigator.hardwareConcurrency >= 2
    ? { client: "0", server: "1" }
    : null;

async function hasTaskset(): Promise<boolean> {
  try {
    return (await new Deno.Command("taskset", {
      args: ["-c", "0", "true"],
      stdout: "null",
      stderr: "null",
    }).output()).success;
  } catch {
    return false;
  }
}

/** `cmd` run on `cpu` (taskset execs it: the pid stays the command's). */
function pinned(cmd: string[], cpu: string | undefined): string[] {
  return cpu === undefined ? cmd : ["taskset", "-c", cpu, ...cmd];
}

/** The load client's command line for `args` (`--key value`), pinned. */
function clientArgv(
  client: string,
  args: Record<string, string | number>,
): string[] {
  return pinned([
    client,
    ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]),
  ], PINNING?.client);
}

/** A line reader over a child's stdout. */
export class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #pending: string[] = [];
  #buffer = "";
  #inflight: Promise<ReadableStreamReadResult<string>> | null = null;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }
  /** The next line, or null at end of stream or after `timeout` ms. */
  async next(timeout: number): Promise<string | null> {
    const deadline = performance.now() + timeout;
    while (this.#pending.length === 0) {
      const left = deadline - performance.now();
      if (left <= 0) return null;
      let timer: ReturnType<typeof setTimeout> | undefined;
      // A read that loses the race stays in flight for the next call.
      this.#inflight ??= this.#reader.read();
      const read = await Promise.race([
        this.#inflight,
        new Promise<null>((resolve) => timer = setTimeout(resolve, left, null)),
      ]);
      clearTimeout(timer);
      if (read === null) return null;
      this.#inflight = null;
      if (read.done) return null;
      this.#buffer += read.value;
      const parts = this.#buffer.split("\n");
      this.#buffer = parts.pop()!;
      this.#pending.push(...parts);
    }
    return this.#pending.shift()!;
  }
  /** Reads lines until one matches, or null. */
  async until(match: (line: string) => boolean, timeout: number) {
    const deadline = performance.now() + timeout;
    for (;;) {
      const line = await this.next(deadline - performance.now());
      if (line === null || match(line)) return line;
    }
  }
  cancel(): void {
    this.#reader.cancel().catch(() => {});
  }
}

/** A server under test. */
export interface RunningServer {
  pid: number;
  port: number;
  lines: Lines;
  /** Sends a command line on stdin ("mem") and returns the JSON answer. */
  ask(command: string): Promise<Record<string, number> | null>;
  stop(): Promise<void>;
}

/** Starts `cmd` and waits (up to 15 s) for "listening on HOST:PORT". */
export async function startServer(cmd: string[]): Promise<RunningServer> {
  const argv = pinned(cmd, PINNING?.server);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = new Lines(child.stdout);
  const stdin = child.stdin.getWriter();
  const encoder = new TextEncoder();
  const first = await lines.until((l) => l.startsWith("listening on"), 15000);
  if (first === null) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error(`server did not start: ${cmd.join(" ")}`);
  }
  const port = Number(first.slice(first.lastIndexOf(":") + 1));
  return {
    pid: child.pid,
    port,
    lines,
    async ask(command) {
      await stdin.write(encoder.encode(command + "\n"));
      const line = await lines.until((l) => l.startsWith("{"), 10000);
      return line === null ? null : JSON.parse(line);
    },
    async stop() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      lines.cancel();
      await stdin.close().catch(() => {});
    },
  };
}

/** Runs the load client to its end (bounded by `timeout` ms). */
export async function runClient(
  client: string,
  args: Record<string, string | number>,
  timeout: number,
): Promise<Record<string, number>> {
  const lines = await runClientLines(client, args, timeout);
  return lines[lines.length - 1];
}

/**
 * Half a second of echo traffic over 10 connections to `port`: before a
 * memory reading (B8, `heap.ts`), so that what the first messages compile
 * and allocate is in the "before" figure, not charged to the connections.
 */
export async function warmUp(client: string, port: number): Promise<void> {
  await runClient(
    client,
    { port, conns: 10, warmup: 0.2, duration: 0.3 },
    20000,
  );
}

/**
 * Runs the load client to its end and returns its JSON lines: one, or one
 * per server with `--ports`, in that order (each with its `port`).
 */
async function runClientLines(
  client: string,
  args: Record<string, string | number>,
  timeout: number,
): Promise<Record<string, number>[]> {
  const argv = clientArgv(client, args);
  const output = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeout),
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  const lines = text.split("\n").filter((line) => line.startsWith("{"));
  if (lines.length === 0) {
    throw new Error(
      `load client failed (${output.code}): ${text} ${
        new TextDecoder().decode(output.stderr)
      }`,
    );
  }
  return lines.map((line) => JSON.parse(line.replaceAll("nan", "null")));
}

/**
 * Turns of an interleaved ping-pong (`runInterleaved`): seconds each, and
 * how many of them at the start go unmeasured.
 */
export const TURN = { slice: 0.25, settle: 0.05 };

/**
 * Ping-pong against several servers at once: starts them all, gives each
 * its own connections, and has the client drive them one server at a time
 * in turns (`load_client --ports`) until each had `duration` seconds
 * measured. A slow spell of the machine then falls on every server alike.
 * Returns each server's figures, in the order of `cmds` (undefined for one
 * the client reported nothing for).
 */
export async function runInterleaved(
  client: string,
  cmds: string[][],
  args: { conns: number; size: number; depth: number } & {
    warmup: number;
    duration: number;
  },
): Promise<(Record<string, number> | undefined)[]> {
  const servers: RunningServer[] = [];
  try {
    for (const cmd of cmds) servers.push(await startServer(cmd));
    return await interleave(client, servers, args);
  } finally {
    for (const server of servers) await server.stop();
  }
}

/**
 * `runInterleaved` on servers already running; `turn` (default `TURN`) sets
 * the turns.
 */
export async function interleave(
  client: string,
  servers: RunningServer[],
  args: { conns: number; size: number; depth: number } & {
    warmup: number;
    duration: number;
  },
  turn: { slice: number; settle: number } = TURN,
): Promise<(Record<string, number> | undefined)[]> {
  const turns = Math.ceil(args.duration / (turn.slice - turn.settle));
  const lines = await runClientLines(client, {
    ...args,
    ports: servers.map((s) => s.port).join(","),
    "server-pids": servers.map((s) => s.pid).join(","),
    slice: turn.slice,
    settle: turn.settle,
  }, (servers.length * (args.warmup + 10 + turns * turn.slice) + 40) * 1000);
  return servers.map((server) => lines.find((l) => l.port === server.port));
}

/** The load client in idle mode: resolves once all connections are up. */
export async function holdIdle(
  client: string,
  args: Record<string, string | number>,
): Promise<{ ready: Record<string, number>; release(): Promise<void> }> {
  const argv = clientArgv(client, args);
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = new Lines(child.stdout);
  const ready = await lines.until((l) => l.startsWith("ready"), 60000);
  const release = async () => {
    await child.stdin.close().catch(() => {});
    try {
      child.kill("SIGKILL");
    } catch {
      // exited
    }
    await child.status;
    lines.cancel();
  };
  if (ready === null) {
    await release();
    throw new Error("idle client never got all connections up");
  }
  return { ready: JSON.parse(ready.slice("ready ".length)), release };
}

/** A server's memory per idle connection at one moment (B8, idle_rss.ts). */
export interface IdleReading {
  /** RSS gained since before the connections, per connection, bytes. */
  rssPerConn: number;
  /** JS heap gained per connection, bytes (NaN without --expose-gc). */
  heapPerConn: number;
  /** External memory gained per connection, bytes. */
  externalPerConn: number;
  /** V8's young generation then, MiB: resident, yet no heap. */
  newSpaceMiB: number;
  /** The server's RSS then, bytes. */
  rss: number;
}

/**
 * Starts `cmd`, warms it up, has the client open `conns` connections and
 * leave them idle, and reads the server's memory `afterMs` ms (ascending)
 * after they are all up. One round of echo traffic and a GC come first, so
 * that what the first messages compile and allocate is not charged to the
 * connections.
 */
export async function readIdleServer(
  client: string,
  cmd: string[],
  conns: number,
  afterMs: number[],
): Promise<{ connectSeconds: number; readings: IdleReading[] }> {
  const server = await startServer(cmd);
  try {
    await warmUp(client, server.port);
    const before = await server.ask("mem");
    const rssBefore = await rssOf(server.pid);
    const held = await holdIdle(client, {
      port: server.port,
      mode: "idle",
      conns,
      duration: Math.ceil(afterMs[afterMs.length - 1] / 1000) + 60,
    });
    try {
      const readings: IdleReading[] = [];
      let waited = 0;
      for (const ms of afterMs) {
        await new Promise((resolve) => setTimeout(resolve, ms - waited));
        waited = ms;
        const after = await server.ask("mem");
        const rss = await rssOf(server.pid);
        readings.push({
          rssPerConn: (rss - rssBefore) / conns,
          heapPerConn: before && after
            ? (after.heapUsed - before.heapUsed) / conns
            : NaN,
          externalPerConn: before && after
            ? (after.external - before.external) / conns
            : NaN,
          newSpaceMiB: after?.newSpace ? after.newSpace / 2 ** 20 : NaN,
          rss,
        });
      }
      return { connectSeconds: held.ready.connectSeconds, readings };
    } finally {
      await held.release();
    }
  } finally {
    await server.stop();
  }
}

// Deno wants --allow-all to read /proc; the task grants --allow-run, so a
// subprocess reads it instead.
async function readProc(path: string): Promise<string> {
  const out = await new Deno.Command("cat", { args: [path], stdout: "piped" })
    .output();
  return new TextDecoder().decode(out.stdout);
}

/** Resident set size of `pid` in bytes, from /proc/PID/status. */
export async function rssOf(pid: number): Promise<number> {
  const status = await readProc(`/proc/${pid}/status`);
  const match = status.match(/VmRSS:\s+(\d+) kB/);
  return match ? Number(match[1]) * 1024 : NaN;
}

/** Compiles the C programs into `outDir`; returns their paths. */
export async function compileC(
  benchDir: string,
  outDir: string,
): Promise<{ server: string; client: string }> {
  Deno.mkdirSync(outDir, { recursive: true });
  const build = async (source: string, out: string, extra: string[] = []) => {
    const result = await new Deno.Command("gcc", {
      args: ["-O2", "-Wall", "-o", out, source, ...extra],
      stderr: "piped",
    }).output();
    if (!result.success) {
      throw new Error(
        `gcc ${source}: ${new TextDecoder().decode(result.stderr)}`,
      );
    }
    return out;
  };
  return {
    server: await build(
      `${benchDir}/c/echo_server.c`,
      `${outDir}/echo_server`,
    ),
    client: await build(
      `${benchDir}/c/load_client.c`,
      `${outDir}/load_client`,
      ["-lm"],
    ),
  };
}

/** One line about the machine, and the tool versions. */
export async function describeMachine(): Promise<Record<string, string>> {
  const cpuinfo = await readProc("/proc/cpuinfo");
  const model = cpuinfo.match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown";
  const version = async (cmd: string, args: string[]) => {
    try {
      const out = await new Deno.Command(cmd, { args, stdout: "piped" })
        .output();
      return new TextDecoder().decode(out.stdout).split("\n")[0].trim();
    } catch {
      return "not found";
    }
  };
  const memTotal = (await readProc("/proc/meminfo")).match(
    /MemTotal:\s+(\d+)/,
  )?.[1];
  // Other work on the machine skews every figure: say how much there was
  // (not counting this pipeline: ps rates itself by its own short life).
  const busy = (await version("sh", [
    "-c",
    `ps -eo pid=,pcpu=,args= --sort=-pcpu | awk '$1 != ${Deno.pid} && $2 >= 20 && !/defunct/ && !/pcpu=|awk / { printf "%s%% %s %s %s %s; ", $2, $3, $4, $5, $6 }'`,
  ])) || "none";
  return {
    "other processes using ≥ 20% CPU at start": busy,
    cpu: `${model}, ${navigator.hardwareConcurrency} cores`,
    memory: `${Math.round(Number(memTotal) / 1024 / 1024)} GiB`,
    kernel: await version("uname", ["-sr"]),
    deno: `${Deno.version.deno} (V8 ${Deno.version.v8})`,
    node: await version("node", ["--version"]),
    gcc: await version("gcc", ["--version"]),
  };
}
