// Under overload, reads past the runtime's budget for one event-loop
// iteration start on the next timer turn (src/_io_pacer.ts), so no
// connection starves. These tests drive that with a socket stand-in whose
// reads complete at once, as they do on a loaded server.

import assert from "node:assert/strict";
import {
  Connection,
  ConnectionClosedError,
  ConnectionResetError,
  delay,
  run,
  spawn,
  type Transport,
  wait,
} from "@corio/corio";

const ADDR: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };

/** An endless stream of numbered bytes that notes when each read began. */
class InstantTransport implements Transport {
  readonly remoteAddr = ADDR;
  readonly localAddr = ADDR;
  /** Per read: had the event loop turned (see `markTurn`) when it began? */
  readonly reads: boolean[] = [];
  /** Per write: its first byte, and whether the loop had turned. */
  readonly writes: [number, boolean][] = [];
  hasTurned = false;

  read(buffer: Uint8Array): Promise<number | null> {
    buffer[0] = this.reads.length & 0xff;
    this.reads.push(this.hasTurned);
    return Promise.resolve(1);
  }

  write(data: Uint8Array): Promise<number> {
    this.writes.push([data[0], this.hasTurned]);
    return Promise.resolve(data.length);
  }

  closeWrite(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}

  /** Notes the first event-loop turn after now. */
  markTurn(): void {
    setImmediate(() => this.hasTurned = true);
  }
}

/** A connection paced as `serve` and `connect` pace Deno's sockets. */
function pacedConnection(transport: Transport): Connection {
  const connection = new Connection(transport);
  connection.isPaced = true;
  return connection;
}

/** A coroutine of one send. */
function* sendOf(conn: Connection, data: Uint8Array | string) {
  yield* conn.send(data);
}

/** Lets the pacer's own immediate and timer run before the leak checks. */
function nextTimerTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** A socket whose one read completes when the test says (`end`). */
class HeldReadTransport extends InstantTransport {
  #end: (n: null) => void = () => {};
  override read(): Promise<number | null> {
    return new Promise((resolve) => this.#end = resolve);
  }
  end(): void {
    this.#end(null);
  }
}

/**
 * Runs `body` while `count` other connections each have a read in flight
 * that completes only after it: the runtime holding that many reads.
 */
async function withReadsInFlight(
  count: number,
  body: () => Promise<void>,
): Promise<void> {
  const held = Array.from({ length: count }, () => new HeldReadTransport());
  const conns = held.map(pacedConnection);
  const reading = conns.map((conn) =>
    run((function* () {
      return yield* conn.recv();
    })())
  );
  try {
    await body();
  } finally {
    for (const transport of held) transport.end();
    await Promise.all(reading);
    for (const conn of conns) conn.close();
    await Promise.all(conns.map((conn) => conn.settled));
  }
}

Deno.test("past 128 reads in one iteration, with 128 more in flight, the next waits a turn, losing no bytes", async () => {
  const transport = new InstantTransport();
  const conn = pacedConnection(transport);
  let got: number[] = [];
  await withReadsInFlight(128, async () => {
    transport.markTurn();
    got = await run((async function* () {
      const bytes: number[] = [];
      for (let i = 0; i < 200; i++) {
        const chunk = yield* conn.recv();
        bytes.push(chunk![0]);
      }
      return bytes;
    })());
  });
  conn.close();
  await conn.settled;
  await nextTimerTurn();

  assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i));
  assert.equal(transport.reads.indexOf(true), 128);
  assert.equal(transport.reads.slice(0, 128).includes(true), false);
});

Deno.test("reads with fewer than 128 in flight never wait a turn, however many complete in one iteration: a single stream is not slowed", async () => {
  const transport = new InstantTransport();
  const conn = pacedConnection(transport);
  await withReadsInFlight(126, async () => {
    transport.markTurn();
    await run((async function* () {
      for (let i = 0; i < 1000; i++) yield* conn.recv();
    })());
  });
  conn.close();
  await conn.settled;
  await nextTimerTurn();
  assert.equal(transport.reads.length, 1000);
  assert.equal(transport.reads.includes(true), false);
});

Deno.test("a connection closed while its read waits for the turn settles unread", async () => {
  const busyConn = pacedConnection(new InstantTransport());
  const idle = new InstantTransport();
  const idleConn = pacedConnection(idle);
  await withReadsInFlight(128, () =>
    run((async function* () {
      for (let i = 0; i < 128; i++) yield* busyConn.recv();
      // The budget is spent: this receive's read is deferred, not started.
      const reader = yield* spawn((async function* () {
        return yield* idleConn.recv();
      })());
      yield* delay(0);
      idleConn.close();
      try {
        yield* reader.join();
        assert.fail("the receive should fail");
      } catch (error) {
        assert.ok(error instanceof ConnectionClosedError);
      }
    })()));
  busyConn.close();
  await Promise.all([busyConn.settled, idleConn.settled]);
  await nextTimerTurn();
  assert.deepEqual(idle.reads, []);
});

/** Writes that stay pending until `finish()`: a socket's, under load. */
class SlowWriteTransport extends InstantTransport {
  /** Each write's first byte, in the order they began. */
  readonly begun: number[] = [];
  static pending: (() => void)[] = [];
  override write(data: Uint8Array): Promise<number> {
    this.begun.push(data[0]);
    return new Promise((resolve) => {
      SlowWriteTransport.pending.push(() => resolve(data.length));
    });
  }
  /** Ends the `count` oldest pending writes, of any connection. */
  static finish(count: number): void {
    for (const end of SlowWriteTransport.pending.splice(0, count)) end();
  }
}

