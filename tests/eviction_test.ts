// Eviction at the cap: which connection goes, and when, on the virtual clock.
// A connection is idle from its handler's start, or from `markIdle()`, until
// a receive returns data (or `markActive()`); the longest idle goes first,
// after `evictAfter` ms.
import assert from "node:assert/strict";
import { type Connection, delay, run, spawn } from "@corio/corio";
import {
  memoryConnPair,
  memoryServer,
  VirtualClock,
} from "@corio/corio/testing";
import { MemoryListener } from "../src/testing/memory_server.ts";

/** A keep-alive line server: each reply says when; idle after each reply. */
function keepAlive(clock: VirtualClock, options: { markIdle: boolean }) {
  return function* (conn: Connection) {
    for (let line; (line = yield* conn.recvLine()) !== null;) {
      yield* conn.send(`${line} at ${clock.now()}\n`);
      if (options.markIdle) conn.markIdle();
    }
  };
}

/** A client's request: sends `line` at `at` and returns the reply. */
function* ask(
  clock: VirtualClock,
  client: Connection,
  line: string,
  at: number,
) {
  yield* delay(at - clock.now());
  yield* client.send(`${line}\n`);
  return yield* client.recvLine();
}

/** When the server closed `client`'s connection (its end of stream). */
function* closedAt(clock: VirtualClock, client: Connection) {
  assert.equal(yield* client.recv(), null);
  return clock.now();
}

Deno.test("eviction: a keep-alive connection marked idle after its reply is evicted at the cap evictAfter ms after the mark", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnections: 1, evictAfter: 100 },
    keepAlive(clock, { markIdle: true }),
  );
  const [reply, evictedAt, waiterReply] = await run(
    (async function* () {
      const first = connect();
      const reply = yield* ask(clock, first, "one", 50);
      const waiter = connect();
      const waiting = yield* spawn(ask(clock, waiter, "two", 60));
      const evictedAt = yield* closedAt(clock, first);
      const waiterReply = yield* waiting.join();
      first.close();
      waiter.close();
      return [reply, evictedAt, waiterReply];
    })(),
    { clock },
  );
  await server.shutdown();
  assert.deepEqual([reply, evictedAt, waiterReply], [
    "one at 50",
    150,
    "two at 150",
  ]);
  assert.equal(server.stats.evicted, 1);
});

Deno.test("eviction: a connection that has received and is not marked idle is never evicted; the waiting client waits for its end", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnections: 1, evictAfter: 100 },
    keepAlive(clock, { markIdle: false }),
  );
  const waiterReply = await run(
    (async function* () {
      const first = connect();
      yield* ask(clock, first, "one", 50);
      const waiter = connect();
      const waiting = yield* spawn(ask(clock, waiter, "two", 60));
      yield* delay(1000 - clock.now());
      first.close(); // its handler ends: the place frees
      const waiterReply = yield* waiting.join();
      waiter.close();
      return waiterReply;
    })(),
    { clock },
  );
  await server.shutdown();
  assert.equal(waiterReply, "two at 1000");
  assert.equal(server.stats.evicted, 0);
});

Deno.test("eviction: a request that arrives before the idle time is up keeps the connection", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnections: 1, evictAfter: 100 },
    keepAlive(clock, { markIdle: true }),
  );
  const replies = await run(
    (async function* () {
      const first = connect();
      const replies = [yield* ask(clock, first, "one", 50)];
      const waiter = connect();
      const waiting = yield* spawn(ask(clock, waiter, "two", 60));
      replies.push(yield* ask(clock, first, "three", 149)); // idle again at 149
      replies.push(yield* waiting.join()); // evicts `first` at 249
      replies.push(String(yield* closedAt(clock, first)));
      first.close();
      waiter.close();
      return replies;
    })(),
    { clock },
  );
  await server.shutdown();
  assert.deepEqual(replies, ["one at 50", "three at 149", "two at 249", "249"]);
  assert.equal(server.stats.evicted, 1);
});

Deno.test("eviction: the connection idle longest goes first, whether it was silent since its accept or marked idle", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnections: 2, evictAfter: 100 },
    keepAlive(clock, { markIdle: true }),
  );
  const times = await run(
    (async function* () {
      const a = connect(); // admitted at 0
      yield* delay(10);
      const b = connect(); // admitted at 10, silent
      yield* ask(clock, a, "a", 20); // a idle since 20
      const c = connect();
      const cReply = yield* spawn(ask(clock, c, "c", 30));
      const bEvicted = yield* closedAt(clock, b); // 10 + 100
      assert.equal(yield* cReply.join(), "c at 110"); // c idle since 110
      const d = connect();
      const dReply = yield* spawn(ask(clock, d, "d", 115));
      const aEvicted = yield* closedAt(clock, a); // 20 + 100
      assert.equal(yield* dReply.join(), "d at 120");
      for (const client of [a, b, c, d]) client.close();
      return [bEvicted, aEvicted];
    })(),
    { clock },
  );
  await server.shutdown();
  assert.deepEqual(times, [110, 120]);
  assert.equal(server.stats.evicted, 2);
});

