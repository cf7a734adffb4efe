/**
 * The demo behind `deno task demo`: starts `echo_server.ts` on a free port,
 * runs 20 client coroutines against it (each sends 5 messages and checks
 * the echo), shows a receive timeout that loses nothing, and stops.
 *
 *     deno run --allow-net --allow-run --allow-read examples/demo.ts
 *
 * It takes no flags but `-h`/`--help`.
 *
 * @module
 */

import {
  connect,
  type Connection,
  run,
  spawn,
  TimeoutError,
} from "@corio/corio";
import { parseFlags } from "./_flags.ts";

parseFlags({}, {}, {
  about: `The demo behind \`deno task demo\`: starts echo_server.ts on a free
port, runs 20 client coroutines against it (5 messages each, every echo
checked), shows a receive timeout that loses nothing, and stops it.`,
});

const server = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "--allow-net",
    new URL("./echo_server.ts", import.meta.url).pathname,
    "--port",
    "0",
    "--hostname",
    "127.0.0.1",
  ],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
// Stopped from outside (Ctrl-C, SIGTERM), the demo takes its server along.
const onInterrupt = () => stopNow(130);
const onTerminate = () => stopNow(143);
function stopNow(code: number): never {
  server.kill("SIGTERM");
  Deno.exit(code);
}
Deno.addSignalListener("SIGINT", onInterrupt);
Deno.addSignalListener("SIGTERM", onTerminate);
const lines = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
let failure: unknown = null;
try {
  await demo();
} catch (error) {
  failure = error; // still stop the server, then fail
}
Deno.removeSignalListener("SIGINT", onInterrupt);
Deno.removeSignalListener("SIGTERM", onTerminate);
server.kill("SIGTERM");
for (let chunk; !(chunk = await lines.read()).done;) {
  console.log(`server: ${chunk.value.trim()}`);
}
const status = await server.status;
console.log(`server exited with code ${status.code}`);
if (failure !== null) throw failure;

async function demo(): Promise<void> {
  const first = (await lines.read()).value ?? "";
  console.log(`server: ${first.trim()}`);
  const port = Number(/:(\d+)/.exec(first)?.[1]);

  async function* client(id: number) {
    const conn: Connection = yield* connect({ port, timeout: 1000 });
    for (let i = 0; i < 5; i++) {
      const message = `client ${id} message ${i}\n`;
      yield* conn.send(message);
      const echoed = yield* conn.recvLine({ timeout: 1000 });
      if (echoed + "\n" !== message) throw new Error(`bad echo: ${echoed}`);
    }
    return id;
  }

  const started = performance.now();
  const done = await run((async function* () {
    const tasks = [];
    for (let id = 0; id < 20; id++) tasks.push(yield* spawn(client(id)));
    let count = 0;
    for (const task of tasks) count += (yield* task.join()) >= 0 ? 1 : 0;
    return count;
  })());
  console.log(
    `${done} clients x 5 messages echoed in ${
      (performance.now() - started).toFixed(1)
    } ms`,
  );

  const kept = await run((async function* () {
    const conn = yield* connect({ port, timeout: 1000 });
    try {
      yield* conn.recv({ timeout: 100 });
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      console.log(`recv timed out as asked: ${error.message}`);
    }
    yield* conn.send("still here\n");
    return yield* conn.recvLine({ timeout: 1000 });
  })());
  console.log(`after the timeout the same connection still echoes: ${kept}`);
}