Deno.test("of the writes started in one iteration at most 128 are pending; the next start as those end, in the order asked for", async () => {
  const transports = Array.from(
    { length: 200 },
    () => new SlowWriteTransport(),
  );
  const conns = transports.map(pacedConnection);
  const begun = () => transports.filter((t) => t.begun.length > 0).length;
  const counts: number[] = [];
  await run((async function* () {
    for (const [i, conn] of conns.entries()) {
      yield* spawn(sendOf(conn, new Uint8Array([i])));
    }
    yield* wait(Promise.resolve()); // the sends have begun: one iteration
    counts.push(begun());
    SlowWriteTransport.finish(2);
    yield* wait(Promise.resolve().then(() => {}));
    counts.push(begun()); // two ended: two more begin, in the same iteration
    while (begun() < 200 || SlowWriteTransport.pending.length > 0) {
      SlowWriteTransport.finish(SlowWriteTransport.pending.length);
      yield* delay(0);
    }
  })());
  // All began, in the order asked for.
  for (const conn of conns) conn.close();
  await Promise.all(conns.map((conn) => conn.settled));
  await nextTimerTurn();
  assert.deepEqual(counts, [128, 130]);
  assert.deepEqual(transports.map((t) => t.begun[0]), [...Array(200).keys()]);
});

Deno.test("writes pending since an earlier iteration, to peers that do not read, hold no later write back", async () => {
  const stuck = Array.from({ length: 128 }, () => new SlowWriteTransport());
  const stuckConns = stuck.map(pacedConnection);
  const stuckSends = stuckConns.map((conn) => run(sendOf(conn, "x")));
  await nextTimerTurn(); // 128 writes pending, never to end by themselves
  const fresh = new InstantTransport();
  const freshConn = pacedConnection(fresh);
  await run(sendOf(freshConn, "hello"));
  assert.equal(fresh.writes.length, 1);
  SlowWriteTransport.finish(SlowWriteTransport.pending.length);
  await Promise.all(stuckSends);
  for (const conn of [...stuckConns, freshConn]) conn.close();
  await Promise.all([...stuckConns, freshConn].map((conn) => conn.settled));
  await nextTimerTurn();
});

Deno.test("one connection's stream of small writes, each awaited, is never held", async () => {
  const transport = new InstantTransport();
  const conn = pacedConnection(transport);
  transport.markTurn();
  await run((async function* () {
    for (let i = 0; i < 1000; i++) yield* conn.send(new Uint8Array([i & 0xff]));
  })());
  conn.close();
  await conn.settled;
  await nextTimerTurn();
  assert.equal(transport.writes.length, 1000);
  assert.equal(transport.writes.some(([, turned]) => turned), false);
});

Deno.test("a send whose write is held, cancelled meanwhile, closes the connection and writes nothing", async () => {
  const busy = Array.from({ length: 128 }, () => new SlowWriteTransport());
  const busyConns = busy.map(pacedConnection);
  const held = new SlowWriteTransport();
  const heldConn = pacedConnection(held);
  await run((async function* () {
    for (const conn of busyConns) yield* spawn(sendOf(conn, "x"));
    const sender = yield* spawn(sendOf(heldConn, "late"));
    yield* wait(Promise.resolve()); // 128 writes pending, this one held
    sender.cancel();
    yield* wait(Promise.resolve());
    // Its bytes might have been on their way: closed, as any cut-off write.
    assert.equal(heldConn.isClosed, true);
    while (SlowWriteTransport.pending.length > 0) {
      SlowWriteTransport.finish(SlowWriteTransport.pending.length);
      yield* delay(0);
    }
  })());
  for (const conn of busyConns) conn.close();
  await Promise.all([...busyConns, heldConn].map((conn) => conn.settled));
  await nextTimerTurn();
  assert.deepEqual(held.begun, []);
});

/** A transport whose write throws instead of returning a promise. */
class ThrowingTransport extends SlowWriteTransport {
  override write(_data: Uint8Array): Promise<number> {
    throw new Error("write threw");
  }
}

Deno.test("a transport whose write throws fails that send alone, held or not, and its connection settles", async () => {
  const busy = Array.from({ length: 128 }, () => new SlowWriteTransport());
  const busyConns = busy.map(pacedConnection);
  const conns = [new ThrowingTransport(), new ThrowingTransport()].map(
    pacedConnection,
  );
  const outcome = (conn: Connection) =>
    run((function* () {
      try {
        yield* conn.send("x");
        return "sent";
      } catch (error) {
        // As any write failure: the peer is taken for gone.
        assert.ok(error instanceof ConnectionResetError, String(error));
        return (error.cause as Error).message;
      }
    })());
  const unheld = await outcome(conns[0]);
  const busySends = busyConns.map((conn) => run(sendOf(conn, "x")));
  await Promise.resolve();
  const held = outcome(conns[1]); // held behind the 128, started by their end
  await nextTimerTurn();
  SlowWriteTransport.finish(SlowWriteTransport.pending.length);
  await Promise.all(busySends); // each woken, though the held write threw
  const heldOutcome = await held;
  for (const conn of [...busyConns, ...conns]) conn.close();
  await Promise.all([...busyConns, ...conns].map((conn) => conn.settled));
  await nextTimerTurn();
  assert.deepEqual([unheld, heldOutcome], ["write threw", "write threw"]);
});
