// What `deno check` infers for `yield*` on each operation, in both handler
// forms: the result types are part of the API (no casts in user code), so
// a change that widened one to `any` or `unknown` must fail here. Received
// bytes are `Uint8Array<ArrayBuffer>`, so they fit a variable made with
// `new Uint8Array(n)`. The checks
// are compile-time; the test body runs them once on memory connections.

import assert from "node:assert/strict";
import {
  type Connection,
  delay,
  Inbox,
  type Lease,
  Pool,
  run,
  spawn,
  type Task,
  wait,
} from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";

/** `true` only when A and B are the same type (`any` matches nothing else). */
type Equals<A, B> = (<T>() => T extends A ? 1 : 2) extends
  (<T>() => T extends B ? 1 : 2) ? true : false;

/** Compiles only when `value`'s inferred type is exactly `Expected`. */
function exactly<Expected>() {
  return <Actual>(
    value: Actual,
    ..._: Equals<Actual, Expected> extends true ? [] : [never]
  ): Actual => value;
}

// Received bytes are `Uint8Array<ArrayBuffer>`, the type of `new
// Uint8Array(n)`: they fit a variable made that way.
async function* asyncHandler(conn: Connection, inbox: Inbox<number>) {
  const exact = exactly<Uint8Array<ArrayBuffer>>()(yield* conn.recvExact(2));
  const line = exactly<string | null>()(yield* conn.recvLine());
  const chunk = exactly<Uint8Array<ArrayBuffer> | null>()(yield* conn.recv());
  exactly<void>()(yield* conn.send("ok\n"));
  exactly<void>()(yield* delay(1));
  const answer = exactly<number>()(yield* wait(Promise.resolve(42)));
  const task = exactly<Task<string>>()(yield* spawn(child()));
  const joined = exactly<string>()(yield* task.join());
  const message = exactly<number>()(yield* inbox.recv());
  const polled = exactly<number | undefined>()(yield* inbox.poll());
  return { chunk, exact, line, answer, joined, message, polled };
}

function* syncHandler(conn: Connection) {
  const chunk = exactly<Uint8Array<ArrayBuffer> | null>()(yield* conn.recv());
  const line = exactly<string | null>()(yield* conn.recvLine());
  return { chunk, line };
}

function* child() {
  yield* delay(1);
  return "child";
}

function* borrow(pool: Pool) {
  using lease = exactly<Lease>()(yield* pool.acquire());
  return exactly<Connection>()(lease.conn);
}

Deno.test("yield* gives each operation's own result type, in async function* and function*", async () => {
  const clock = new VirtualClock();
  const [conn, peer] = memoryConnPair();
  const inbox = new Inbox<number>();
  inbox.push(7);
  inbox.push(8);
  await run(
    (function* () {
      yield* peer.send("xyline\nrest");
    })(),
    { clock },
  );
  const result = await run(asyncHandler(conn, inbox), { clock });
  assert.deepEqual(result, {
    chunk: new TextEncoder().encode("rest"),
    exact: new TextEncoder().encode("xy"),
    line: "line",
    answer: 42,
    joined: "child",
    message: 7,
    polled: 8,
  });
  await run(
    (function* () {
      yield* peer.send("x\nlast");
    })(),
    { clock },
  );
  peer.close();
  assert.deepEqual(await run(syncHandler(conn), { clock }), {
    chunk: new TextEncoder().encode("x\nlast"),
    line: null,
  });
  conn.close();
});

Deno.test("yield* pool.acquire() gives a Lease whose conn is a Connection", async () => {
  const [conn, peer] = memoryConnPair();
  const pool = new Pool({
    max: 1,
    // deno-lint-ignore require-yield
    *dial() {
      return conn;
    },
  });
  assert.equal(await run(borrow(pool)), conn);
  await pool.close();
  peer.close();
});
