// Shared by the Deno benchmark servers: flag parsing, the "listening on"
// line, and a stdin command channel. The runner writes "mem" and reads one
// JSON line of memory figures (after a full GC when --expose-gc is on);
// "exit" ends the process (so that `--cpu-prof` writes its profile).

import { parseArgs } from "node:util";
import { getHeapSpaceStatistics } from "node:v8";

// corio's read-buffer policy, which every hand-written server here follows
// (start at 1 KiB, double when a read fills the buffer, up to 64 KiB), so
// that they all hold the same bytes per connection as corio.
export { INITIAL_READ_SIZE, MAX_READ_SIZE } from "../../src/connection.ts";

/** The flags every Deno benchmark server takes. */
export function flags(): Record<string, string | boolean> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "0" },
      variant: { type: "string", default: "async" },
      "max-connections": { type: "string", default: "20000" },
      "recv-timeout": { type: "string", default: "" },
      // corio_echo.ts only: serve()'s acceptQueues.
      "accept-queues": { type: "string", default: "1" },
      // floor_echo.ts only:
      paced: { type: "boolean", default: false },
      cancellable: { type: "boolean", default: false },
      sync: { type: "boolean", default: false },
      pad: { type: "string", default: "0" },
    },
  });
  return values as Record<string, string | boolean>;
}

/**
 * The hand-written servers' accept loop: listens on 127.0.0.1 at `--port`
 * with Deno's default backlog (as hand-written code gets it), prints the
 * "listening on" line, answers commands, and hands over each connection.
 */
export async function acceptEach(
  handle: (conn: Deno.Conn) => void,
): Promise<void> {
  const listener = Deno.listen({
    hostname: "127.0.0.1",
    port: Number(flags().port),
  });
  console.log(`listening on 127.0.0.1:${listener.addr.port}`);
  answerCommands();
  for await (const conn of listener) handle(conn);
}

/** Reports memory on "mem" lines from stdin until stdin closes. */
export async function answerCommands(): Promise<void> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of Deno.stdin.readable) {
    pending += decoder.decode(chunk, { stream: true });
    let index;
    while ((index = pending.indexOf("\n")) >= 0) {
      const command = pending.slice(0, index).trim();
      pending = pending.slice(index + 1);
      if (command === "exit") Deno.exit(0); // lets --cpu-prof write
      if (command === "mem") {
        (globalThis as { gc?: () => void }).gc?.();
        const usage = Deno.memoryUsage();
        console.log(JSON.stringify({
          rss: usage.rss,
          heapUsed: usage.heapUsed,
          external: usage.external,
          newSpace: newSpaceSize(),
        }));
      }
    }
  }
}

/** Bytes V8 holds for its young generation (committed, used or not). */
export function newSpaceSize(): number {
  return getHeapSpaceStatistics()
    .find((space) => space.space_name === "new_space")?.space_size ?? NaN;
}
