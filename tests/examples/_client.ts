// Runs a client example as a user would (`deno run --allow-net
// examples/<file> ...`, or with the `permissions` given), collecting its
// output lines; killed if it runs past `bound` ms.

export interface ClientRun {
  code: number;
  lines: string[];
  stderr: string;
}

export interface RunningClient {
  /** Stdout lines so far. */
  lines: string[];
  /** Resolves when the client has exited. */
  finished: Promise<ClientRun>;
}

export function startClient(
  file: string,
  args: string[],
  bound = 30_000,
  permissions: string[] = ["--allow-net"],
): RunningClient {
  const path = new URL(`../../examples/${file}`, import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, path, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  const killer = setTimeout(() => child.kill("SIGKILL"), bound);
  const readStdout = (async () => {
    let partial = "";
    const stream = child.stdout.pipeThrough(new TextDecoderStream());
    for await (const chunk of stream) {
      partial += chunk;
      const parts = partial.split("\n");
      partial = parts.pop()!;
      lines.push(...parts);
    }
    if (partial) lines.push(partial);
  })();
  const readStderr = new Response(child.stderr).text();
  const finished = (async () => {
    const [status, , stderr] = await Promise.all([
      child.status,
      readStdout,
      readStderr,
    ]);
    clearTimeout(killer);
    return { code: status.code, lines, stderr };
  })();
  return { lines, finished };
}

/** Waits, up to `bound` ms in 10 ms steps, until `condition()` holds. */
export async function eventually(
  condition: () => boolean,
  bound = 20_000,
): Promise<void> {
  for (let waited = 0; waited < bound && !condition(); waited += 10) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  if (!condition()) throw new Error("condition not reached in time");
}
