import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./_property.ts";
import {
  BusyError,
  CancelledError,
  ConversationLimitError,
  Conversations,
  delay,
  type Effect,
  Inbox,
  run,
  Scheduler,
  spawn,
  TimeoutError,
} from "@corio/corio";
import { VirtualClock } from "@corio/corio/testing";

type Message = { key: string; n: number };
const key = (message: Message) => message.key;

Deno.test("Conversations.dispatch() starts a conversation for a new key and delivers later messages in order", async () => {
  const seen: string[] = [];
  const calls = new Conversations<Message, string>({
    key,
    clock: new VirtualClock(),
    handler: async function* (inbox, first, k) {
      seen.push(`${k}:first:${first!.n}`);
      for (let i = 0; i < 3; i++) seen.push(`${k}:${(yield* inbox.recv()).n}`);
    },
  });
  assert.equal(calls.dispatch({ key: "a", n: 0 }), "started");
  assert.equal(calls.dispatch({ key: "b", n: 0 }), "started");
  for (let n = 1; n <= 3; n++) {
    assert.equal(calls.dispatch({ key: "a", n }), "delivered");
    assert.equal(calls.dispatch({ key: "b", n }), "delivered");
  }
  await calls.shutdown({ grace: 1000 });
  assert.deepEqual(seen.filter((s) => s.startsWith("a")), [
    "a:first:0",
    "a:1",
    "a:2",
    "a:3",
  ]);
  assert.deepEqual(seen.filter((s) => s.startsWith("b")), [
    "b:first:0",
    "b:1",
    "b:2",
    "b:3",
  ]);
  assert.equal(calls.size, 0);
});

Deno.test("Conversations removes an ended conversation; its key then starts a new one", async () => {
  let starts = 0;
  const calls = new Conversations<Message, string>({
    key,
    // deno-lint-ignore require-yield
    handler: async function* () {
      starts++;
    },
  });
  assert.equal(calls.dispatch({ key: "a", n: 0 }), "started");
  await calls.scheduler.spawn((async function* () {
    yield* delay(0);
  })()).finished;
  assert.equal(calls.has("a"), false);
  assert.equal(calls.dispatch({ key: "a", n: 1 }), "started");
  await calls.shutdown({ grace: 100 });
  assert.equal(starts, 2);
  assert.equal(calls.stats.started, 2);
});

Deno.test("a message delivered to a conversation that ends without receiving it starts a new one", async () => {
  const seen: string[] = [];
  const calls: Conversations<Message, string> = new Conversations({
    key,
    clock: new VirtualClock(),
    handler: function* (_inbox: Inbox<Message>, first?: Message) {
      seen.push(`first ${first!.n}`);
      if (first!.n === 1) {
        // Arrives while this handler ends: it never receives it.
        assert.equal(calls.dispatch({ key: "a", n: 2 }), "delivered");
      }
      yield* delay(0);
    },
  });
  calls.dispatch({ key: "a", n: 1 });
  // Not shut down yet: a table shutting down starts no conversation.
  await calls.scheduler.spawn((function* () {
    yield* delay(1000);
  })()).finished;
  await calls.shutdown();
  assert.deepEqual(seen, ["first 1", "first 2"]);
  assert.equal(calls.stats.started, 2);
});

Deno.test("a conversation's unreceived messages go on ahead of one that arrives just after it ends", async () => {
  const firsts: number[] = [];
  const received: number[] = [];
  const nudge = new Inbox<string>();
  const calls = new Conversations<Message, string>({
    key,
    clock: new VirtualClock(),
    handler: function* (inbox, first) {
      firsts.push(first!.n);
      if (first!.n === 0) {
        yield* delay(10); // message 1 arrives meanwhile, never received
        nudge.push("ended"); // wakes the peer, which runs once we have ended
        return;
      }
      received.push((yield* inbox.recv()).n);
    },
  });
  await run(
    (function* () {
      calls.dispatch({ key: "a", n: 0 });
      yield* delay(5);
      assert.equal(calls.dispatch({ key: "a", n: 1 }), "delivered");
      yield* nudge.recv();
      calls.dispatch({ key: "a", n: 2 });
    })(),
    { scheduler: calls.scheduler },
  );
  await calls.shutdown({ grace: 1000 });
  assert.deepEqual([firsts, received], [[0, 1], [2]]);
  // 1 counts as delivered twice: to the first conversation, and to the
  // second, where it was dispatched again.
  const { started, delivered } = calls.stats;
  assert.deepEqual({ started, delivered }, { started: 2, delivered: 2 });
});

