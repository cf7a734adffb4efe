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
