// listen(): a listener a coroutine owns, and accept() as an operation with
// a deadline, a signal and cancellation, over real loopback sockets.
import assert from "node:assert/strict";
import {
  BusyError,
  connect,
  ConnectError,
  ConnectionClosedError,
  delay,
  listen,
  type Listener,
  type ListenOptions,
  type Operation,
  run,
  spawn,
  TimeoutError,
} from "@corio/corio";

const loopback = { hostname: "127.0.0.1" };

/** Runs one operation as a coroutine of its own. */
function runOp<T>(op: Operation<T>): Promise<T> {
  return run((function* () {
    return yield* op;
  })());
}

Deno.test("listen() and accept(): the client's bytes arrive; the connection and the listener are closed when the coroutine that opened them ends", async () => {
  const { promise: listening, resolve } = Promise.withResolvers<number>();
  const server = run((async function* () {
    const listener = yield* listen(loopback);
    resolve(listener.addr.port);
    const conn = yield* listener.accept({ timeout: 1000 });
    return yield* conn.recvLine({ timeout: 1000 });
  })());
  const port = await listening;
  const atClient = await run((async function* () {
    const conn = yield* connect({ ...loopback, port, timeout: 1000 });
    yield* conn.send("hello\n");
    return yield* conn.recv({ timeout: 1000 }); // null: the server side closed
  })());
  assert.equal(await server, "hello");
  assert.equal(atClient, null);
  // The listener went with its coroutine: nothing listens on the port.
  await assert.rejects(
    runOp(connect({ ...loopback, port, timeout: 1000 })),
    ConnectError,
  );
});

Deno.test("accept() times out at its deadline with TimeoutError, and a client that comes later is taken by the next accept(): none is lost", async () => {
  const got = await run((async function* () {
    const listener = yield* listen(loopback);
    const started = performance.now();
    let error: unknown;
    try {
      yield* listener.accept({ timeout: 50 });
    } catch (caught) {
      error = caught;
    }
    const waited = performance.now() - started;
    // The runtime's accept stays in flight; this client completes it.
    const client = yield* connect({ port: listener.addr.port, timeout: 1000 });
    yield* client.send("late\n");
    yield* delay(20);
    const conn = yield* listener.accept({ timeout: 1000 });
    return { error, waited, line: yield* conn.recvLine({ timeout: 1000 }) };
  })());
  assert.ok(got.error instanceof TimeoutError);
  assert.equal(got.error.op, "accept");
  assert.match(got.error.message, /on 127\.0\.0\.1:\d+/);
  assert.ok(got.waited >= 49, `waited ${got.waited} ms`);
  assert.equal(got.line, "late");
});

Deno.test("close() ends a waiting accept() with ConnectionClosedError, and closes a client accepted that no accept() took", async () => {
  const got = await run((async function* () {
    const listener = yield* listen(loopback);
    const waiting = yield* spawn((async function* () {
      try {
        yield* listener.accept();
      } catch (error) {
        return error;
      }
    })());
    yield* delay(10);
    listener.close();
    const closedError = yield* waiting.join();

    const second = yield* listen(loopback);
    try {
      yield* second.accept({ timeout: 0 }); // starts the runtime's accept
    } catch {
      // timed out at once, its accept left in flight
    }
    const client = yield* connect({ port: second.addr.port, timeout: 1000 });
    yield* delay(20); // the accept in flight brings it
    second.close();
    const atClient = yield* client.recv({ timeout: 1000 });
    let afterClose: unknown;
    try {
      yield* second.accept();
    } catch (error) {
      afterClose = error;
    }
    return { closedError, atClient, afterClose, isClosed: second.isClosed };
  })());
  assert.ok(got.closedError instanceof ConnectionClosedError);
  assert.match(got.closedError.message, /the listener is closed/);
  assert.equal(got.atClient, null);
  assert.ok(got.afterClose instanceof ConnectionClosedError);
  assert.equal(got.isClosed, true);
});

