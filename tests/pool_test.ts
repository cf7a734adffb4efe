import assert from "node:assert/strict";
import {
  CancelledError,
  connect,
  ConnectError,
  type Connection,
  ConnectionClosedError,
  ConnectionResetError,
  type Coroutine,
  delay,
  type Effect,
  type Lease,
  type Operation,
  Pool,
  PoolClosedError,
  PoolExhaustedError,
  run,
  Scheduler,
  serve,
  spawn,
  type Task,
  TimeoutError,
} from "../mod.ts";
import { memoryConnPair, VirtualClock } from "../testing.ts";
import { readCompleted } from "../src/_io_pacer.ts";

async function* echo(conn: Connection): AsyncGenerator<Effect, void, unknown> {
  for (let chunk; (chunk = yield* conn.recv()) !== null;) {
    yield* conn.send(chunk);
  }
}

/**
 * A server of memory connections: each dial makes a pair and runs `echo`
 * (or `handler`) on the server end, on the test's clock.
 */
function memoryServer(
  clock: VirtualClock,
  handler: (conn: Connection) => Coroutine<void> = echo,
  capacity?: number,
) {
  const scheduler = new Scheduler({ clock });
  const peers: Connection[] = [];
  const tasks: Task<void>[] = [];
  return {
    peers,
    // deno-lint-ignore require-yield
    *dial(): Generator<Effect, Connection, unknown> {
      const [client, server] = memoryConnPair({ capacity });
      peers.push(server);
      tasks.push(scheduler.spawn(handler(server), { owns: [server] }));
      return client;
    },
    async close(): Promise<void> {
      for (const task of tasks) task.cancel();
      await Promise.allSettled(tasks.map((task) => task.finished));
    },
  };
}

/** Echoes each line 5 ms later, until the pool closes the connection. */
async function* slowLineEcho(conn: Connection) {
  try {
    for (let line; (line = yield* conn.recvLine()) !== null;) {
      yield* delay(5);
      yield* conn.send(`${line}\n`);
    }
  } catch (error) {
    // The pool closed the first connection before its reply.
    if (!(error instanceof ConnectionResetError)) throw error;
  }
}

async function* roundTrip(lease: Lease, text: string) {
  yield* lease.conn.send(text + "\n");
  return yield* lease.conn.recvLine({ timeout: 1000 });
}

Deno.test("Pool reuses a returned connection instead of dialling again", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 2, dial: server.dial });
  const conns = await run(
    (async function* () {
      const seen: Connection[] = [];
      for (let i = 0; i < 3; i++) {
        using lease = yield* pool.acquire();
        assert.equal(yield* roundTrip(lease, `ping ${i}`), `ping ${i}`);
        seen.push(lease.conn);
      }
      return seen;
    })(),
    { clock },
  );
  assert.equal(conns[0], conns[1]);
  assert.equal(conns[1], conns[2]);
  assert.deepEqual(pool.stats, {
    open: 1,
    idle: 1,
    leased: 0,
    connecting: 0,
    waiting: 0,
    created: 1,
    discarded: 0,
  });
  await pool.close();
  await server.close();
});

Deno.test("Pool never has more than max connections open or dialling", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  let peak = 0;
  const pool = new Pool({
    max: 3,
    *dial() {
      yield* delay(5); // a slow handshake: dials overlap
      return yield* server.dial();
    },
  });
  const observe = () => {
    const { open, connecting } = pool.stats;
    peak = Math.max(peak, open + connecting);
  };
  await run(
    (async function* () {
      const tasks = [];
      for (let id = 0; id < 20; id++) {
        tasks.push(
          yield* spawn((async function* () {
            observe();
            using lease = yield* pool.acquire();
            observe();
            yield* delay(10);
            assert.equal(yield* roundTrip(lease, `c${id}`), `c${id}`);
            observe();
          })()),
        );
      }
      for (const task of tasks) yield* task.join();
    })(),
    { clock },
  );
  assert.equal(peak, 3);
  assert.equal(pool.stats.created, 3);
  assert.equal(pool.stats.open, 3);
  await pool.close();
  await server.close();
});

Deno.test("Pool serves waiting coroutines first come, first served", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  const order: string[] = [];
  await run(
    (async function* () {
      const held = yield* pool.acquire();
      const tasks = [];
      for (const name of ["a", "b", "c", "d"]) {
        tasks.push(
          yield* spawn((async function* () {
            using lease = yield* pool.acquire();
            order.push(name);
            yield* roundTrip(lease, name);
          })()),
        );
        yield* delay(1); // queue them in this order
      }
      assert.equal(pool.stats.waiting, 4);
      held.release();
      for (const task of tasks) yield* task.join();
    })(),
    { clock },
  );
  assert.deepEqual(order, ["a", "b", "c", "d"]);
  assert.equal(pool.stats.created, 1);
  await pool.close();
  await server.close();
});

Deno.test("acquire() throws TimeoutError exactly at its deadline", async () => {
  const clock = new VirtualClock({ start: 1000 });
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial, acquireTimeout: 400 });
  const [byOption, byDefault] = await run(
    (async function* () {
      using _held = yield* pool.acquire();
      const failedAt = [];
      for (const options of [{ timeout: 250 }, undefined]) {
        const started = clock.now();
        try {
          yield* pool.acquire(options);
          assert.fail("acquire should time out");
        } catch (error) {
          assert.ok(error instanceof TimeoutError);
          assert.equal(error.op, "acquire");
          // Waiting for a connection, not dialling one.
          assert.match(
            error.message,
            /^Cannot acquire from pool of dial\(\): /,
          );
          failedAt.push(clock.now() - started);
        }
      }
      assert.equal(pool.stats.waiting, 0);
      return failedAt;
    })(),
    { clock },
  );
  assert.equal(byOption, 250);
  assert.equal(byDefault, 400);
  await pool.close();
  await server.close();
});