Deno.test("Conversations refuses a new key at maxConversations and calls onRefuse", async () => {
  const refused: [string, string][] = [];
  const calls = new Conversations<Message, string>({
    key,
    clock: new VirtualClock(),
    maxConversations: 2,
    onRefuse: (_, k, reason) => refused.push([k, reason]),
    handler: async function* (inbox) {
      yield* inbox.recv();
    },
  });
  calls.dispatch({ key: "a", n: 0 });
  calls.dispatch({ key: "b", n: 0 });
  assert.equal(calls.dispatch({ key: "c", n: 0 }), "refused");
  assert.equal(calls.dispatch({ key: "a", n: 1 }), "delivered"); // known keys still flow
  assert.deepEqual(refused, [["c", "refused"]]);
  assert.throws(
    () => calls.start("d", function* () {}),
    ConversationLimitError,
  );
  await calls.shutdown();
  assert.equal(calls.stats.refused, 1);
});

Deno.test("Conversations drops messages to a full inbox without blocking the others", async () => {
  const got: number[] = [];
  const calls = new Conversations<Message, string>({
    key,
    clock: new VirtualClock(),
    inboxCapacity: 2,
    handler: async function* (inbox, first) {
      if (first!.key === "slow") {
        yield* delay(10_000); // never reads in time
        return;
      }
      got.push((yield* inbox.recv()).n);
    },
  });
  calls.dispatch({ key: "slow", n: 0 });
  const statuses = [1, 2, 3, 4].map((n) => calls.dispatch({ key: "slow", n }));
  assert.deepEqual(statuses, [
    "delivered",
    "delivered",
    "overflow",
    "overflow",
  ]);
  calls.dispatch({ key: "fast", n: 0 });
  assert.equal(calls.dispatch({ key: "fast", n: 7 }), "delivered");
  await calls.shutdown({ grace: 20_000 });
  assert.deepEqual(got, [7]);
  assert.equal(calls.stats.overflowed, 2);
});

Deno.test("Conversations cancels a conversation idle for idleTimeout; its finally runs", async () => {
  const clock = new VirtualClock();
  let endedAt = -1;
  const calls = new Conversations<Message, string>({
    key,
    clock,
    idleTimeout: 5000,
    handler: async function* (inbox) {
      try {
        for (;;) yield* inbox.recv();
      } finally {
        endedAt = clock.now();
      }
    },
  });
  calls.dispatch({ key: "a", n: 0 });
  await calls.shutdown({ grace: 60_000 });
  assert.equal(endedAt, 5000);
  assert.equal(calls.stats.expired, 1);
});

Deno.test("a message postpones idle expiry: idleTimeout counts from a conversation's last message", async () => {
  const clock = new VirtualClock();
  const endedAt: Record<string, number> = {};
  const calls = new Conversations<Message, string>({
    key,
    clock,
    idleTimeout: 5000,
    handler: async function* (inbox, first) {
      try {
        for (;;) yield* inbox.recv();
      } finally {
        endedAt[first!.key] = clock.now();
      }
    },
  });
  calls.dispatch({ key: "quiet", n: 0 });
  calls.dispatch({ key: "chatty", n: 0 });
  await run(
    (function* () {
      yield* delay(3000);
      calls.dispatch({ key: "chatty", n: 1 });
      yield* delay(4000);
      calls.dispatch({ key: "chatty", n: 2 });
    })(),
    { scheduler: calls.scheduler },
  );
  await calls.shutdown({ grace: 60_000 });
  assert.deepEqual(endedAt, { quiet: 5000, chatty: 12_000 });
  assert.equal(calls.stats.expired, 2);
});

