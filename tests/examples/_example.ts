// Runs an example as a user would: `deno run <flags> examples/<file> --port 0`
// (or with no --port, to use its default), waits for its
// `listening on HOST:PORT` line, and stops it with SIGTERM.

export interface RunningExample {
  hostname: string;
  port: number;
  /** The socket's path, for `listening on unix:PATH` (port is then 0). */
  path?: string;
  /** Every stdout line after the first. */
  lines: string[];
  /**
   * Sends SIGTERM and resolves with the exit code, the remaining output and
   * everything it wrote to stderr (which is also passed on to the test's).
   */
  stop(): Promise<{ code: number; lines: string[]; stderr: string }>;
}

export async function startExample(
  file: string,
  flags: string[],
  args: string[] = [],
  { isDefaultPort = false } = {},
): Promise<RunningExample> {
  const path = new URL(`../../examples/${file}`, import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      ...flags,
      path,
      ...(isDefaultPort ? [] : ["--port", "0"]),
      "--hostname",
      "127.0.0.1",
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const pumpStderr = (async () => {
    for await (
      const chunk of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      stderr += chunk;
      await Deno.stderr.write(new TextEncoder().encode(chunk));
    }
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const lines: string[] = [];
  let partial = "";
  let first: string | undefined;
  const pump = (async () => {
    for (let chunk; !(chunk = await reader.read()).done;) {
      partial += chunk.value;
      const parts = partial.split("\n");
      partial = parts.pop()!;
      for (const line of parts) {
        if (first === undefined) first = line;
        else lines.push(line);
      }
    }
  })();
  const deadline = Date.now() + 20_000;
  while (first === undefined && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const unix = /^listening on unix:(.+)$/.exec(first ?? "");
  const match: readonly string[] | null = unix
    ? [first!, "unix", "0"]
    : /^listening on (.+):(\d+)$/.exec(first ?? "");
  if (!match) {
    child.kill("SIGKILL");
    await pump;
    await pumpStderr;
    await child.status;
    throw new Error(
      `${file} did not print "listening on HOST:PORT" (or unix:PATH) first: ${first}`,
    );
  }
  return {
    hostname: match[1],
    port: Number(match[2]),
    path: unix?.[1],
    lines,
    async stop() {
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      const status = await child.status;
      clearTimeout(killer);
      await pump;
      await pumpStderr;
      return { code: status.code, lines, stderr };
    },
  };
}

/**
 * Connects (to 127.0.0.1:`to`, or with `to()`: TLS, a Unix socket), sends
 * `request`, reads until `expectBytes` bytes or EOF.
 */
export async function exchange(
  to: number | (() => Promise<Deno.Conn>),
  request: Uint8Array | string,
  expectBytes: number,
): Promise<Uint8Array> {
  const conn = typeof to === "number"
    ? await Deno.connect({ hostname: "127.0.0.1", port: to })
    : await to();
  try {
    const bytes = typeof request === "string"
      ? new TextEncoder().encode(request)
      : request;
    for (let sent = 0; sent < bytes.length;) {
      sent += await conn.write(bytes.subarray(sent));
    }
    const out = new Uint8Array(expectBytes);
    let got = 0;
    while (got < expectBytes) {
      const n = await conn.read(out.subarray(got));
      if (n === null) break;
      got += n;
    }
    return out.subarray(0, got);
  } finally {
    conn.close();
  }
}