Deno.test("acquire() over maxWaiting fails at once with PoolExhaustedError", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, maxWaiting: 2, dial: server.dial });
  await run(
    (async function* () {
      const held = yield* pool.acquire();
      const waiters = [];
      for (let i = 0; i < 2; i++) {
        waiters.push(
          yield* spawn((async function* () {
            using _lease = yield* pool.acquire();
          })()),
        );
      }
      yield* delay(1);
      const before = clock.now();
      try {
        yield* pool.acquire({ timeout: 1000 });
        assert.fail("acquire should fail");
      } catch (error) {
        assert.ok(error instanceof PoolExhaustedError);
        assert.equal(error.maxWaiting, 2);
        assert.match(error.message, /2 coroutines already wait \(maxWaiting\)/);
      }
      assert.equal(clock.now(), before);
      held.release();
      for (const waiter of waiters) yield* waiter.join();
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("acquire() with maxWaiting 0 never waits", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, maxWaiting: 0, dial: server.dial });
  await run(
    (async function* () {
      using _held = yield* pool.acquire();
      yield* assertThrows(pool.acquire(), PoolExhaustedError);
      // Not a TimeoutError: a try that could not even queue says why.
      yield* assertThrows(pool.acquire({ timeout: 0 }), PoolExhaustedError);
      yield* assertThrows(pool.acquire({ deadline: 0 }), PoolExhaustedError);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("Pool closes a connection idle for idleTimeout, not before", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 2, idleTimeout: 1000, dial: server.dial });
  await run(
    (async function* () {
      let conn: Connection;
      {
        using lease = yield* pool.acquire();
        yield* roundTrip(lease, "x");
        conn = lease.conn;
      }
      yield* delay(999);
      assert.equal(pool.stats.idle, 1);
      assert.ok(!conn.isClosed);
      yield* delay(1);
      assert.ok(conn.isClosed);
      assert.deepEqual(
        [pool.stats.idle, pool.stats.open, pool.stats.discarded],
        [0, 0, 1],
      );
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("Pool keeps the most recently used connection and lets the others expire", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 2, idleTimeout: 1000, dial: server.dial });
  await run(
    (async function* () {
      const a = yield* pool.acquire();
      const b = yield* pool.acquire();
      a.release();
      yield* delay(500);
      b.release();
      for (let i = 0; i < 4; i++) {
        yield* delay(300);
        using lease = yield* pool.acquire();
        assert.equal(lease.conn, b.conn);
      }
      assert.equal(pool.stats.discarded, 1); // a expired at 1000
      assert.equal(pool.stats.open, 1);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("Pool discards a connection whose receive timed out", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, async function* (conn) {
    yield* conn.recvLine(); // reads the request, never answers
    yield* delay(Infinity);
  });
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      {
        using lease = yield* pool.acquire();
        yield* lease.conn.send("request\n");
        yield* assertThrows(lease.conn.recv({ timeout: 100 }), TimeoutError);
      } // its read is still in flight: a late reply would reach the next user
      assert.equal(pool.stats.discarded, 1);
      assert.equal(pool.stats.open, 0);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("Pool discards a connection taken from idle whose receive timed out", async () => {
  // While idle, the pool keeps a read in flight (to see the server hang
  // up); a borrower's timed-out receive on that same read must still count.
  const clock = new VirtualClock();
  const server = memoryServer(clock, async function* (conn) {
    for (let line; (line = yield* conn.recvLine()) !== null;) {
      if (line === "ping") yield* conn.send("pong\n"); // ignores anything else
    }
  });
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      {
        using lease = yield* pool.acquire();
        yield* lease.conn.send("ping\n");
        assert.equal(yield* lease.conn.recvLine(), "pong");
      }
      yield* delay(5); // idle: its watcher's read is in flight
      {
        using _lease = yield* pool.acquire(); // returned untouched: kept
      }
      assert.deepEqual([pool.stats.idle, pool.stats.discarded], [1, 0]);
      yield* delay(5);
      {
        using lease = yield* pool.acquire();
        yield* lease.conn.send("silence\n");
        yield* assertThrows(lease.conn.recv({ timeout: 50 }), TimeoutError);
      }
      assert.deepEqual([pool.stats.idle, pool.stats.discarded], [0, 1]);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("Pool discards a connection taken from idle whose receive ended before it could wait", async () => {
  // timeout 0, a deadline already past, an aborted signal: the receive
  // never waits, but the reply to the request comes on the read in flight.
  for (
    const options of [
      { timeout: 0 },
      { deadline: 0 },
      { signal: AbortSignal.abort(new Error("aborted")) },
    ]
  ) {
    const clock = new VirtualClock();
    const server = memoryServer(clock, slowLineEcho);
    const pool = new Pool({ max: 1, dial: server.dial });
    const reply = await run(
      (async function* () {
        {
          using _lease = yield* pool.acquire(); // dialled, unused: goes idle
        }
        yield* delay(1); // idle: its watcher's read is in flight
        {
          using lease = yield* pool.acquire();
          yield* lease.conn.send("first\n");
          yield* assertThrows(lease.conn.recvLine(options), Error);
        }
        assert.deepEqual([pool.stats.idle, pool.stats.discarded], [0, 1]);
        using lease = yield* pool.acquire();
        return yield* roundTrip(lease, "second");
      })(),
      { clock },
    );
    assert.equal(reply, "second", JSON.stringify(options));
    await pool.close();
    await server.close();
  }
});

Deno.test("Pool hands a returned connection straight to the first waiter", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      {
        using lease = yield* pool.acquire();
        yield* roundTrip(lease, "warm");
      }
      yield* delay(5); // idle, watched
      const held = yield* pool.acquire();
      const waiter = yield* spawn((async function* () {
        using lease = yield* pool.acquire();
        assert.equal(lease.conn, held.conn);
        return yield* roundTrip(lease, "handed over");
      })());
      yield* delay(5);
      held.release(); // never used: the watcher's read goes with it
      assert.deepEqual([pool.stats.idle, pool.stats.leased], [0, 1]);
      assert.equal(yield* waiter.join(), "handed over");
      assert.deepEqual([pool.stats.created, pool.stats.discarded], [1, 0]);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

/** Answers one line, then hangs up: as a server that closes after each reply. */
async function* answerOnce(conn: Connection) {
  const line = yield* conn.recvLine();
  yield* conn.send(`${line}\n`);
}

/**
 * A TCP server that answers one line per connection, then hangs up, and a
 * pool of `max` connections to it; disposing closes both.
 */
function answerOnceOverTcp(max: number) {
  const server = serve({ hostname: "127.0.0.1" }, function* (conn) {
    const line = yield* conn.recvLine({ timeout: 5000 });
    yield* conn.send(`${line}\n`);
  });
  const pool = new Pool({
    connect: { port: server.addr.port, timeout: 5000 },
    max,
  });
  return {
    pool,
    async [Symbol.asyncDispose]() {
      await pool.close();
      await server.shutdown();
    },
  };
}

Deno.test("Pool does not hand a waiter a connection its server closed right after the last reply: the waiter gets a new one", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, answerOnce);
  const pool = new Pool({ max: 1, dial: server.dial });
  const replies = await run(
    (async function* () {
      const first = yield* pool.acquire();
      const waiter = yield* spawn((async function* () {
        using lease = yield* pool.acquire();
        return yield* roundTrip(lease, "second");
      })());
      const reply = yield* roundTrip(first, "first");
      first.release(); // the server has hung up: its end is on its way
      return [reply, yield* waiter.join(), clock.now()];
    })(),
    { clock },
  );
  assert.deepEqual(replies, ["first", "second", 0]);
  assert.deepEqual([pool.stats.created, pool.stats.discarded], [2, 1]);
  await pool.close();
  await server.close();
});

Deno.test("Pool does not lend again at once a connection its server closed right after the last reply", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, answerOnce);
  const pool = new Pool({ max: 1, dial: server.dial });
  const replies = await run(
    (async function* () {
      const replies = [];
      for (const text of ["first", "second", "third"]) {
        using lease = yield* pool.acquire(); // at once after the release
        replies.push(yield* roundTrip(lease, text));
      }
      return replies;
    })(),
    { clock },
  );
  assert.deepEqual(replies, ["first", "second", "third"]);
  assert.deepEqual([pool.stats.created, pool.stats.discarded], [3, 2]);
  await pool.close();
  await server.close();
});

Deno.test("Pool over TCP: a waiter is not handed a connection the server closed right after its reply", async () => {
  await using tcp = answerOnceOverTcp(1);
  const pool = tcp.pool;
  const replies = await run((async function* () {
    const tasks = [];
    for (let i = 0; i < 5; i++) {
      tasks.push(
        yield* spawn((async function* () {
          using lease = yield* pool.acquire({ timeout: 5000 });
          yield* lease.conn.send(`request ${i}\n`);
          return yield* lease.conn.recvLine({ timeout: 5000 });
        })()),
      );
    }
    const replies = [];
    for (const task of tasks) replies.push(yield* task.join());
    return replies;
  })());
  assert.deepEqual(replies, [0, 1, 2, 3, 4].map((i) => `request ${i}`));
  assert.equal(pool.stats.created, 5);
});

Deno.test("Pool over TCP: a connection its server closed right after the reply is seen though the read pacer is past its budget", async () => {
  await using tcp = answerOnceOverTcp(1);
  const pool = tcp.pool;
  const replies = await run((async function* () {
    const replies = [];
    for (let i = 0; i < 10; i++) {
      const lease = yield* pool.acquire({ timeout: 5000 });
      yield* lease.conn.send(`request ${i}\n`);
      replies.push(yield* lease.conn.recvLine({ timeout: 5000 }));
      // As in a busy client: the iteration's 128 socket reads are done,
      // and a paced read would wait for a timer turn.
      for (let k = 0; k < 128; k++) readCompleted();
      lease.release();
    }
    return replies;
  })());
  assert.deepEqual(replies, [...Array(10).keys()].map((i) => `request ${i}`));
});

Deno.test("Pool discards a connection that saw end of stream or an error", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, async function* (conn) {
    yield* conn.recvLine();
    // hang up without answering
  });
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      {
        using lease = yield* pool.acquire();
        yield* lease.conn.send("request\n");
        assert.equal(yield* lease.conn.recv(), null);
      }
      assert.equal(pool.stats.discarded, 1);
      {
        using lease = yield* pool.acquire();
        lease.conn.close();
      }
      assert.equal(pool.stats.discarded, 2);
      assert.equal(pool.stats.created, 2);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("lease.discard() closes the connection instead of returning it", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      using lease = yield* pool.acquire();
      yield* roundTrip(lease, "x");
      lease.discard();
      assert.ok(lease.conn.isClosed);
      assert.ok(lease.isEnded);
      lease.release(); // and `using` at the end: both no-ops now
      assert.deepEqual(
        [pool.stats.open, pool.stats.discarded],
        [0, 1],
      );
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("Pool replaces a connection the server closed while it was idle", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, async function* (conn) {
    const line = yield* conn.recvLine();
    yield* conn.send(`${line}\n`); // one answer, then the server hangs up
  });
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      let first: Connection;
      {
        using lease = yield* pool.acquire();
        yield* roundTrip(lease, "x");
        first = lease.conn;
      }
      yield* delay(1); // the server's FIN arrives while the connection is idle
      assert.ok(first.isClosed);
      assert.deepEqual([pool.stats.idle, pool.stats.discarded], [0, 1]);
      using lease = yield* pool.acquire();
      assert.notEqual(lease.conn, first);
      assert.equal(yield* roundTrip(lease, "y"), "y");
      assert.equal(pool.stats.created, 2);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("Pool replaces a dead idle connection found on acquire", async () => {
  // With no time for its watcher to run, acquire itself must notice.
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      let first: Connection;
      {
        using lease = yield* pool.acquire();
        yield* roundTrip(lease, "x");
        first = lease.conn;
      }
      first.close(); // as if reset: acquire must not hand it out
      using lease = yield* pool.acquire();
      assert.notEqual(lease.conn, first);
      assert.equal(yield* roundTrip(lease, "y"), "y");
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

Deno.test("close() closes idle connections, fails waiters, and closes leased ones on return", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 2, dial: server.dial });
  await run(
    (async function* () {
      const idle = yield* pool.acquire();
      const leased = yield* pool.acquire();
      idle.release();
      const other = yield* pool.acquire(); // takes the idle one back
      other.release();
      const waiter = yield* spawn((async function* () {
        const a = yield* pool.acquire();
        const b = yield* pool.acquire(); // pool full: waits
        a.release();
        b.release();
      })());
      yield* delay(1);
      assert.equal(pool.stats.waiting, 1);
      const closing = pool.close();
      yield* assertThrows(waiter.join(), PoolClosedError);
      assert.ok(idle.conn.isClosed);
      assert.ok(!leased.conn.isClosed);
      assert.deepEqual([pool.stats.idle, pool.stats.leased], [0, 1]);
      leased.release();
      assert.ok(leased.conn.isClosed);
      assert.equal(pool.stats.open, 0);
      yield* assertThrows(pool.acquire(), PoolClosedError);
      closing.then(() => {}); // settled after the run, below
    })(),
    { clock },
  );
  await pool.close();
  assert.ok(pool.isClosed);
  await server.close();
});

Deno.test("Pool is async-disposable and close() is idempotent", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  let conn: Connection;
  {
    await using pool = new Pool({ max: 1, dial: server.dial });
    conn = await run(
      (async function* () {
        using lease = yield* pool.acquire();
        return lease.conn;
      })(),
      { clock },
    );
    assert.ok(!conn.isClosed);
    await pool.close();
  }
  assert.ok(conn.isClosed);
  await server.close();
});

Deno.test("a lease its coroutine never disposed is discarded when the coroutine ends", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  const conn = await run(
    (async function* () {
      const lease = yield* pool.acquire(); // no `using`
      return lease.conn;
    })(),
    { clock },
  );
  assert.ok(conn.isClosed);
  assert.deepEqual([pool.stats.open, pool.stats.leased], [0, 0]);
  await pool.close();
  await server.close();
});

Deno.test("a coroutine cancelled while holding a lease gives its slot back", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, async function* (conn) {
    yield* conn.recvLine();
    yield* delay(Infinity); // never answers
  });
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      const task = yield* spawn((async function* () {
        using lease = yield* pool.acquire();
        yield* lease.conn.send("x\n");
        yield* lease.conn.recv();
      })());
      yield* delay(10);
      assert.equal(pool.stats.leased, 1);
      task.cancel();
      yield* assertThrows(task.join(), Error);
      assert.deepEqual([pool.stats.open, pool.stats.discarded], [0, 1]);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

for (const form of ["function*", "async function*"]) {
  Deno.test(`a borrower cancelled between its request and its receive does not pass the reply on (${form})`, async () => {
    // The connection comes from idle, so the watcher's read is in flight
    // when the borrower stops: nothing on the connection shows the reply
    // on its way, only that its borrower was cancelled.
    const clock = new VirtualClock();
    const server = memoryServer(clock, slowLineEcho);
    const pool = new Pool({ max: 1, dial: server.dial });
    function* syncBorrower(): Generator<Effect, void, unknown> {
      using lease = yield* pool.acquire();
      yield* lease.conn.send("first\n");
      yield* delay(10); // cancelled here, before its receive
      yield* lease.conn.recvLine();
    }
    async function* asyncBorrower(): AsyncGenerator<Effect, void, unknown> {
      yield* syncBorrower();
    }
    const reply = await run(
      (async function* () {
        {
          using _lease = yield* pool.acquire(); // dialled, unused: goes idle
        }
        yield* delay(1);
        const borrower = yield* spawn(
          form === "function*" ? syncBorrower() : asyncBorrower(),
        );
        yield* delay(2);
        borrower.cancel();
        yield* assertThrows(borrower.join(), Error);
        assert.deepEqual([pool.stats.idle, pool.stats.discarded], [0, 1]);
        using lease = yield* pool.acquire();
        return yield* roundTrip(lease, "second");
      })(),
      { clock },
    );
    assert.equal(reply, "second");
    await pool.close();
    await server.close();
  });
}

Deno.test("a waiter that is cancelled or aborted leaves the queue", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (async function* () {
      const held = yield* pool.acquire();
      const cancelled = yield* spawn((async function* () {
        yield* pool.acquire();
      })());
      const abort = new AbortController();
      const aborted = yield* spawn((async function* () {
        yield* pool.acquire({ signal: abort.signal });
      })());
      yield* delay(1);
      assert.equal(pool.stats.waiting, 2);
      cancelled.cancel();
      abort.abort(new Error("stop"));
      yield* assertThrows(aborted.join(), Error, /stop/);
      yield* assertThrows(cancelled.join(), Error);
      assert.equal(pool.stats.waiting, 0);
      held.release();
      assert.equal(pool.stats.idle, 1);
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
});

for (
  const [how, end] of [["released", "release"], [
    "discarded",
    "discard",
  ]] as const
) {
  Deno.test(`a waiter cancelled after a ${how} lease woke it, before it ran, leaves the connection or slot to the pool`, async () => {
    const clock = new VirtualClock();
    const server = memoryServer(clock);
    const pool = new Pool({ max: 1, dial: server.dial });
    await run(
      (function* () {
        const lease = yield* pool.acquire();
        const waiter = yield* spawn((function* () {
          using _lease = yield* pool.acquire();
        })());
        yield* delay(1);
        assert.equal(pool.stats.waiting, 1);
        lease[end](); // hands the waiter the connection, or the slot to dial in
        waiter.cancel(); // in the same step: it never ran to take it
        try {
          yield* waiter.join();
          assert.fail("the waiter was not cancelled");
        } catch (error) {
          assert.ok(error instanceof CancelledError, String(error));
        }
        assert.equal(pool.stats.leased, 0);
        assert.equal(pool.stats.connecting, 0);
        using again = yield* pool.acquire({ timeout: 100 });
        assert.equal(again.conn.isClosed, false);
      })(),
      { clock },
    );
    assert.deepEqual(
      { open: pool.stats.open, idle: pool.stats.idle },
      { open: 1, idle: 1 },
    );
    await pool.close();
    await server.close();
  });
}

Deno.test("a function* that ends holding a lease while its child waits in acquire() leaves the pool whole", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  await run(
    (function* () {
      using _lease = yield* pool.acquire();
      yield* spawn((function* () {
        using _lease = yield* pool.acquire(); // waits for the parent's
      })());
      yield* delay(1);
      // Ends: `using` hands the connection to the child, whose parent's
      // end then cancels it.
    })(),
    { clock },
  );
  assert.deepEqual(
    { open: pool.stats.open, idle: pool.stats.idle, leased: pool.stats.leased },
    { open: 1, idle: 1, leased: 0 },
  );
  await pool.close();
  await server.close();
});

Deno.test("a failed dial frees its slot for the next waiter", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  let dials = 0;
  const pool = new Pool({
    max: 1,
    *dial() {
      if (++dials === 1) {
        yield* delay(50);
        throw new ConnectError("memory", 1, "connection refused");
      }
      return yield* server.dial();
    },
  });
  await run(
    (async function* () {
      const first = yield* spawn((async function* () {
        yield* pool.acquire();
      })());
      const second = yield* spawn((async function* () {
        using lease = yield* pool.acquire();
        return yield* roundTrip(lease, "ok");
      })());
      yield* assertThrows(first.join(), ConnectError);
      assert.equal(yield* second.join(), "ok");
      assert.equal(clock.now(), 50);
    })(),
    { clock },
  );
  assert.deepEqual([pool.stats.created, pool.stats.open], [1, 1]);
  await pool.close();
  await server.close();
});

Deno.test("a dial that gives no connection fails acquire with a TypeError and frees its slot", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  let dials = 0;
  const pool = new Pool({
    max: 1,
    *dial() {
      if (++dials === 1) return undefined as unknown as Connection;
      return yield* server.dial();
    },
  });
  const reply = await run(
    (async function* () {
      yield* assertThrows(pool.acquire(), TypeError, /dial\(\) gave undefined/);
      using lease = yield* pool.acquire({ timeout: 100 });
      return yield* roundTrip(lease, "ok");
    })(),
    { clock },
  );
  assert.equal(reply, "ok");
  assert.deepEqual([pool.stats.created, pool.stats.open], [1, 1]);
  await pool.close();
  await server.close();
});

Deno.test("acquire() deadline bounds a slow dial too", async () => {
  const clock = new VirtualClock();
  const pool = new Pool({
    max: 1,
    *dial(options) {
      // A handshake that never completes, but honours the deadline.
      const [conn, peer] = memoryConnPair();
      try {
        yield* conn.recv(options);
        throw new Error("unreachable");
      } finally {
        conn.close();
        peer.close();
      }
    },
  });
  await run(
    (async function* () {
      const error = yield* assertThrows(
        pool.acquire({ timeout: 300 }),
        TimeoutError,
      );
      assert.equal(error.op, "acquire");
      assert.equal(clock.now(), 300);
    })(),
    { clock },
  );
  assert.deepEqual([pool.stats.connecting, pool.stats.open], [0, 0]);
  await pool.close();
});

Deno.test("acquire() deadline cuts off a dial that ignores it: TimeoutError at the deadline, and its slot is free", async () => {
  const clock = new VirtualClock();
  const opened: { conn: Connection; peer: Connection }[] = [];
  const pool = new Pool({
    max: 1,
    *dial() {
      const [conn, peer] = memoryConnPair();
      opened.push({ conn, peer });
      yield* delay(10_000); // a slow greeting, deaf to the acquire's deadline
      return conn;
    },
  });
  const seen = await run(
    (async function* () {
      const error = yield* assertThrows(
        pool.acquire({ timeout: 100 }),
        TimeoutError,
      );
      const at = clock.now();
      const stats = { ...pool.stats };
      yield* delay(20_000); // the dial's delay would have ended by now
      return { error, at, stats, after: { ...pool.stats } };
    })(),
    { clock },
  );
  assert.equal(seen.error.op, "acquire");
  assert.equal(seen.error.timeout, 100);
  assert.equal(
    seen.error.message,
    "Cannot acquire from pool of dial() while dialling: timed out after 100 ms",
  );
  assert.equal(seen.at, 100);
  assert.deepEqual(
    [seen.stats.connecting, seen.stats.open, seen.after.created],
    [0, 0, 0],
  );
  await pool.close();
  for (const { peer } of opened) peer.close();
});

Deno.test("acquire() with a signal cuts off a dial that ignores it", async () => {
  const clock = new VirtualClock();
  const controller = new AbortController();
  const pool = new Pool({
    max: 1,
    *dial() {
      yield* delay(10_000);
      return memoryConnPair()[0];
    },
  });
  const reason = await run(
    (function* () {
      yield* spawn((function* () {
        yield* delay(50);
        controller.abort(new Error("stop"));
      })());
      try {
        yield* pool.acquire({ signal: controller.signal });
      } catch (error) {
        return error;
      }
    })(),
    { clock },
  );
  assert.equal((reason as Error).message, "stop");
  assert.equal(clock.now(), 50);
  assert.equal(pool.stats.connecting, 0);
  await pool.close();
});

Deno.test("an acquirer cancelled while its dial runs ends there: the dial is cancelled, its slot freed once the dial's finally has run", async () => {
  const clock = new VirtualClock();
  const log: string[] = [];
  const pool = new Pool({
    max: 1,
    *dial() {
      try {
        yield* delay(10_000);
        return memoryConnPair()[0];
      } finally {
        log.push(`dial finally at ${clock.now()}`);
      }
    },
  });
  await run(
    (async function* () {
      const acquirer = yield* spawn((async function* () {
        try {
          using _lease = yield* pool.acquire();
          log.push("lent (wrong)");
        } finally {
          log.push(`acquirer finally at ${clock.now()}`);
        }
        log.push("after acquire (wrong)");
      })());
      yield* delay(5);
      acquirer.cancel();
      yield* assertThrows(acquirer.join(), CancelledError);
      log.push(`connecting ${pool.stats.connecting}`);
    })(),
    { clock },
  );
  assert.deepEqual(log, [
    "dial finally at 5",
    "acquirer finally at 5",
    "connecting 0",
  ]);
  await pool.close();
});

Deno.test("new Pool() rejects bad options", () => {
  // deno-lint-ignore require-yield
  const dial = function* (): Generator<Effect, Connection, unknown> {
    return memoryConnPair()[0];
  };
  assert.throws(() => new Pool({ max: 1 }), TypeError);
  assert.throws(
    () => new Pool({ max: 1, dial, connect: { port: 1 } }),
    TypeError,
  );
  assert.throws(() => new Pool({ max: 0, dial }), RangeError);
  assert.throws(() => new Pool({ max: 1.5, dial }), RangeError);
  assert.throws(() => new Pool({ max: 1, dial, idleTimeout: -1 }), RangeError);
  assert.throws(
    () => new Pool({ max: 1, dial, acquireTimeout: NaN }),
    RangeError,
  );
  assert.throws(() => new Pool({ max: 1, dial, maxWaiting: -1 }), RangeError);
  assert.throws(() => new Pool({ max: 1, connect: { port: 70000 } }), {
    name: "RangeError",
    message: /port must be 0-65535/,
  });
  assert.throws(() => new Pool({ max: 1, dial: 5 as never }), {
    name: "TypeError",
    message: "Cannot create pool: dial must be a function",
  });
  const pool = new Pool({ max: 1, dial });
  assert.throws(() => pool.acquire({ timeout: -5 }), RangeError);
  assert.throws(() => pool.acquire({ deadline: NaN }), {
    name: "RangeError",
    message: "Cannot acquire: deadline is NaN",
  });
});

// ---- loopback

Deno.test("Pool over TCP replaces connections the server closed while idle", async () => {
  await using tcp = answerOnceOverTcp(2);
  const pool = tcp.pool;
  await run((async function* () {
    for (let round = 1; round <= 3; round++) {
      {
        using lease = yield* pool.acquire({ timeout: 5000 });
        yield* lease.conn.send(`round ${round}\n`);
        assert.equal(
          yield* lease.conn.recvLine({ timeout: 5000 }),
          `round ${round}`,
        );
      }
      // wait (bounded) until the pool has seen the server's FIN
      for (let i = 0; i < 500 && pool.stats.discarded < round; i++) {
        yield* delay(2);
      }
      assert.equal(pool.stats.discarded, round);
      assert.equal(pool.stats.idle, 0);
    }
  })());
  assert.equal(pool.stats.created, 3);
});

Deno.test("Pool over TCP: close() settles when the pool's idle connections are all that is left (the server in another process)", async () => {
  // A server that accepts and stays silent, in a child process that does not
  // keep this one's event loop running (unref'd, its output read already):
  // the pool's idle connection is all there is, unref'd as idle ones are.
  const server = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "const l = Deno.listen({ hostname: '127.0.0.1', port: 0 });" +
      "console.log(l.addr.port); const held = [];" +
      "for await (const c of l) held.push(c);",
    ],
    stdout: "piped",
  }).spawn();
  try {
    const reader = server.stdout.getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    const port = Number(new TextDecoder().decode(value).trim());
    server.unref();
    const pool = new Pool({ connect: { port }, max: 1 });
    await run((function* () {
      using _lease = yield* pool.acquire({ timeout: 5000 });
    })());
    assert.equal(pool.stats.idle, 1);
    await pool.close(); // never settled: the loop ended first
    assert.equal(pool.stats.open, 0);
  } finally {
    server.ref();
    server.kill();
    await server.stdout.cancel();
    await server.status;
  }
});

Deno.test("Pool over TCP: a refused port fails acquire with ConnectError and frees the slot", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close(); // nothing listens there now
  await using pool = new Pool({ connect: { port }, max: 1 });
  await run((async function* () {
    for (let i = 0; i < 2; i++) {
      const error = yield* assertThrows(pool.acquire(), ConnectError);
      assert.equal(error.port, port);
      assert.match(error.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    }
  })());
  assert.deepEqual([pool.stats.open, pool.stats.connecting], [0, 0]);
});

Deno.test("Pool over TCP: a dial written with connect() lends its connection to one borrower after another", async () => {
  await using server = serve({ hostname: "127.0.0.1" }, echo);
  const pool = new Pool({
    max: 1,
    *dial(options) {
      const conn = yield* connect({ port: server.addr.port, ...options });
      yield* conn.send("hello\n"); // a greeting of this protocol's own
      yield* conn.recvLine(options);
      return conn;
    },
  });
  const replies = await run((function* () {
    function* client(text: string) {
      using lease = yield* pool.acquire({ timeout: 5000 });
      yield* lease.conn.send(text + "\n");
      return yield* lease.conn.recvLine({ timeout: 5000 });
    }
    // The first borrower ends holding the only connection: the second,
    // waiting, gets it, not one its dialler's end closed.
    const first = yield* spawn(client("one"));
    const second = yield* spawn(client("two"));
    return [yield* first.join(), yield* second.join()];
  })());
  assert.deepEqual(replies, ["one", "two"]);
  assert.deepEqual(
    { created: pool.stats.created, idle: pool.stats.idle },
    { created: 1, idle: 1 },
  );
  await pool.close();
});

Deno.test("Pool over TCP: a dial that connected and then failed, or was cut off at the deadline, leaves no socket open, and one that gives a closed connection fails clearly", async () => {
  // The server reads the greeting and never answers it.
  await using server = serve({ hostname: "127.0.0.1" }, async function* (conn) {
    yield* conn.recvLine();
    yield* conn.recv(); // until the client closes
  });
  const greeting = new Pool({
    max: 1,
    *dial(options) {
      const conn = yield* connect({ port: server.addr.port, ...options });
      yield* conn.send("hello\n");
      yield* conn.recvLine({ timeout: 30 }); // times out
      return conn;
    },
  });
  // Connected, then deaf to the acquire's deadline.
  const deaf = new Pool({
    max: 1,
    *dial(options) {
      const conn = yield* connect({ port: server.addr.port, ...options });
      yield* delay(60_000);
      return conn;
    },
  });
  // Connected in a child it joined: the child's end closed it.
  const inChild = new Pool({
    max: 1,
    *dial(options) {
      const child = yield* spawn((function* () {
        return yield* connect({ port: server.addr.port, ...options });
      })());
      return yield* child.join();
    },
  });
  const seen = await run((async function* () {
    // One long-lived client retrying, as a service would.
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        using _lease = yield* greeting.acquire({ timeout: 5000 });
      } catch (error) {
        assert.ok(error instanceof TimeoutError, String(error));
      }
    }
    const started = Date.now();
    try {
      using _lease = yield* deaf.acquire({ timeout: 100 });
    } catch (error) {
      assert.ok(error instanceof TimeoutError, String(error));
      assert.equal(error.op, "acquire");
    }
    assert.ok(Date.now() - started < 5000);
    yield* delay(50); // the server sees the closes
    const openAfterRetries = server.stats.active;
    try {
      using _lease = yield* inChild.acquire({ timeout: 5000 });
      return { openAfterRetries, inChild: "lent" };
    } catch (error) {
      return { openAfterRetries, inChild: String(error) };
    }
  })());
  await greeting.close();
  await deaf.close();
  await inChild.close();
  assert.equal(seen.openAfterRetries, 0);
  assert.match(seen.inChild, /^TypeError: .*dial\(\) gave a closed connection/);
  assert.equal(inChild.stats.connecting, 0);
});