for (const form of ["function*", "async function*"]) {
  Deno.test(`Inbox: a second receiver while one waits gets BusyError, and the first still gets its message (${form})`, async () => {
    const clock = new VirtualClock();
    const inbox = new Inbox<string>({ name: "call-1" });
    function* syncReceive(): Generator<Effect, string, unknown> {
      return yield* inbox.recv({ timeout: 100 });
    }
    async function* asyncReceive(): AsyncGenerator<Effect, string, unknown> {
      return yield* inbox.recv({ timeout: 100 });
    }
    const receive = form === "function*" ? syncReceive : asyncReceive;
    const result = await run(
      (function* () {
        const first = yield* spawn(receive());
        yield* delay(1);
        const second = yield* spawn(receive());
        yield* delay(1);
        inbox.push("x");
        inbox.push("y");
        let busy: unknown;
        try {
          yield* second.join();
        } catch (error) {
          busy = error;
        }
        assert.ok(busy instanceof BusyError);
        assert.match(
          busy.message,
          /call-1: another coroutine is already receiving on this inbox/,
        );
        // Once the first took its message, the inbox is free again.
        const next = yield* spawn(receive());
        return [yield* first.join(), yield* next.join(), clock.now()];
      })(),
      { clock },
    );
    assert.deepEqual(result, ["x", "y", 2]);
  });
}

Deno.test("Inbox.recv() throws TimeoutError at the deadline; poll() gives undefined", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<string>({ name: "call-1" });
  const result = await run(
    (async function* () {
      const polled = yield* inbox.poll({ timeout: 500 });
      const at = clock.now();
      try {
        yield* inbox.recv({ timeout: 1000 });
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
        assert.equal(error.op, "recv");
        assert.match(error.message, /call-1/);
        return [polled, at, clock.now()];
      }
    })(),
    { clock },
  );
  assert.deepEqual(result, [undefined, 500, 1500]);
});

Deno.test("Inbox delivers in push order while messages are pushed and received interleaved, hundreds deep", async () => {
  const inbox = new Inbox<number>({ capacity: 1000 });
  let pushed = 0;
  const push = (n: number) => {
    for (let i = 0; i < n; i++) assert.equal(inbox.push(pushed++), true);
  };
  const received = await run((function* () {
    const out: number[] = [];
    for (
      const [pushes, receives] of [[100, 60], [30, 50], [200, 150], [0, 70]]
    ) {
      push(pushes);
      for (let i = 0; i < receives; i++) out.push(yield* inbox.recv());
    }
    return out;
  })());
  assert.deepEqual(received, Array.from({ length: 330 }, (_, i) => i));
  assert.equal(inbox.size, 0);
});

Deno.test("Conversations reports a handler's error with its key and serves the others", async () => {
  const errors: [unknown, string][] = [];
  const calls = new Conversations<Message, string>({
    key,
    onError: (error, k) => errors.push([error, k]),
    // deno-lint-ignore require-yield
    handler: async function* (_, first) {
      if (first!.key === "bad") throw new Error("boom");
    },
  });
  calls.dispatch({ key: "bad", n: 0 });
  calls.dispatch({ key: "good", n: 0 });
  await calls.shutdown({ grace: 100 });
  assert.equal(errors.length, 1);
  assert.equal(errors[0][1], "bad");
  assert.equal(calls.stats.failed, 1);
});

Deno.test("Conversations reports, with its key, the error of a child of a conversation that expired", async () => {
  const clock = new VirtualClock();
  const errors: [unknown, string][] = [];
  const calls = new Conversations<Message, string>({
    key,
    clock,
    idleTimeout: 100,
    onError: (error, k) => errors.push([error, k]),
    handler: function* () {
      yield* spawn((function* () {
        try {
          yield* delay(60_000);
        } finally {
          // deno-lint-ignore no-unsafe-finally
          throw new Error("cleanup failed");
        }
      })());
      yield* delay(60_000);
    },
  });
  calls.dispatch({ key: "a", n: 0 });
  await run(
    (function* () {
      yield* delay(200);
    })(),
    { scheduler: calls.scheduler },
  );
  assert.equal(calls.stats.expired, 1);
  assert.deepEqual(
    errors.map(([error, k]) => [(error as Error).message, k]),
    [["cleanup failed", "a"]],
  );
  await calls.shutdown();
});

