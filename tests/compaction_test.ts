// A coroutine waiting in place on a receive for a while is moved to the
// compact way of waiting (Scheduler._compact, which servers run a few times
// a second), and its connection forgets what it keeps for reuse, as does
// that of a `function*` handler idle on a receive. Nothing a user relies on
// may change when that happens: the bytes arrive, the deadline fires
// exactly, a cancel runs `finally`, the next message is not stale.

import assert from "node:assert/strict";
import {
  CancelledError,
  type Connection,
  type Coroutine,
  delay,
  run,
  Scheduler,
  serve,
  TimeoutError,
} from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
import type { Coroutine as Record } from "../src/scheduler.ts";

/** Starts `body(conn)` owning `conn`; `outcome` settles with how it ended. */
function start(
  scheduler: Scheduler,
  conn: Connection,
  body: (conn: Connection) => Coroutine<unknown>,
): { co: Record; outcome: Promise<[boolean, unknown]> } {
  let settle!: (outcome: [boolean, unknown]) => void;
  const outcome = new Promise<[boolean, unknown]>((r) => settle = r);
  const co = scheduler._spawnSettled(body(conn), conn, {
    onSettled: (isOk, result) => settle([isOk, result]),
  });
  return { co, outcome };
}

/** Starts `body(conn)`, waits until it waits in place, then compacts it. */
async function startCompacted(
  scheduler: Scheduler,
  conn: Connection,
  body: (conn: Connection) => Coroutine<unknown>,
): Promise<{ co: Record; outcome: Promise<[boolean, unknown]> }> {
  const { co, outcome } = start(scheduler, conn, body);
  while (co.heldBy === null) await Promise.resolve();
  scheduler._compact(co); // parked in this epoch: stays in place
  assert.notEqual(co.heldBy, null);
  scheduler._nextEpoch();
  scheduler._compact(co);
  assert.equal(co.heldBy, null);
  while (co.effect === null) await Promise.resolve(); // parked after a yield
  return { co, outcome };
}

/** Sends "late" from `peer`; the coroutine must end with it, received. */
async function sendLateAndExpectIt(
  peer: Connection,
  outcome: Promise<[boolean, unknown]>,
): Promise<void> {
  await run((async function* () {
    yield* peer.send("late");
  })());
  assert.deepEqual(await outcome, [true, "late"]);
  peer.close();
}

Deno.test("a compacted receive still gets the bytes", async () => {
  const [a, b] = memoryConnPair();
  const { outcome } = await startCompacted(
    new Scheduler(),
    b,
    async function* (conn) {
      return new TextDecoder().decode((yield* conn.recv())!);
    },
  );
  await sendLateAndExpectIt(a, outcome);
});

Deno.test("a compacted receive times out exactly at its deadline", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair();
  const { outcome } = await startCompacted(
    new Scheduler({ clock }),
    b,
    async function* (conn) {
      try {
        yield* conn.recv({ timeout: 2500 });
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
        return clock.now();
      }
    },
  );
  assert.deepEqual(await outcome, [true, 2500]);
  a.close();
});

Deno.test("a compacted receive is cancelled at its wait, and finally runs", async () => {
  const scheduler = new Scheduler();
  const [a, b] = memoryConnPair();
  const log: string[] = [];
  const { co, outcome } = await startCompacted(
    scheduler,
    b,
    async function* (conn) {
      try {
        yield* conn.recv();
        log.push("received");
      } catch {
        log.push("caught"); // never: cancellation is not an error
      } finally {
        log.push("finally");
      }
    },
  );
  scheduler._cancel(co);
  const [isOk, result] = await outcome;
  assert.equal(isOk, false);
  assert.ok(result instanceof CancelledError);
  assert.deepEqual(log, ["finally"]);
  a.close();
});

Deno.test("a server connection idle past the compaction interval still echoes", async () => {
  const server = serve(
    { hostname: "127.0.0.1", port: 0 },
    async function* (conn) {
      for (let chunk; (chunk = yield* conn.recv()) !== null;) {
        yield* conn.send(chunk);
      }
    },
  );
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  // Two compaction passes (250 ms apart) move the handler's wait.
  await new Promise((resolve) => setTimeout(resolve, 600));
  await client.write(new TextEncoder().encode("still here"));
  const buf = new Uint8Array(64);
  const n = await client.read(buf);
  assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "still here");
  client.close();
  await server.shutdown();
});

const borrow = { borrow: true };
const ECHO_HANDLERS = {
  "async function*": async function* (conn: Connection) {
    for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
      yield* conn.send(chunk);
    }
  },
  "function*": function* (conn: Connection) {
    for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
      yield* conn.send(chunk);
    }
  },
};

for (const [kind, handler] of Object.entries(ECHO_HANDLERS)) {
  Deno.test(`a server connection idle past the compaction interval after an echo still echoes the next message (${kind})`, async () => {
    const server = serve({ hostname: "127.0.0.1", port: 0 }, handler);
    const client = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    const buf = new Uint8Array(64);
    const echo = async (text: string) => {
      await client.write(new TextEncoder().encode(text));
      const n = await client.read(buf);
      return new TextDecoder().decode(buf.subarray(0, n!));
    };
    assert.equal(await echo("first"), "first");
    // Compaction also forgets the idle send and the borrowed view it keeps
    // for reuse; a message of the same length must not get stale bytes.
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal(await echo("again"), "again");
    assert.equal(await echo("third"), "third");
    client.close();
    await server.shutdown();
  });
}

Deno.test("a function* coroutine waiting on a receive since the last epoch is reported idle, and still gets the bytes", async () => {
  const scheduler = new Scheduler();
  const [a, b] = memoryConnPair();
  const { co, outcome } = start(scheduler, b, function* (conn) {
    return new TextDecoder().decode((yield* conn.recv())!);
  });
  while (co.effect === null) await Promise.resolve();
  assert.equal(scheduler._compact(co), false); // parked in this epoch
  scheduler._nextEpoch();
  assert.equal(scheduler._compact(co), true);
  assert.equal(co.effect?.op, "recv"); // still parked on it
  await sendLateAndExpectIt(a, outcome);
});

Deno.test("a coroutine waiting on a delay is never reported idle", async () => {
  const clock = new VirtualClock();
  const scheduler = new Scheduler({ clock });
  const [a, b] = memoryConnPair();
  const { co, outcome } = start(scheduler, b, function* () {
    yield* delay(1000);
  });
  while (co.effect === null) await Promise.resolve();
  scheduler._nextEpoch();
  assert.equal(scheduler._compact(co), false);
  scheduler._cancel(co);
  assert.equal((await outcome)[0], false); // cancelled, still at its delay
  a.close();
});
