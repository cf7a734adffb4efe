// Shared by the reliability tests (RELIABILITY.md): raw-socket clients,
// bounded polling, percentiles and process probes.

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();

/** Polls `condition` every 5 ms; throws if it is not met within `ms`. */
export async function until(
  condition: () => boolean,
  ms = 10_000,
  what = "condition",
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) {
      throw new Error(`${what} not met within ${ms} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export async function writeAll(
  conn: Deno.Conn,
  bytes: Uint8Array,
): Promise<void> {
  for (let sent = 0; sent < bytes.length;) {
    sent += await conn.write(bytes.subarray(sent));
  }
}

/** Reads one LF-terminated line (byte by byte: test clients only). */
export async function readLine(conn: Deno.Conn): Promise<string | null> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  for (;;) {
    const n = await conn.read(one);
    if (n === null) {
      return bytes.length ? decoder.decode(new Uint8Array(bytes)) : null;
    }
    if (one[0] === 10) return decoder.decode(new Uint8Array(bytes));
    bytes.push(one[0]);
  }
}

/** Reads until EOF or reset; returns the byte count. */
export async function drain(conn: Deno.Conn): Promise<number> {
  const buffer = new Uint8Array(64 * 1024);
  let total = 0;
  try {
    for (let n; (n = await conn.read(buffer)) !== null;) total += n;
  } catch {
    // A reset ends the stream as well.
  }
  return total;
}

/** The p-th percentile (0..100) of `values`. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)
  ];
}

/**
 * User + system CPU time of process `pid`, in ms, from /proc/PID/stat
 * (read by `cat`: Deno wants --allow-all for /proc itself).
 */
export async function cpuTimeMs(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("cat", {
    args: [`/proc/${pid}/stat`],
  }).output();
  const stat = decoder.decode(stdout);
  // Fields after the ")" that ends the command name; utime and stime are
  // fields 14 and 15 of the whole line, in clock ticks (100 per second).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** True when `command` runs (exit 0) with `args`. */
export async function canRun(
  command: string,
  args: string[],
): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, {
      args,
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

/** Lines of a child's stdout, as they arrive. */
export class LineReader {
  lines: string[] = [];
  #partial = "";
  readonly done: Promise<void>;
  constructor(stream: ReadableStream<Uint8Array>) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    this.done = (async () => {
      for (let chunk; !(chunk = await reader.read()).done;) {
        const parts = (this.#partial + chunk.value).split("\n");
        this.#partial = parts.pop()!;
        this.lines.push(...parts);
      }
      if (this.#partial) this.lines.push(this.#partial);
    })();
  }
  /** Waits (bounded) for a line matching `pattern`. */
  async waitFor(pattern: RegExp, ms = 20_000): Promise<string> {
    let found: string | undefined;
    await until(
      () => (found = this.lines.find((l) => pattern.test(l))) !== undefined,
      ms,
      `a line matching ${pattern}`,
    );
    return found!;
  }
}

/** The repository's deno.json, for `deno run --config` in subprocesses. */
export const CONFIG = new URL("../../deno.json", import.meta.url).pathname;
export const fixture = (name: string): string =>
  new URL(`../fixtures/${name}`, import.meta.url).pathname;