Deno.test("Conversations.shutdown() refuses new keys and cancels what outlives the grace", async () => {
  const clock = new VirtualClock();
  let cancelledAt = -1;
  const calls = new Conversations<Message, string>({
    key,
    clock,
    handler: async function* () {
      try {
        yield* delay(60_000);
      } finally {
        cancelledAt = clock.now();
      }
    },
  });
  calls.dispatch({ key: "a", n: 0 });
  const stopping = calls.shutdown({ grace: 1000 });
  assert.equal(calls.dispatch({ key: "b", n: 0 }), "closed");
  await stopping;
  assert.equal(cancelledAt, 1000);
});

Deno.test("Conversations.signal aborts as shutdown begins: a wait given it ends then, not at the grace's end; a conversation that lets its reason propagate is not failed", async () => {
  const clock = new VirtualClock();
  const reported: unknown[] = [];
  const ended: Record<string, number> = {};
  const calls: Conversations<Message, string> = new Conversations({
    key,
    clock,
    onError: (error) => reported.push(error),
    handler: async function* (inbox, first) {
      const k = first!.key;
      try {
        if (k === "flushes") {
          try {
            for (;;) yield* inbox.recv({ signal: calls.signal });
          } catch (error) {
            if (error !== calls.signal.reason) throw error;
          }
          yield* delay(50); // a goodbye that takes a while
        } else if (k === "propagates") {
          for (;;) yield* inbox.recv({ signal: calls.signal });
        } else if (k === "fails") {
          try {
            yield* inbox.recv({ signal: calls.signal });
          } catch {
            throw new Error("a failure of its own");
          }
        } else {
          for (;;) yield* inbox.recv(); // no signal: cancelled at the end
        }
      } finally {
        ended[k] = clock.now();
      }
    },
  });
  for (const k of ["flushes", "propagates", "fails", "deaf"]) {
    calls.dispatch({ key: k, n: 0 });
  }
  assert.equal(calls.signal.aborted, false);
  await run(
    (function* () {
      yield* delay(100);
    })(),
    { scheduler: calls.scheduler },
  );
  await calls.shutdown({ grace: 1000 });
  assert.equal(calls.signal.aborted, true);
  assert.equal((calls.signal.reason as DOMException).name, "AbortError");
  assert.deepEqual(ended, {
    flushes: 150,
    propagates: 100,
    fails: 100,
    deaf: 1100,
  });
  assert.equal(calls.stats.failed, 1);
  assert.deepEqual(reported.map((error) => (error as Error).message), [
    "a failure of its own",
  ]);
});

Deno.test("Conversations.start() begins a conversation from this side; replies reach it", async () => {
  const calls = new Conversations<Message, string>({
    key,
    clock: new VirtualClock(),
  });
  const task = calls.start("call", async function* (inbox) {
    return (yield* inbox.recv({ timeout: 1000 })).n;
  });
  assert.equal(calls.dispatch({ key: "call", n: 42 }), "delivered");
  assert.equal(calls.dispatch({ key: "stranger", n: 1 }), "closed");
  assert.equal(await task.finished, 42);
  assert.throws(() => calls.start("x", () => 1 as never), TypeError);
  await calls.shutdown();
});

Deno.test("Conversations.start()'s task fails with the handler's error, which onError is told too", async () => {
  const errors: [unknown, string][] = [];
  const calls = new Conversations<Message, string>({
    key,
    clock: new VirtualClock(),
    onError: (error, k) => errors.push([error, k]),
  });
  // deno-lint-ignore require-yield
  const task = calls.start("call", async function* () {
    throw new Error("no route");
  });
  await assert.rejects(task.finished, { message: "no route" });
  assert.deepEqual(errors.map(([error, k]) => [(error as Error).message, k]), [
    ["no route", "call"],
  ]);
  assert.equal(calls.stats.failed, 1);
  await calls.shutdown();
});

