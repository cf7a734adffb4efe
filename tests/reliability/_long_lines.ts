// R4, shared by the CI test and the soak: `clients` connections at once
// each send 1 MiB without a newline to a line server in a subprocess,
// whose resident memory is sampled meanwhile.

import {
  CONFIG,
  drain,
  encoder,
  fixture,
  LineReader,
  readLine,
  writeAll,
} from "./_helpers.ts";

export interface LongLinesResult {
  clients: number;
  closedByServer: number;
  lineTooLong: number;
  rssBefore: number;
  rssPeak: number;
  growth: number;
  bound: number;
}

const LIMIT = 64 * 1024; // the default maxLineLength
const ONE_READ = 64 * 1024; // MAX_READ_SIZE

export async function runLongLines(clients: number): Promise<LongLinesResult> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "--config", CONFIG, fixture("line_server.ts")],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const out = new LineReader(child.stdout);
  try {
    const port = Number(
      /:(\d+)$/.exec(await out.waitFor(/^listening on /))![1],
    );
    // Warm up with one ordinary exchange, so lazily loaded code is
    // resident; the server answers "rss" with its RSS and samples its peak
    // from there (Deno wants --allow-all to read /proc/PID from here).
    const warm = await Deno.connect({ hostname: "127.0.0.1", port });
    await writeAll(warm, encoder.encode("warm\nrss\n"));
    await readLine(warm);
    const rssBefore = Number(await readLine(warm));
    warm.close();
    const megabyte = new Uint8Array(1024 * 1024).fill(120); // "x", no LF
    const closed = await Promise.all(
      Array.from({ length: clients }, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        const reading = drain(conn);
        let isCut = false;
        try {
          await writeAll(conn, megabyte);
        } catch {
          isCut = true; // reset or broken pipe: the server closed on us
        }
        const echoed = await reading;
        conn.close();
        return isCut || echoed === 0;
      }),
    );
    child.kill("SIGTERM");
    await out.done;
    const { errors, rssPeak } = JSON.parse(out.lines.at(-1)!);
    return {
      clients,
      closedByServer: closed.filter(Boolean).length,
      lineTooLong: errors.LineTooLongError ?? 0,
      rssBefore,
      rssPeak,
      growth: rssPeak - rssBefore,
      bound: clients * (LIMIT + ONE_READ),
    };
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await child.status;
  }
}
