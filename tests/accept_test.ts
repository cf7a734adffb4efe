// The accept loop's failure handling (src/_accept.ts, src/server.ts), on a
// scripted listener and the virtual clock: which failures it retries at
// once, which it backs off from, and how often it reports them.

import assert from "node:assert/strict";
import { AcceptError, type Transport } from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
import { serveOn } from "../src/server.ts";

/** A listener whose accepts answer from a script, then wait until close. */
class ScriptedListener {
  readonly addr: Deno.NetAddr = {
    transport: "tcp",
    hostname: "memory",
    port: 1,
  };
  accepts = 0;
  #script: (Transport | Error)[] = [];
  #parked: ((error: Error) => void) | null = null;
  /** The client ends of the scripted connections, in order. */
  readonly peers: { close(): void }[] = [];

  /** Queues what the next accepts return: a connection, or an error. */
  script(...steps: ("connection" | Error)[]): void {
    for (const step of steps) {
      if (step instanceof Error) {
        this.#script.push(step);
        continue;
      }
      const [serverEnd, clientEnd] = memoryConnPair();
      this.peers.push(clientEnd);
      this.#script.push(serverEnd.transport);
    }
  }

  accept(): Promise<Transport> {
    this.accepts++;
    const step = this.#script.shift();
    if (step instanceof Error) return Promise.reject(step);
    if (step !== undefined) return Promise.resolve(step);
    return new Promise((_, reject) => this.#parked = reject);
  }

  close(): void {
    this.#parked?.(new Deno.errors.BadResource("listener closed"));
    this.#parked = null;
    for (const peer of this.peers) peer.close();
  }
}

/** The runtime's error for an exhausted resource, as Deno raises it. */
function osError(code: string, message: string): Error {
  return Object.assign(new Error(`${message} (os error)`), { code });
}

/** Lets every pending promise reaction run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await null;
}

/**
 * Serves `steps` on a scripted listener and the virtual clock (moved by
 * hand), with handlers that wait until their peer closes; collects what
 * reaches `onError`.
 */
async function serveScript(...steps: ("connection" | Error)[]) {
  const clock = new VirtualClock({ autojump: false });
  const listener = new ScriptedListener();
  listener.script(...steps);
  const reports: AcceptError[] = [];
  const server = serveOn(listener, {
    clock,
    onError: (error) => reports.push(error as AcceptError),
  }, function* (conn) {
    yield* conn.recv();
  });
  await settle();
  return { clock, listener, reports, server };
}

Deno.test("serve() retries an aborted accept at once, without counting it as a failure", async () => {
  const { clock, listener, reports, server } = await serveScript(
    new Deno.errors.ConnectionAborted("peer gave up while queued"),
    "connection",
  );
  assert.equal(clock.now(), 0);
  assert.equal(listener.accepts, 3); // aborted, accepted, waiting
  assert.equal(server.stats.accepted, 1);
  assert.equal(server.stats.acceptErrors, 0);
  assert.deepEqual(reports, []);
  await server.shutdown();
});

Deno.test("serve() backs off 100 ms after ENFILE, ENOBUFS and ENOMEM, reports once per back-off, and serves afterwards", async () => {
  const { clock, reports, server } = await serveScript(
    osError("ENFILE", "Too many open files in system"),
    osError("ENOBUFS", "No buffer space available"),
    osError("ENOMEM", "Cannot allocate memory"),
    "connection",
  );
  // Each failure waits out the back-off before the next accept.
  for (const [at, failures] of [[0, 1], [100, 2], [200, 3]]) {
    assert.equal(clock.now(), at);
    assert.equal(server.stats.acceptErrors, failures);
    assert.equal(server.stats.accepted, 0);
    assert.equal(reports.length, failures);
    clock.advance(99);
    await settle();
    assert.equal(server.stats.acceptErrors, failures, `at ${at + 99} ms`);
    clock.advance(1);
    await settle();
  }
  assert.equal(server.stats.accepted, 1);
  for (const report of reports) {
    assert.ok(report instanceof AcceptError);
    assert.equal(report.backoff, 100);
    assert.equal(report.failures, 1);
  }
  assert.match(
    reports[0].message,
    /^Cannot accept on .*: 1 failure \(Too many open files in system/,
  );
  await server.shutdown();
});

Deno.test("serve() cuts a back-off short when a handler ends, and reports the failures in it together", async () => {
  const tooMany = () => osError("EMFILE", "Too many open files");
  const { clock, listener, reports, server } = await serveScript(
    "connection",
    tooMany(),
    tooMany(),
    tooMany(),
    "connection",
  );
  assert.deepEqual(reports.map((report) => report.failures), [1]);
  // A handler that ends frees a descriptor: the loop retries at once, and
  // that failure falls within the back-off of the last report.
  clock.advance(10);
  listener.peers[0].close();
  await settle();
  assert.equal(server.stats.acceptErrors, 2);
  assert.deepEqual(reports.map((report) => report.failures), [1]);
  // The next back-off ends 100 ms after that retry; its failure is
  // reported with the one before it.
  clock.advance(99);
  await settle();
  assert.equal(server.stats.acceptErrors, 2);
  clock.advance(1);
  await settle();
  assert.equal(server.stats.acceptErrors, 3);
  assert.deepEqual(reports.map((report) => report.failures), [1, 2]);
  clock.advance(100);
  await settle();
  assert.equal(server.stats.accepted, 2);
  assert.equal(server.stats.active, 1);
  await server.shutdown();
});