Deno.test("Conversations.start()'s task is cancelled when its conversation expires", async () => {
  const clock = new VirtualClock();
  const calls = new Conversations<Message, string>({
    key,
    clock,
    idleTimeout: 2000,
  });
  const task = calls.start("call", async function* (inbox) {
    return yield* inbox.recv();
  });
  await assert.rejects(task.finished, CancelledError);
  assert.equal(clock.now(), 2000);
  assert.equal(calls.stats.expired, 1);
  assert.equal(calls.has("call"), false);
  await calls.shutdown();
});

Deno.test("a conversation that fails during shutdown's grace leaves the others theirs", async () => {
  const clock = new VirtualClock();
  const ended: string[] = [];
  const calls = new Conversations<Message, string>({
    key,
    clock,
    onError: () => {},
    handler: async function* (_, first) {
      if (first!.key === "bad") {
        yield* delay(100);
        throw new Error("boom");
      }
      yield* delay(500);
      ended.push(`${first!.key} at ${clock.now()}`);
    },
  });
  calls.dispatch({ key: "bad", n: 0 });
  calls.dispatch({ key: "slow", n: 0 });
  await calls.shutdown({ grace: 1000 });
  assert.deepEqual(ended, ["slow at 500"]);
  assert.equal(calls.stats.failed, 1);
});

Deno.test("Conversations validates its options", () => {
  assert.throws(() => new Conversations({ key: 1 as never }), TypeError);
  assert.throws(
    () => new Conversations({ key, maxConversations: 0 }),
    RangeError,
  );
  assert.throws(() => new Conversations({ key, idleTimeout: -1 }), RangeError);
  assert.throws(() => new Conversations({ key, inboxCapacity: 0 }), RangeError);
  assert.throws(() => new Inbox({ capacity: 1.5 }), RangeError);
  assert.throws(() => new Conversations({ key, handler: 1 as never }), {
    name: "TypeError",
    message:
      "Cannot create conversations: handler must be a function* or async function*",
  });
});

Deno.test("Conversations.start() refuses a key that is running, a full table, and a table shutting down", async () => {
  const calls = new Conversations<Message, string>({
    key,
    clock: new VirtualClock(),
    maxConversations: 2,
  });
  const handler = async function* (inbox: Inbox<Message>) {
    return (yield* inbox.recv()).n;
  };
  const first = calls.start("a", handler);
  assert.throws(() => calls.start("a", handler), {
    name: "RangeError",
    message: "Cannot start conversation a: one with that key is running",
  });
  const second = calls.start("b", handler);
  assert.throws(() => calls.start("c", handler), {
    name: "ConversationLimitError",
    limit: 2,
    isClosed: false,
  });
  assert.equal(calls.dispatch({ key: "a", n: 1 }), "delivered");
  assert.equal(await first.finished, 1);
  const stopped = calls.shutdown({ grace: 1000 });
  assert.throws(() => calls.start("d", handler), {
    name: "ConversationLimitError",
    isClosed: true,
  });
  assert.equal(calls.dispatch({ key: "b", n: 2 }), "delivered");
  assert.equal(await second.finished, 2);
  await stopped;
});

Deno.test("Conversations.shutdown() with a negative grace is a RangeError; await using shuts down at once", async () => {
  let isCancelled = false;
  {
    await using calls = new Conversations<Message, string>({
      key,
      clock: new VirtualClock(),
    });
    assert.throws(() => calls.shutdown({ grace: -1 }), {
      name: "RangeError",
      message: "Cannot shut down conversations: grace must be >= 0, got -1",
    });
    let started!: () => void;
    const isStarted = new Promise<void>((resolve) => started = resolve);
    calls.start("a", async function* (inbox) {
      started();
      try {
        yield* inbox.recv();
      } finally {
        isCancelled = true;
      }
    });
    await isStarted;
  }
  assert.equal(isCancelled, true);
});

// Core regression (src/scheduler.ts): the clock was poked only when a
// coroutine parked, so when the last busy coroutine *ended* instead, a
// virtual clock never jumped and a conversation's timer never fired.
Deno.test("VirtualClock autojumps when the last busy coroutine ends instead of parking", async () => {
  const clock = new VirtualClock();
  const scheduler = new Scheduler({ clock });
  const sleeper = scheduler.spawn((async function* () {
    yield* delay(1000);
    return clock.now();
  })());
  scheduler.spawn((async function* () {})());
  assert.equal(await sleeper.finished, 1000);
});

