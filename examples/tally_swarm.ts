/**
 * Seed 004's scale: tens of thousands of client coroutines on one scheduler,
 * each holding a session with `examples/tally_server.ts`, all open at once.
 *
 *     deno run --allow-net examples/tally_swarm.ts [--host 127.0.0.1] [--port 7000]
 *       [--clients 10000] [--adds 5] [--pause 100] [--timeout 10000]
 *
 * Each client connects and says HELLO, then waits until every client has
 * (so that all the sessions are open at the same time), sends `--adds`
 * random ADDs `--pause` ms apart, checks every running total and the BYE
 * line, and closes. `--timeout` bounds the connect, each reply and the wait
 * for the others. Prints one summary line (sessions that succeeded, how
 * many were open at once, seconds, RSS) and exits 1 if any failed, after
 * printing the first few failures to stderr.
 *
 * Each session is a socket: `ulimit -n` must exceed `--clients` here and
 * on the server (Deno raises the soft limit to the hard one).
 *
 * @module
 */

import { connect, delay, run, spawn, type Task, wait } from "@corio/corio";
import { parseFlags, SERVER_PORT_RANGE } from "./_flags.ts";

/** What the swarm is asked to do. */
export interface SwarmOptions {
  hostname: string;
  port: number;
  clients: number;
  adds: number;
  pause: number;
  timeout: number;
}

/** What the swarm did. */
export interface SwarmResult {
  ok: number;
  failures: string[];
  /** The most sessions that were open at one time. */
  mostAtOnce: number;
}

/** Resolves once every client has arrived (said HELLO) or given up. */
class Gathering {
  #left: number;
  #all = Promise.withResolvers<void>();
  constructor(clients: number) {
    this.#left = clients;
    if (clients === 0) this.#all.resolve();
  }
  get everyone(): Promise<void> {
    return this.#all.promise;
  }
  arrive(): void {
    if (--this.#left === 0) this.#all.resolve();
  }
}

/** Runs `options.clients` sessions at once and reports how they went. */
export async function* swarm(options: SwarmOptions) {
  const { clients, timeout } = options;
  const gathering = new Gathering(clients);
  let open = 0;
  let mostAtOnce = 0;

  async function* session(id: number) {
    let hasArrived = false;
    try {
      const { hostname, port } = options;
      const conn = yield* connect({ hostname, port, timeout });
      mostAtOnce = Math.max(mostAtOnce, ++open);
      try {
        const ask = function* (line: string, code: string) {
          yield* conn.send(line + "\r\n", { timeout });
          const reply = yield* conn.recvLine({ timeout });
          if (reply === null || !reply.startsWith(code + " ")) {
            throw new Error(`client ${id}: ${line} got ${reply}`);
          }
          return reply.slice(code.length + 1);
        };
        yield* ask(`HELLO client-${id}`, "200");
        hasArrived = true;
        gathering.arrive();
        yield* wait(gathering.everyone, { timeout });
        let total = 0;
        for (let i = 0; i < options.adds; i++) {
          yield* delay(options.pause * Math.random());
          const n = Math.floor(Math.random() * 2001) - 1000;
          total += n;
          const got = yield* ask(`ADD ${n}`, "210");
          if (got !== String(total)) {
            throw new Error(`client ${id}: total ${got}, expected ${total}`);
          }
        }
        const bye = yield* ask("BYE", "221");
        const expected = `bye client-${id}: ${total} from ${options.adds} adds`;
        if (bye !== expected) throw new Error(`client ${id}: BYE got ${bye}`);
      } finally {
        open--;
      }
      return null;
    } catch (error) {
      if (!hasArrived) gathering.arrive();
      return error instanceof Error ? error.message : String(error);
    }
  }

  const tasks: Task<string | null>[] = [];
  for (let id = 0; id < clients; id++) tasks.push(yield* spawn(session(id)));
  const failures: string[] = [];
  for (const task of tasks) {
    const failure = yield* task.join();
    if (failure !== null) failures.push(failure);
  }
  const result: SwarmResult = {
    ok: clients - failures.length,
    failures,
    mostAtOnce,
  };
  return result;
}

if (import.meta.main) {
  const flags = parseFlags({
    host: "127.0.0.1",
    port: 7000,
    clients: 10000,
    adds: 5,
    pause: 100,
    timeout: 10000,
  }, {
    port: SERVER_PORT_RANGE,
    clients: { integer: true, min: 0 },
    adds: { integer: true, min: 0 },
    pause: { min: 0 },
    // A connect with no time at all never succeeds.
    timeout: { above: 0, orInfinity: true },
  }, {
    about: `Seed 004's scale: client coroutines that each hold a session with
tally_server.ts, all open at once: HELLO, wait for the others, ADDs, BYE.

  --host ADDR     the server's address
  --port N        the server's port
  --clients N     sessions
  --adds N        ADDs per session
  --pause MS      between ADDs
  --timeout MS    for the connect, each reply and the wait for the others

Prints one summary line; exits 1 if any session failed.`,
  });
  const started = performance.now();
  const result = await run(swarm({
    hostname: flags.host,
    port: flags.port,
    clients: flags.clients,
    adds: flags.adds,
    pause: flags.pause,
    timeout: flags.timeout,
  }));
  const seconds = (performance.now() - started) / 1000;
  const rss = Deno.memoryUsage().rss / 2 ** 20;
  for (const failure of result.failures.slice(0, 5)) console.error(failure);
  console.log(
    `${result.ok} of ${flags.clients} sessions ok, ` +
      `${result.mostAtOnce} open at once; ` +
      `${seconds.toFixed(2)} s, RSS ${rss.toFixed(0)} MiB`,
  );
  if (result.failures.length > 0) Deno.exit(1);
}