Deno.test("eviction: markIdle() again before data arrives keeps the first time", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnections: 1, evictAfter: 100 },
    function* (conn) {
      yield* conn.recvLine();
      conn.markIdle(); // at 50
      yield* delay(40);
      conn.markIdle(); // at 90: still idle since 50
      yield* conn.recvLine();
    },
  );
  const evictedAt = await run(
    (async function* () {
      const first = connect();
      yield* delay(50);
      yield* first.send("one\n");
      const waiter = connect();
      const evictedAt = yield* closedAt(clock, first);
      first.close();
      waiter.close();
      return evictedAt;
    })(),
    { clock },
  );
  await server.shutdown();
  assert.equal(evictedAt, 150);
});

Deno.test("eviction: a client waiting at the cap with no idle connection is served once one is marked idle and its time is up", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnections: 1, evictAfter: 100 },
    function* (conn) {
      const line = yield* conn.recvLine(); // productive at once
      yield* conn.send(`${line} at ${clock.now()}\n`);
      yield* delay(40);
      conn.markIdle(); // while a client waits at the cap
      yield* conn.recvLine();
    },
  );
  const [evictedAt, waiterReply] = await run(
    (async function* () {
      const first = connect();
      assert.equal(yield* ask(clock, first, "one", 0), "one at 0");
      yield* delay(10);
      const waiter = connect(); // at 10: nothing idle to evict
      const waiting = yield* spawn(ask(clock, waiter, "two", 10));
      const evictedAt = yield* closedAt(clock, first);
      const waiterReply = yield* waiting.join();
      first.close();
      waiter.close();
      return [evictedAt, waiterReply];
    })(),
    { clock },
  );
  await server.shutdown();
  assert.deepEqual([evictedAt, waiterReply], [140, "two at 140"]);
  assert.equal(server.stats.evicted, 1);
});

Deno.test("eviction: markIdle() on a connection no server accepted does nothing", async () => {
  const [here, there] = memoryConnPair();
  const line = await run((function* () {
    here.markIdle();
    yield* there.send("still here\n");
    here.markIdle();
    return yield* here.recvLine();
  })());
  here.close();
  there.close();
  assert.equal(line, "still here");
});

Deno.test("eviction: a connection marked active is not idle though it never sends, until it is marked idle", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnections: 1, evictAfter: 100 },
    function* (conn) {
      conn.markActive(); // a feed: its client only reads
      for (let tick = 0; tick < 5; tick++) {
        yield* delay(100);
        yield* conn.send(`tick ${tick}\n`);
      }
      conn.markIdle(); // at 500: done streaming
      yield* conn.recvLine();
    },
  );
  const [ticks, evictedAt] = await run(
    (async function* () {
      const feed = connect();
      const waiter = connect(); // waits at the cap from 0
      const ticks = [];
      for (let tick = 0; tick < 5; tick++) ticks.push(yield* feed.recvLine());
      const evictedAt = yield* closedAt(clock, feed);
      feed.close();
      waiter.close();
      return [ticks.length, evictedAt];
    })(),
    { clock },
  );
  await server.shutdown();
  assert.deepEqual([ticks, evictedAt], [5, 600]);
  assert.equal(server.stats.evicted, 1);
});

Deno.test("eviction: markIdle() does not cut short the accept loop's back-off after an accept error", async () => {
  const clock = new VirtualClock();
  // The second accept fails (as with EMFILE): the loop backs off 100 ms.
  const accept = MemoryListener.prototype.accept;
  let calls = 0;
  MemoryListener.prototype.accept = function (this: MemoryListener) {
    return ++calls === 2
      ? Promise.reject(new Error("EMFILE (simulated)"))
      : accept.call(this);
  };
  try {
    const { server, connect } = memoryServer(
      { clock, acceptBackoff: 100, evictAfter: 1000, onError: () => {} },
      keepAlive(clock, { markIdle: true }),
    );
    const replies = await run(
      (async function* () {
        const first = connect();
        const replies = [yield* ask(clock, first, "one", 10)]; // idle at 10
        const second = connect(); // during the back-off
        replies.push(yield* ask(clock, second, "two", 20));
        first.close();
        second.close();
        return replies;
      })(),
      { clock },
    );
    await server.shutdown();
    assert.deepEqual(replies, ["one at 10", "two at 100"]);
  } finally {
    MemoryListener.prototype.accept = accept;
  }
});