Deno.test("Conversations, any schedule: every message is received once or refused, in order per key, and idle ones expire exactly", async () => {
  const scenario = fc.record({
    idleTimeout: fc.integer({ min: 1, max: 40 }),
    inboxCapacity: fc.integer({ min: 1, max: 3 }),
    maxConversations: fc.integer({ min: 1, max: 4 }),
    // What the conversations of each key do: receive `wants` messages after
    // their first, linger (not receiving), then return or throw.
    behaviour: fc.array(
      fc.record({
        wants: fc.integer({ min: 0, max: 3 }),
        linger: fc.integer({ min: 0, max: 30 }),
        fails: fc.boolean(),
      }),
      { minLength: 4, maxLength: 4 },
    ),
    arrivals: fc.array(
      fc.record({
        at: fc.integer({ min: 0, max: 120 }),
        key: fc.integer({ min: 0, max: 3 }),
      }),
      { maxLength: 30 },
    ),
  });
  await fc.assert(
    fc.asyncProperty(scenario, async (s) => {
      const clock = new VirtualClock();
      type Sent = { key: string; id: number };
      type Instance = {
        key: string;
        start: number;
        end: number;
        how: "returned" | "threw" | "cancelled";
      };
      const consumed: Sent[] = [];
      const refused = new Map<number, number>();
      const instances: Instance[] = [];
      const deliveries: { key: string; at: number }[] = [];
      const errors: unknown[] = [];
      const calls = new Conversations<Sent, string>({
        key: (message) => message.key,
        clock,
        idleTimeout: s.idleTimeout,
        inboxCapacity: s.inboxCapacity,
        maxConversations: s.maxConversations,
        onRefuse: (message) =>
          refused.set(message.id, (refused.get(message.id) ?? 0) + 1),
        onError: (error) => errors.push(error),
        handler: function* (inbox, first, key) {
          const { wants, linger, fails } = s.behaviour[Number(key)];
          const me: Instance = {
            key,
            start: clock.now(),
            end: -1,
            how: "cancelled",
          };
          instances.push(me);
          try {
            consumed.push(first!);
            for (let i = 0; i < wants; i++) consumed.push(yield* inbox.recv());
            if (linger > 0) yield* delay(linger);
            if (fails) {
              me.how = "threw";
              throw new Error(`conversation ${key} fails`);
            }
            me.how = "returned";
          } finally {
            me.end = clock.now();
          }
        },
      });
      const arrivals = [...s.arrivals].sort((a, b) => a.at - b.at);
      await run(
        (function* () {
          let id = 0;
          for (const { at, key } of arrivals) {
            if (at > clock.now()) yield* delay(at - clock.now());
            const message = { key: String(key), id: id++ };
            const status = calls.dispatch(message);
            assert.notEqual(status, "closed");
            if (status === "delivered") {
              deliveries.push({ key: message.key, at: clock.now() });
            }
            assert.equal(calls.stats.active, calls.size);
          }
          // Long enough for every chain of re-dispatched leftovers to end.
          yield* delay(20_000);
        })(),
        { scheduler: calls.scheduler },
      );
      assert.equal(calls.size, 0);
      await calls.shutdown();

      // Each message received exactly once, or refused (never both, never lost).
      for (let id = 0; id < arrivals.length; id++) {
        const times = consumed.filter((m) => m.id === id).length +
          (refused.get(id) ?? 0);
        assert.equal(times, 1, `message ${id}`);
      }
      // In dispatch order per key, across the key's successive conversations.
      for (const key of ["0", "1", "2", "3"]) {
        const ids = consumed.filter((m) => m.key === key).map((m) => m.id);
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
      }
      const count = (how: Instance["how"]) =>
        instances.filter((i) => i.how === how).length;
      assert.deepEqual(
        [
          calls.stats.started,
          calls.stats.failed,
          calls.stats.expired,
          calls.stats.active,
        ],
        [instances.length, count("threw"), count("cancelled"), 0],
      );
      assert.equal(errors.length, count("threw"));
      // A cancelled conversation ended idleTimeout after its last message.
      // A delivery went to its key's latest conversation to start by then:
      // at one instant a conversation can expire and its leftover start the
      // next, which then takes that instant's deliveries.
      const receiver = (d: { key: string; at: number }) =>
        instances.findLast((i) => i.key === d.key && i.start <= d.at);
      for (const instance of instances) {
        if (instance.how !== "cancelled") continue;
        const last = Math.max(
          instance.start,
          ...deliveries.filter((d) => receiver(d) === instance).map((d) =>
            d.at
          ),
        );
        assert.equal(instance.end, last + s.idleTimeout);
      }
    }),
    runs(300),
  );
});