Deno.test("Pool over TCP: many clients share a few connections", async () => {
  await using server = serve({ hostname: "127.0.0.1" }, echo);
  await using pool = new Pool({
    connect: { port: server.addr.port, timeout: 5000 },
    max: 4,
  });
  const replies = await run((async function* () {
    const tasks = [];
    for (let id = 0; id < 50; id++) {
      tasks.push(
        yield* spawn((async function* () {
          let count = 0;
          for (let i = 0; i < 10; i++) {
            using lease = yield* pool.acquire({ timeout: 5000 });
            const text = `client ${id} request ${i}`;
            if ((yield* roundTrip(lease, text)) === text) count++;
          }
          return count;
        })()),
      );
    }
    let total = 0;
    for (const task of tasks) total += yield* task.join();
    return total;
  })());
  assert.equal(replies, 500);
  assert.equal(pool.stats.created, 4);
  assert.equal(pool.stats.discarded, 0);
});

/** Runs `op`, asserting that it throws an instance of `type`; returns it. */
async function* assertThrows<E extends Error>(
  op: Operation<unknown>,
  type: abstract new (...args: never[]) => E,
  message?: RegExp,
): AsyncGenerator<Effect, E, unknown> {
  try {
    yield* op;
  } catch (error) {
    assert.ok(
      error instanceof type,
      `expected ${type.name}, got ${String(error)}`,
    );
    if (message) assert.match(error.message, message);
    return error;
  }
  assert.fail(`expected ${type.name}, but it succeeded`);
}