Deno.test("a second coroutine accepting on the same listener gets BusyError; the first still gets its client", async () => {
  const got = await run((async function* () {
    const listener = yield* listen(loopback);
    const first = yield* spawn((async function* () {
      const conn = yield* listener.accept({ timeout: 1000 });
      return yield* conn.recvLine({ timeout: 1000 });
    })());
    yield* delay(5);
    let busy: unknown;
    try {
      yield* listener.accept({ timeout: 1000 });
    } catch (error) {
      busy = error;
    }
    const client = yield* connect({ port: listener.addr.port, timeout: 1000 });
    yield* client.send("first\n");
    return { busy, line: yield* first.join() };
  })());
  assert.ok(got.busy instanceof BusyError);
  assert.match(got.busy.message, /already accepting on this listener/);
  assert.equal(got.line, "first");
});

Deno.test("accept() ends with the signal's reason when it aborts, and the listener accepts on", async () => {
  const controller = new AbortController();
  const reason = new Error("changed my mind");
  const got = await run((async function* () {
    const listener = yield* listen(loopback);
    const waiting = yield* spawn((async function* () {
      try {
        yield* listener.accept({ signal: controller.signal });
      } catch (error) {
        return error;
      }
    })());
    yield* delay(5);
    controller.abort(reason);
    const aborted = yield* waiting.join();
    const client = yield* connect({ port: listener.addr.port, timeout: 1000 });
    yield* client.send("next\n");
    const conn = yield* listener.accept({ timeout: 1000 });
    return { aborted, line: yield* conn.recvLine({ timeout: 1000 }) };
  })());
  assert.equal(got.aborted, reason);
  assert.equal(got.line, "next");
});

Deno.test("using closes a listener at the end of its block: nothing listens on its port after", async () => {
  const got = await run((async function* () {
    let port = 0;
    let held: Listener | undefined;
    {
      using listener = yield* listen(loopback);
      port = listener.addr.port;
      held = listener;
    }
    return { port, isClosed: held.isClosed };
  })());
  assert.equal(got.isClosed, true);
  await assert.rejects(
    runOp(connect({ ...loopback, port: got.port, timeout: 1000 })),
    ConnectError,
  );
});

Deno.test("listen() refuses a bad port, backlog or default at the call, a cert without its key, a serve()-only option, and a port in use when it runs, naming it", async () => {
  assert.throws(() => listen({ port: 70000 }), RangeError);
  assert.throws(() => listen({ tcpBacklog: -1 }), RangeError);
  assert.throws(() => listen({ recvTimeout: -5 }), RangeError);
  assert.throws(
    () => listen({ cert: "PEM" }),
    (error: unknown) =>
      error instanceof TypeError &&
      error.message === "Cannot listen TLS: cert needs its key (PEM)",
  );
  for (const option of [{ path: "/tmp/x.sock" }, { acceptQueues: 2 }]) {
    assert.throws(
      () => listen(option as ListenOptions),
      (error: unknown) =>
        error instanceof TypeError && /is for serve\(\)/.test(error.message),
    );
  }
  const taken = Deno.listen(loopback);
  try {
    await assert.rejects(
      runOp(listen({ ...loopback, port: taken.addr.port })),
      (error: unknown) =>
        error instanceof Deno.errors.AddrInUse &&
        error.message.startsWith(
          `Cannot listen on 127.0.0.1:${taken.addr.port}: `,
        ),
    );
  } finally {
    taken.close();
  }
});

for (const form of ["function*", "async function*"] as const) {
  Deno.test(`accept({ timeout: 0 }) takes a client the runtime already accepted, and times out when there is none [${form}]`, async () => {
    function* body() {
      const listener = yield* listen(loopback);
      const outcomes: string[] = [];
      for (let i = 0; i < 2; i++) {
        try {
          yield* listener.accept({ timeout: 0 });
          outcomes.push("client");
        } catch (error) {
          outcomes.push((error as Error).name);
        }
        if (i === 0) {
          yield* connect({ port: listener.addr.port, timeout: 1000 });
          yield* delay(50); // the accept in flight brings it
        }
      }
      return outcomes;
    }
    const outcomes = await run(
      form === "function*" ? body() : (async function* () {
        return yield* body();
      })(),
    );
    assert.deepEqual(outcomes, ["TimeoutError", "client"]);
  });
}