Deno.test("stats.expired counts only what idle expiry cancelled: not a conversation shutdown or its task cancelled, whose finally outlives the idle deadline", async () => {
  const clock = new VirtualClock();
  function* handler(inbox: Inbox<Message>) {
    try {
      yield* inbox.recv();
    } finally {
      yield* delay(5000); // cleanup past the idle deadline
    }
  }
  const calls = new Conversations<Message, string>({
    key,
    clock,
    idleTimeout: 1000,
    handler,
  });
  const started = calls.start("by task", handler);
  await run(
    (function* () {
      calls.dispatch({ key: "by shutdown", n: 0 });
      yield* delay(10);
      started.cancel();
      yield* delay(90);
    })(),
    { scheduler: calls.scheduler },
  );
  await calls.shutdown(); // cancels "by shutdown" at 100
  await assert.rejects(started.finished, CancelledError);
  assert.deepEqual([clock.now(), calls.stats.expired], [5100, 0]);
});

Deno.test("a conversation's inbox closes as its handler ends: a sender waiting there gets InboxClosedError, and no message a send delivered is lost", async () => {
  const clock = new VirtualClock();
  const got: string[] = [];
  let captured: Inbox<string> | undefined;
  const calls = new Conversations<string, string>({
    key: () => "k",
    clock,
    inboxCapacity: 1,
    handler: function* (inbox, first) {
      got.push(first!);
      captured ??= inbox;
      yield* delay(10); // ends without draining its inbox
    },
  });
  calls.dispatch("m0");
  const log: string[] = [];
  await run(
    (function* () {
      for (const m of ["m1", "m2", "m3"]) {
        try {
          yield* captured!.send(m, { timeout: 100 });
          log.push(`${m} sent at ${clock.now()}`);
        } catch (error) {
          log.push(`${m} ${(error as Error).name} at ${clock.now()}`);
        }
      }
      yield* delay(50);
    })(),
    { scheduler: calls.scheduler },
  );
  await calls.shutdown();
  // Every message a send reported as sent reaches a handler.
  const sent = log.filter((l) => l.includes(" sent ")).map((l) =>
    l.split(" ")[0]
  );
  for (const m of sent) {
    assert.ok(got.includes(m), `${m} was sent but never received: ${got}`);
  }
  assert.ok(log.some((l) => l.includes("InboxClosedError")), log.join("; "));
});

Deno.test("dispatch() of a new key while shutting down, or with no handler, tells onRefuse ('closed') so a server can answer, and counts it in stats.closed", async () => {
  const refused: string[] = [];
  const onRefuse = (message: Message, _: string, reason: string) =>
    void refused.push(`${message.key} ${reason}`);
  const clock = new VirtualClock();
  const calls = new Conversations<Message, string>({
    key,
    clock,
    onRefuse,
    handler: function* () {
      yield* delay(100);
    },
  });
  calls.dispatch({ key: "a", n: 1 });
  const stopping = calls.shutdown({ grace: 1000 });
  assert.equal(calls.dispatch({ key: "b", n: 1 }), "closed");
  await stopping;
  const clientSide = new Conversations<Message, string>({ key, onRefuse });
  assert.equal(clientSide.dispatch({ key: "c", n: 1 }), "closed");
  await clientSide.shutdown();
  assert.deepEqual(refused, ["b closed", "c closed"]);
  assert.deepEqual([calls.stats.closed, clientSide.stats.closed], [1, 1]);
});
