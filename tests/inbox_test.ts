import assert from "node:assert/strict";
import { delay, Inbox, InboxClosedError, run, spawn } from "@corio/corio";
import { VirtualClock } from "@corio/corio/testing";

Deno.test("Inbox.close(): the receiver gets what is queued, then recv() throws InboxClosedError and poll() gives undefined at once; push refuses", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<string>({ name: "writer" });
  const seen = await run(
    (async function* () {
      const got: string[] = [];
      const consumer = yield* spawn((async function* () {
        try {
          for (;;) got.push(yield* inbox.recv({ timeout: 60_000 }));
        } catch (error) {
          return error;
        }
      })());
      yield* delay(10); // the consumer waits
      inbox.push("a");
      inbox.push("b");
      inbox.close();
      inbox.close(); // idempotent
      const refused = inbox.push("late");
      const error = yield* consumer.join();
      const before = clock.now();
      const polled = yield* inbox.poll({ timeout: 60_000 });
      return { got, error, refused, polled, waited: clock.now() - before };
    })(),
    { clock },
  );
  assert.deepEqual(seen.got, ["a", "b"]);
  assert.ok(seen.error instanceof InboxClosedError, String(seen.error));
  assert.equal(
    seen.error.message,
    "Cannot recv from writer: the inbox is closed",
  );
  assert.equal(seen.refused, false);
  assert.equal(seen.polled, undefined);
  assert.equal(seen.waited, 0);
  assert.equal(clock.now(), 10); // no receive waited for its timeout
  assert.equal(inbox.isClosed, true);
});

Deno.test("Inbox.close() wakes a receiver waiting on an empty inbox, in function* too", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<number>();
  const outcome = await run(
    (function* () {
      const consumer = yield* spawn((function* () {
        try {
          return yield* inbox.recv();
        } catch (error) {
          return error;
        }
      })());
      yield* delay(5);
      inbox.close();
      return yield* consumer.join();
    })(),
    { clock },
  );
  assert.ok(outcome instanceof InboxClosedError, String(outcome));
  assert.equal(clock.now(), 5);
});

// A coroutine that sends `message` and logs how it ended, in either form.
function sender(
  form: "function*" | "async function*",
  clock: VirtualClock,
  inbox: Inbox<string>,
  message: string,
  log: string[],
  options?: { timeout?: number; signal?: AbortSignal },
) {
  const ended = (error?: unknown) =>
    log.push(
      `${message} ${
        error === undefined ? "sent" : (error as Error).name
      } at ${clock.now()}`,
    );
  return form === "function*"
    ? (function* () {
      try {
        yield* inbox.send(message, options);
        ended();
      } catch (error) {
        ended(error);
      }
    })()
    : (async function* () {
      try {
        yield* inbox.send(message, options);
        ended();
      } catch (error) {
        ended(error);
      }
    })();
}

for (const form of ["function*", "async function*"] as const) {
  Deno.test(`Inbox.send() waits for room: a producer runs at its consumer's pace and nothing is dropped (${form})`, async () => {
    const clock = new VirtualClock();
    const inbox = new Inbox<string>({ capacity: 2 });
    const log: string[] = [];
    const got = await run(
      (function* () {
        const got: string[] = [];
        const consumer = yield* spawn((function* () {
          for (let i = 0; i < 5; i++) {
            yield* delay(10);
            got.push(yield* inbox.recv());
          }
        })());
        for (const message of ["a", "b", "c", "d", "e"]) {
          yield* spawn(sender(form, clock, inbox, message, log));
          yield* delay(0); // in this order
        }
        yield* consumer.join();
        return got;
      })(),
      { clock },
    );
    assert.deepEqual(got, ["a", "b", "c", "d", "e"]);
    // Two fit at once; then each waits for the receive before it, in turn.
    assert.deepEqual(log, [
      "a sent at 0",
      "b sent at 0",
      "c sent at 10",
      "d sent at 20",
      "e sent at 30",
    ]);
  });

  Deno.test(`Inbox.send() that times out adds nothing, and the sender behind it gets the room (${form})`, async () => {
    const clock = new VirtualClock();
    const inbox = new Inbox<string>({ capacity: 1 });
    const log: string[] = [];
    const got = await run(
      (function* () {
        inbox.push("full");
        yield* spawn(sender(form, clock, inbox, "x", log, { timeout: 5 }));
        yield* delay(0);
        yield* spawn(sender(form, clock, inbox, "y", log));
        yield* delay(20);
        const got = [yield* inbox.recv()];
        yield* delay(0);
        got.push(yield* inbox.recv({ timeout: 0 }));
        return got;
      })(),
      { clock },
    );
    assert.deepEqual(log, ["x TimeoutError at 5", "y sent at 20"]);
    assert.deepEqual(got, ["full", "y"]);
    assert.equal(inbox.size, 0);
  });

  Deno.test(`Inbox.send(): an aborted or cancelled sender leaves the queue, and the next one is not stranded (${form})`, async () => {
    const clock = new VirtualClock();
    const inbox = new Inbox<string>({ capacity: 1 });
    const log: string[] = [];
    const controller = new AbortController();
    const got = await run(
      (function* () {
        inbox.push("full");
        const first = yield* spawn(sender(form, clock, inbox, "x", log));
        yield* delay(0);
        yield* spawn(
          sender(form, clock, inbox, "y", log, { signal: controller.signal }),
        );
        yield* delay(0);
        yield* spawn(sender(form, clock, inbox, "z", log));
        yield* delay(10);
        first.cancel();
        controller.abort(new Error("changed my mind"));
        yield* delay(10);
        const got = [yield* inbox.recv()];
        yield* delay(0);
        got.push(yield* inbox.recv({ timeout: 0 }));
        return got;
      })(),
      { clock },
    );
    assert.deepEqual(log, ["y Error at 10", "z sent at 20"]);
    assert.deepEqual(got, ["full", "z"]);
  });

  Deno.test(`Inbox.send() to a closed inbox throws InboxClosedError, and close() wakes the senders waiting (${form})`, async () => {
    const clock = new VirtualClock();
    const inbox = new Inbox<string>({ capacity: 1, name: "jobs" });
    const log: string[] = [];
    const closedError = await run(
      (function* () {
        inbox.push("full");
        yield* spawn(sender(form, clock, inbox, "x", log, { timeout: 1000 }));
        yield* spawn(sender(form, clock, inbox, "y", log));
        yield* delay(7);
        inbox.close();
        yield* delay(1);
        try {
          yield* inbox.send("late");
        } catch (error) {
          return error;
        }
      })(),
      { clock },
    );
    assert.deepEqual(log, [
      "x InboxClosedError at 7",
      "y InboxClosedError at 7",
    ]);
    assert.ok(closedError instanceof InboxClosedError);
    assert.equal(closedError.op, "send");
    assert.equal(
      closedError.message,
      "Cannot send to jobs: the inbox is closed",
    );
    assert.equal(inbox.size, 1); // what was queued is still received
  });
}

