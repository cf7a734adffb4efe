// Under overload, reads past the runtime's budget for one event-loop
// iteration start on the next timer turn (src/_read_pacer.ts), so no
// connection starves. These tests drive that with a socket stand-in whose
// reads complete at once, as they do on a loaded server.

import assert from "node:assert/strict";
import {
  Connection,
  ConnectionClosedError,
  delay,
  run,
  spawn,
  type Transport,
} from "@corio/corio";

const ADDR: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 1 };

/** An endless stream of numbered bytes that notes when each read began. */
class InstantTransport implements Transport {
  readonly remoteAddr = ADDR;
  readonly localAddr = ADDR;
  /** Per read: had the event loop turned (see `markTurn`) when it began? */
  readonly reads: boolean[] = [];
  hasTurned = false;

  read(buffer: Uint8Array): Promise<number | null> {
    buffer[0] = this.reads.length & 0xff;
    this.reads.push(this.hasTurned);
    return Promise.resolve(1);
  }

  write(data: Uint8Array): Promise<number> {
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

/** Lets the pacer's own immediate and timer run before the leak checks. */
function nextTimerTurn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("past 128 reads in one iteration the next waits a turn, losing no bytes", async () => {
  const transport = new InstantTransport();
  const conn = pacedConnection(transport);
  transport.markTurn();
  const got = await run((async function* () {
    const bytes: number[] = [];
    for (let i = 0; i < 200; i++) {
      const chunk = yield* conn.recv();
      bytes.push(chunk![0]);
    }
    return bytes;
  })());
  conn.close();
  await conn.settled;
  await nextTimerTurn();

  assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i));
  assert.equal(transport.reads.indexOf(true), 128);
  assert.equal(transport.reads.slice(0, 128).includes(true), false);
});

Deno.test("a connection closed while its read waits for the turn settles unread", async () => {
  const busyConn = pacedConnection(new InstantTransport());
  const idle = new InstantTransport();
  const idleConn = pacedConnection(idle);
  await run((async function* () {
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
  })());
  busyConn.close();
  await Promise.all([busyConn.settled, idleConn.settled]);
  await nextTimerTurn();
  assert.deepEqual(idle.reads, []);
});