Deno.test("an idle pool that was never closed does not keep the process alive", async () => {
  await using server = serve({ hostname: "127.0.0.1" }, echo);
  const mod = new URL("../mod.ts", import.meta.url).href;
  const script = `
    import { Pool, run } from "${mod}";
    const pool = new Pool({ connect: { port: ${server.addr.port} }, max: 2, idleTimeout: 600000 });
    await run((async function* () {
      using lease = yield* pool.acquire({ timeout: 5000 });
      yield* lease.conn.send("x\\n");
      yield* lease.conn.recvLine({ timeout: 5000 });
    })());
    console.log(JSON.stringify(pool.stats));
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // 10 minutes of idleTimeout: only an unref'd timer and socket let it exit
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const output = await child.output();
  clearTimeout(killer);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.equal(output.signal, null);
  const stats = JSON.parse(new TextDecoder().decode(output.stdout));
  assert.deepEqual([stats.idle, stats.created], [1, 1]);
});

Deno.test("a waiter whose send failed on a discarded lease waits in acquire() as any other: served first, the pool whole after", async () => {
  // The send's write, in flight when the lease was discarded, fails later:
  // it used to wake the sender again while it waited in acquire(), which
  // then counted itself against maxWaiting (PoolExhaustedError) and left a
  // ghost in the queue that took the next connection given back.
  const clock = new VirtualClock();
  const server = memoryServer(clock, function* () {
    yield* delay(Infinity); // never reads: a 16-byte send stays in flight
  }, 4);
  const pool = new Pool({ max: 1, maxWaiting: 1, dial: server.dial });
  const outcome = await run(
    (function* () {
      const first = yield* pool.acquire();
      const conn = first.conn;
      const sender = yield* spawn((function* () {
        try {
          yield* conn.send("0123456789abcdef");
        } catch (error) {
          if (!(error instanceof ConnectionClosedError)) throw error;
        }
        using lease = yield* pool.acquire({ timeout: 1000 });
        return lease.conn !== conn ? "served another" : "served the same";
      })());
      yield* delay(1); // the sender waits in its send
      first.discard(); // closes it: the send fails
      const second = yield* pool.acquire(); // the freed slot, before the sender
      yield* delay(1); // the sender waits in acquire(), alone
      second.release(); // goes to the sender
      const result = yield* sender.join();
      const leased = pool.stats.leased;
      using _again = yield* pool.acquire({ timeout: 100 });
      return [result, leased];
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
  assert.deepEqual(outcome, ["served another", 0]);
});

Deno.test("a borrower's changes to recvTimeout, sendTimeout and maxLineLength end with its lease", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  const seen = await run(
    (function* () {
      const settings = (conn: Connection) =>
        [conn.recvTimeout, conn.sendTimeout, conn.maxLineLength].join(" ");
      const out: string[] = [];
      {
        using lease = yield* pool.acquire();
        out.push(settings(lease.conn));
        lease.conn.recvTimeout = 10;
        lease.conn.sendTimeout = 20;
        lease.conn.maxLineLength = 30;
      }
      // Handed straight to a waiter, or taken from idle: as dialled both ways.
      const waiter = yield* spawn((function* () {
        using lease = yield* pool.acquire();
        out.push(settings(lease.conn));
        lease.conn.recvTimeout = 40;
      })());
      {
        using lease = yield* pool.acquire();
        out.push(settings(lease.conn));
        lease.conn.maxLineLength = 50;
      }
      yield* waiter.join();
      using lease = yield* pool.acquire();
      out.push(settings(lease.conn));
      return out;
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
  assert.deepEqual(seen, Array(4).fill(`Infinity Infinity 65536`));
  assert.equal(pool.stats.created, 1);
});

Deno.test("a connection whose borrower shut its sending side (closeWrite) is closed, not lent again", async () => {
  const clock = new VirtualClock();
  // Answers each line, and keeps its side open after the client's FIN.
  const server = memoryServer(clock, async function* (conn) {
    for (let line; (line = yield* conn.recvLine()) !== null;) {
      yield* conn.send(`${line}\n`);
    }
    yield* delay(Infinity);
  });
  const pool = new Pool({ max: 1, dial: server.dial });
  const outcome = await run(
    (function* () {
      let first: Connection;
      {
        using lease = yield* pool.acquire();
        first = lease.conn;
        yield* lease.conn.send("last request\n");
        yield* lease.conn.closeWrite();
        assert.equal(yield* lease.conn.recvLine(), "last request");
      }
      using lease = yield* pool.acquire();
      yield* lease.conn.send("next\n");
      const reply = yield* lease.conn.recvLine({ timeout: 100 });
      return [lease.conn !== first, first.isClosed, reply];
    })(),
    { clock },
  );
  await pool.close();
  await server.close();
  assert.deepEqual(outcome, [true, true, "next"]);
});

// A dial cut off at the deadline whose cleanup throws: where does the error
// go? It depends on whether the acquirer has ended by then.
for (const acquirerEnds of [true, false]) {
  Deno.test(`a dial cut off at the deadline whose cleanup throws: onError gets the error, the acquirer keeps its own outcome (it ${acquirerEnds ? "ends at once" : "goes on"})`, async () => {
    const clock = new VirtualClock();
    const errors: unknown[] = [];
    const scheduler = new Scheduler({ clock, onError: (e) => errors.push(e) });
    const pool = new Pool({
      max: 1,
      *dial() {
        try {
          yield* delay(1000); // ignores the deadline
          throw new Error("unreachable");
        } finally {
          // deno-lint-ignore no-unsafe-finally
          throw new Error("dial cleanup failed");
        }
      },
    });
    let outcome: unknown;
    try {
      outcome = await run(
        (function* () {
          try {
            yield* pool.acquire({ timeout: 100 });
          } catch (error) {
            if (!(error instanceof TimeoutError)) throw error;
          }
          if (!acquirerEnds) yield* delay(10);
          return "acquirer caught its TimeoutError and returned";
        })(),
        { scheduler },
      );
    } catch (error) {
      outcome = error;
    }
    await pool.close();
    // Consistent either way: the acquirer's own result stands, and the
    // dial's error is reported (onError), not lost nor made the acquirer's.
    assert.equal(outcome, "acquirer caught its TimeoutError and returned");
    assert.equal(errors.length, 1);
  });
}

// Cut-off dials whose cleanup waits keep their slot until it has run: never
// more than `max` dials alive (bodies and finally blocks) at once, and the
// stats come back to zero.
for (const form of ["function*", "async function*"] as const) {
  Deno.test(`dials cut off at the deadline, their cleanup waiting, never exceed max, and the stats come back to zero (${form} acquirers)`, async () => {
    const clock = new VirtualClock();
    let alive = 0;
    let peak = 0;
    let dials = 0;
    const peers: Connection[] = [];
    const pool = new Pool({
      max: 2,
      *dial() {
        alive++;
        peak = Math.max(peak, alive);
        const n = dials++;
        let isDone = false;
        try {
          if (n % 3 !== 2) yield* delay(1000); // ignores the deadline
          const [client, server] = memoryConnPair();
          peers.push(client, server);
          isDone = true;
          return client;
        } finally {
          try {
            if (!isDone) yield* delay(7); // cleanup that waits, when cut off
          } finally {
            alive--;
          }
        }
      },
    });
    const outcomes: string[] = [];
    await run(
      (function* () {
        const tasks = [];
        for (let i = 0; i < 12; i++) {
          const body = form === "function*"
            ? (function* () {
              try {
                using _lease = yield* pool.acquire({ timeout: 5 + i });
                yield* delay(3);
                outcomes.push("ok");
              } catch (e) {
                outcomes.push((e as Error).name);
              }
            })()
            : (async function* () {
              try {
                using _lease = yield* pool.acquire({ timeout: 5 + i });
                yield* delay(3);
                outcomes.push("ok");
              } catch (e) {
                outcomes.push((e as Error).name);
              }
            })();
          tasks.push(yield* spawn(body));
        }
        for (const t of tasks) yield* t.join();
      })(),
      { clock },
    );
    await pool.close();
    for (const p of peers) p.close();
    const s = pool.stats;
    assert.ok(peak <= 2, `peak ${peak}`);
    assert.equal(alive, 0);
    assert.equal(s.connecting, 0);
    assert.equal(s.leased, 0);
    assert.equal(s.open, 0);
    assert.equal(s.created, s.discarded);
  });
}

Deno.test("a lease given back by using after its borrower threw between a request and its reply is closed, not lent: the next borrower gets its own reply", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, slowLineEcho);
  const pool = new Pool({ max: 1, dial: server.dial });
  const [thrown, reply] = await run(
    (async function* () {
      let thrown: unknown;
      try {
        using lease = yield* pool.acquire();
        yield* lease.conn.send("first\n");
        throw new Error("the borrower fails before its reply");
      } catch (error) {
        thrown = error;
      }
      using lease = yield* pool.acquire();
      return [thrown, yield* roundTrip(lease, "second")];
    })(),
    { clock },
  );
  assert.equal(
    (thrown as Error).message,
    "the borrower fails before its reply",
  );
  assert.equal(reply, "second");
  assert.equal(pool.stats.created, 2);
  assert.equal(pool.stats.discarded, 1);
  await pool.close();
  await server.close();
});

Deno.test("a lease whose last receive read its reply goes back to the pool, also after sends that were answered, and after a dial that sent a preface no reply answers", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, async function* (conn) {
    assert.equal(yield* conn.recvLine(), "PREFACE"); // answered by nothing
    yield* slowLineEcho(conn);
  });
  const pool = new Pool({
    max: 1,
    *dial() {
      const conn = yield* server.dial();
      yield* conn.send("PREFACE\n");
      return conn;
    },
  });
  await run(
    (async function* () {
      {
        using _lease = yield* pool.acquire(); // used for nothing
      }
      for (let i = 0; i < 3; i++) {
        using lease = yield* pool.acquire();
        yield* lease.conn.send(`a ${i}\n`);
        yield* lease.conn.send(`b ${i}\n`);
        assert.equal(yield* lease.conn.recvLine(), `a ${i}`);
        assert.equal(yield* lease.conn.recvLine(), `b ${i}`);
      }
    })(),
    { clock },
  );
  assert.equal(pool.stats.created, 1);
  assert.equal(pool.stats.discarded, 0);
  await pool.close();
  await server.close();
});

Deno.test("lease.isReused: false for a connection dialled for the lease, true for one lent before, false again after a discard", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock);
  const pool = new Pool({ max: 1, dial: server.dial });
  const seen = await run(
    (async function* () {
      const seen: boolean[] = [];
      for (const isDiscarded of [false, false, true, false]) {
        const lease = yield* pool.acquire();
        seen.push(lease.isReused);
        assert.equal(yield* roundTrip(lease, "ping"), "ping");
        if (isDiscarded) lease.discard();
        else lease.release();
      }
      return seen;
    })(),
    { clock },
  );
  assert.deepEqual(seen, [false, true, true, false]);
  assert.equal(pool.stats.created, 2);
  await pool.close();
  await server.close();
});

Deno.test("recvExact(0) after a request receives nothing: a lease given back then is closed, not lent, as after the request alone", async () => {
  const clock = new VirtualClock();
  const server = memoryServer(clock, slowLineEcho);
  const pool = new Pool({ max: 1, dial: server.dial });
  const reply = await run(
    (async function* () {
      try {
        using lease = yield* pool.acquire();
        yield* lease.conn.send("first\n");
        assert.equal((yield* lease.conn.recvExact(0)).length, 0);
        throw new Error("the borrower fails before its reply");
      } catch {
        // the next borrower must not get "first"
      }
      using lease = yield* pool.acquire();
      return yield* roundTrip(lease, "second");
    })(),
    { clock },
  );
  assert.equal(reply, "second");
  assert.equal(pool.stats.discarded, 1);
  await pool.close();
  await server.close();
});