Deno.test("Inbox.send() while senders wait goes behind them, even when a place is free", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<string>({ capacity: 1 });
  const log: string[] = [];
  const got = await run(
    (function* () {
      inbox.push("full");
      yield* spawn(sender("function*", clock, inbox, "first", log));
      yield* delay(1);
      // Frees the place "first" waits for, and sends before "first" runs
      // again: the place is free, but "first" came before.
      yield* spawn((function* () {
        yield* inbox.recv();
        yield* inbox.send("second");
        log.push(`second sent at ${clock.now()}`);
      })());
      yield* delay(1);
      const got = [yield* inbox.recv()];
      yield* delay(1);
      got.push(yield* inbox.recv({ timeout: 0 }));
      return got;
    })(),
    { clock },
  );
  assert.deepEqual(got, ["first", "second"]);
  assert.deepEqual(log, ["first sent at 1", "second sent at 2"]);
});

Deno.test("Inbox.send(): a sender cancelled after a place was freed for it, before it took it, passes the place on", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<string>({ capacity: 1 });
  const log: string[] = [];
  const got = await run(
    (function* () {
      inbox.push("full");
      const first = yield* spawn(sender("function*", clock, inbox, "x", log));
      yield* delay(1);
      yield* spawn(sender("function*", clock, inbox, "y", log));
      yield* delay(1);
      yield* inbox.recv(); // wakes "x", which has yet to run...
      first.cancel(); // ... and never will
      yield* delay(1);
      return yield* inbox.recv({ timeout: 0 });
    })(),
    { clock },
  );
  assert.equal(got, "y");
  assert.deepEqual(log, ["y sent at 2"]);
});

Deno.test("Inbox.send() times out with a TimeoutError that names the operation and the inbox", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<number>({ capacity: 1, name: "call 42" });
  inbox.push(1);
  const error = await run(
    (async function* () {
      try {
        yield* inbox.send(2, { timeout: 250 });
      } catch (error) {
        return error;
      }
    })(),
    { clock },
  ) as Error & { op: string; timeout: number };
  assert.equal(error.name, "TimeoutError");
  assert.equal(error.op, "send");
  assert.equal(error.timeout, 250);
  assert.equal(error.message, "Cannot send to call 42: timed out after 250 ms");
  assert.equal(clock.now(), 250);
  assert.equal(inbox.size, 1);
});

for (const form of ["function*", "async function*"] as const) {
  // The head sender is woken by a receive at its own deadline, a push()
  // takes the place first, and its re-park finds the deadline passed: it
  // throws TimeoutError from the EXPIRED path, which never calls unpark.
  Deno.test(`Inbox.send(): a sender woken, beaten to the place by a push, and out of time as it waits again leaves the queue (${form})`, async () => {
    const clock = new VirtualClock();
    const inbox = new Inbox<string>({ capacity: 1 });
    inbox.push("full");
    const log: string[] = [];
    await run(
      (function* () {
        // The main coroutine's delay(10) is queued before S's deadline 10.
        const s = yield* spawn(
          sender(form, clock, inbox, "S", log, { timeout: 10 }),
        );
        yield* delay(10);
        // t=10: take one (wakes S), then a push takes the room before S runs.
        log.push(`took ${yield* inbox.recv({ timeout: 0 })}`);
        log.push(`push ${inbox.push("pushed")}`);
        yield* s.join();
        // T comes later and waits; a receive makes room for it.
        const t = yield* spawn(
          sender("function*", clock, inbox, "T", log, { timeout: 100 }),
        );
        yield* delay(5);
        log.push(`took ${yield* inbox.recv({ timeout: 0 })}`);
        yield* t.join();
      })(),
      { clock },
    );
    // T gets the place freed at 15. (function*: S runs after its wake, the
    // push has taken the place, and S's deadline is past as it waits again;
    // async: S is stepped at the wake.)
    assert.equal(log.at(-1), "T sent at 15", log.join("; "));
  });
}

Deno.test("an inbox a coroutine owns (spawn's owns) is closed as it ends: a sender waiting for room gets InboxClosedError", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<number>({ capacity: 1 });
  inbox.push(0);
  const error = await run(
    (function* () {
      yield* spawn(
        (function* () {
          yield* delay(100); // a consumer that never receives, then ends
        })(),
        { owns: [inbox] },
      );
      try {
        yield* inbox.send(1);
      } catch (error) {
        return error;
      }
    })(),
    { clock },
  );
  assert.ok(error instanceof InboxClosedError, String(error));
  assert.equal(clock.now(), 100);
});
