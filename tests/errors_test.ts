// What a user reads when an operation fails: each error names the
// operation, the peer and the limit that was hit, and carries them as fields.
import assert from "node:assert/strict";
import {
  BusyError,
  type Connection,
  ConnectionClosedError,
  delay,
  type Effect,
  Inbox,
  IncompleteReadError,
  LineTooLongError,
  type OperationOptions,
  Pool,
  run,
  spawn,
  TimeoutError,
} from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";

/** Runs `body` on a fresh memory pair and a virtual clock; returns its error. */
async function failureOf(
  body: (conn: Connection, peer: Connection) => Generator<Effect, void>,
  options: Parameters<typeof memoryConnPair>[0] = {},
): Promise<{ error: Error; peer: string }> {
  const clock = new VirtualClock();
  const [conn, peer] = memoryConnPair(options);
  try {
    await run(body(conn, peer), { clock });
  } catch (error) {
    return { error: error as Error, peer: conn.peer };
  } finally {
    conn.close();
    peer.close();
  }
  throw new Error("expected the operation to fail");
}

Deno.test("a receive timeout names the operation, the peer and the timeout", async () => {
  const { error, peer } = await failureOf(function* (conn) {
    yield* conn.recvLine({ timeout: 3000 });
  });
  assert.ok(error instanceof TimeoutError);
  assert.equal(
    error.message,
    `Cannot recvLine from ${peer}: timed out after 3000 ms`,
  );
  assert.equal(error.op, "recvLine");
  assert.equal(error.timeout, 3000);
});

Deno.test("a timeout from an absolute deadline says it was the deadline", async () => {
  const { error, peer } = await failureOf(function* (conn) {
    yield* conn.recv({ deadline: 500 });
  });
  assert.ok(error instanceof TimeoutError);
  assert.equal(
    error.message,
    `Cannot recv from ${peer}: timed out after its deadline`,
  );
  assert.equal(error.timeout, undefined);
});

Deno.test("a timeout names the deadline when the deadline came before the timeout, the timeout when it came first", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<string>();
  const [conn, peer] = memoryConnPair();
  const ends = [conn, peer];
  // A send that times out closes its connection: each gets a pair whose
  // peer never reads.
  const sender = () => {
    const pair = memoryConnPair({ capacity: 64 });
    ends.push(...pair);
    return pair[0];
  };
  const [pooled, pooledPeer] = memoryConnPair();
  const pool = new Pool({
    max: 1,
    // deno-lint-ignore require-yield
    *dial() {
      return pooled;
    },
  });
  const named = await run(
    (function* () {
      using _held = yield* pool.acquire(); // so acquire() below waits
      const sleeper = yield* spawn((function* () {
        yield* delay(1e9);
      })());
      const attempts = [
        (options: OperationOptions) => conn.recv(options),
        (options: OperationOptions) => sender().send("x".repeat(1000), options),
        (options: OperationOptions) => inbox.recv(options),
        (options: OperationOptions) => sleeper.join(options),
        (options: OperationOptions) => pool.acquire(options),
      ];
      const named: (number | undefined)[] = [];
      for (const attempt of attempts) {
        for (const [timeout, deadline] of [[1000, 100], [100, 1000]]) {
          try {
            yield* attempt({ timeout, deadline: clock.now() + deadline });
          } catch (error) {
            assert.ok(error instanceof TimeoutError, String(error));
            named.push(error.timeout);
          }
        }
      }
      sleeper.cancel();
      return named;
    })(),
    { clock },
  );
  for (const end of ends) end.close();
  pooledPeer.close();
  await pool.close();
  // Each operation: the deadline first (no timeout named), then the timeout.
  assert.deepEqual(named, [
    ...[undefined, 100],
    ...[undefined, 100],
    ...[undefined, 100],
    ...[undefined, 100],
    ...[undefined, 100],
  ]);
});

Deno.test("a send timeout names the send and its limit", async () => {
  // The peer never reads, so the 64-byte pipe fills and the send waits.
  const { error, peer } = await failureOf(function* (conn) {
    yield* conn.send(new Uint8Array(1000), { timeout: 1000 });
  }, { capacity: 64 });
  assert.ok(error instanceof TimeoutError);
  assert.equal(
    error.message,
    `Cannot send to ${peer}: timed out after 1000 ms`,
  );
});

Deno.test("a line over the limit names the limit", async () => {
  const { error, peer } = await failureOf(function* (conn, other) {
    yield* other.send("x".repeat(40) + "\n");
    yield* conn.recvLine({ maxLineLength: 16 });
  });
  assert.ok(error instanceof LineTooLongError);
  assert.equal(
    error.message,
    `Cannot receive line from ${peer}: line exceeds maxLineLength of 16 bytes`,
  );
  assert.equal(error.limit, 16);
});

Deno.test("a stream that ends early says how many bytes were wanted and how many came", async () => {
  const { error, peer } = await failureOf(function* (conn, other) {
    yield* other.send("abcd");
    yield* other.closeWrite();
    yield* conn.recvExact(10);
  });
  assert.ok(error instanceof IncompleteReadError);
  assert.equal(
    error.message,
    `Cannot receive 10 bytes from ${peer}: the peer closed the stream after 4`,
  );
  assert.equal(error.expected, 10);
  assert.deepEqual(error.partial, new TextEncoder().encode("abcd"));
});

Deno.test("a second receiver is told another coroutine is receiving", async () => {
  const { error, peer } = await failureOf(function* (conn) {
    const first = yield* spawn((function* () {
      yield* conn.recv();
    })());
    yield* delay(0); // the first receiver starts waiting
    try {
      yield* conn.recv();
    } finally {
      first.cancel();
    }
  });
  assert.ok(error instanceof BusyError);
  assert.equal(
    error.message,
    `Cannot recv from ${peer}: another coroutine is already receiving on this connection`,
  );
  assert.equal(error.op, "recv");
});

Deno.test("an operation on a closed connection says it is closed", async () => {
  const { error, peer } = await failureOf(function* (conn) {
    conn.close();
    yield* conn.send("late");
  });
  assert.ok(error instanceof ConnectionClosedError);
  assert.equal(
    error.message,
    `Cannot send to ${peer}: the connection is closed`,
  );
  assert.equal(error.op, "send");
});
