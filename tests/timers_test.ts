import assert from "node:assert/strict";
import { Alarm, type DeadlineEntry, DeadlineQueue } from "../src/timers.ts";
import { delay, run, TimeoutError } from "../mod.ts";
import { memoryConnPair } from "../testing.ts";
import { handClock } from "./_hand_clock.ts";
import fc from "fast-check";
import { runs } from "./_property.ts";

/** An entry that remembers the deadline it was last set to (the queue does not). */
interface Entry extends DeadlineEntry {
  at: number;
}

function entry(): Entry {
  return { heapIndex: -1, at: NaN };
}

function setAt(queue: DeadlineQueue<Entry>, e: Entry, deadline: number) {
  e.at = deadline;
  queue.set(e, deadline);
}

Deno.test("DeadlineQueue pops entries in deadline order", () => {
  const queue = new DeadlineQueue<Entry>();
  const deadlines = Array.from({ length: 500 }, (_, i) => (i * 7919) % 1000);
  for (const deadline of deadlines) setAt(queue, entry(), deadline);
  const popped: number[] = [];
  for (let e; (e = queue.popExpired(Infinity));) popped.push(e.at);
  assert.deepEqual(popped, [...deadlines].sort((a, b) => a - b));
});

Deno.test("DeadlineQueue pops only what has expired", () => {
  const queue = new DeadlineQueue<Entry>();
  for (const deadline of [10, 20, 30]) setAt(queue, entry(), deadline);
  assert.equal(queue.popExpired(9), undefined);
  assert.equal(queue.peekDeadline(), 10);
  assert.equal(queue.popExpired(20)?.at, 10);
  assert.equal(queue.popExpired(20)?.at, 20);
  assert.equal(queue.popExpired(20), undefined);
  assert.equal(queue.size, 1);
  assert.equal(queue.peekDeadline(), 30);
  queue.popExpired(30);
  assert.equal(queue.peekDeadline(), Infinity);
});

Deno.test("DeadlineQueue removes and re-keys entries in place", () => {
  const queue = new DeadlineQueue<Entry>();
  const entries = Array.from({ length: 100 }, entry);
  entries.forEach((e, i) => setAt(queue, e, i));
  for (let i = 0; i < 100; i += 2) queue.delete(entries[i]);
  setAt(queue, entries[99], -1); // earlier
  setAt(queue, entries[1], 1000); // later
  queue.delete(entries[0]); // already removed: no-op
  const popped: number[] = [];
  for (let e; (e = queue.popExpired(Infinity));) popped.push(e.at);
  const expected = [
    -1,
    ...Array.from({ length: 48 }, (_, i) => 3 + 2 * i),
    1000,
  ];
  assert.deepEqual(popped, expected);
  assert.ok(entries.every((e) => e.heapIndex === -1));
});

Deno.test("DeadlineQueue agrees with a sorted list under random set, re-key, delete and pop, ties in the order set", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          // Mostly sets, so the heap gets several levels deep; few
          // distinct times, so many entries tie.
          fc.constantFrom("set", "set", "set", "delete", "pop"),
          fc.nat(99),
          fc.integer({ min: -5, max: 20 }),
        ),
        { maxLength: 400, size: "max" },
      ),
      (steps) => {
        const queue = new DeadlineQueue<Entry>();
        const entries = Array.from({ length: 100 }, entry);
        // The model: each queued entry's deadline and when it was last set.
        const queued = new Map<Entry, number>();
        let sets = 0;
        const sorted = () =>
          [...queued].sort(([a, i], [b, j]) => a.at - b.at || i - j)
            .map(([e]) => e);
        for (const [kind, which, time] of steps) {
          const e = entries[which];
          if (kind === "set") {
            setAt(queue, e, time);
            queued.delete(e);
            queued.set(e, sets++);
          } else if (kind === "delete") {
            queue.delete(e);
            queued.delete(e);
          } else {
            const first = sorted()[0];
            const popped = queue.popExpired(time);
            if (first !== undefined && first.at <= time) {
              assert.equal(popped, first);
              queued.delete(first);
            } else assert.equal(popped, undefined);
          }
          assert.equal(queue.size, queued.size);
          assert.equal(queue.peekDeadline(), sorted()[0]?.at ?? Infinity);
        }
        const rest: Entry[] = [];
        for (let e; (e = queue.popExpired(Infinity));) rest.push(e);
        // By identity: entries with equal deadlines look alike.
        const id = (e: Entry) => entries.indexOf(e);
        assert.deepEqual(rest.map(id), sorted().map(id));
        assert.ok(entries.every((e) => e.heapIndex === -1));
      },
    ),
    runs(300),
  );
});

Deno.test("DeadlineQueue pops equal deadlines in the order they were set, a re-set one last", () => {
  const queue = new DeadlineQueue<Entry>();
  const entries = Array.from({ length: 200 }, entry);
  entries.forEach((e) => setAt(queue, e, 10));
  setAt(queue, entries[0], 10); // set again: behind the other 199
  queue.delete(entries[100]);
  const popped: Entry[] = [];
  for (let e; (e = queue.popExpired(10));) popped.push(e);
  // By identity: the entries look alike.
  const id = (e: Entry) => entries.indexOf(e);
  assert.deepEqual(popped.map(id), [
    ...Array.from({ length: 99 }, (_, i) => i + 1),
    ...Array.from({ length: 99 }, (_, i) => i + 101),
    0,
  ]);
});

Deno.test("Alarm keeps one host timer, armed for the earliest deadline", () => {
  const { host, clock, fire } = handClock();
  const fired: number[] = [];
  const alarm = new Alarm<Entry>(clock, (e) => fired.push(e.at));
  const [a, b, c] = [entry(), entry(), entry()];
  a.at = 30;
  alarm.set(a, 30);
  b.at = 10;
  alarm.set(b, 10); // earlier: re-armed
  c.at = 20;
  alarm.set(c, 20); // later than armed: no new timer
  assert.deepEqual(host.armed, [30, 10]);
  fire();
  assert.deepEqual(fired, [10]);
  assert.equal(host.pending?.at, 20);
  alarm.delete(c); // the timer stays armed and finds nothing due
  fire();
  assert.deepEqual(fired, [10]);
  assert.equal(host.pending?.at, 30);
  fire();
  assert.deepEqual(fired, [10, 30]);
  assert.equal(host.pending, null);
});

Deno.test("Alarm re-arms once after a batch, for what the batch queued", () => {
  const { host, clock, fire } = handClock();
  const entries = Array.from({ length: 100 }, entry);
  // Each expiry queues its entry again 100 ms later, as a looping delay does.
  const alarm: Alarm<Entry> = new Alarm(clock, (e) => {
    e.at = host.now + 100 + entries.indexOf(e);
    alarm.set(e, e.at);
  });
  entries.forEach((e, i) => alarm.set(e, e.at = 100 - i));
  assert.equal(host.armed.length, 100); // each set was earlier than the last
  host.armed.length = 0;
  fire(); // at 1: only the entry due at 1 expires
  fire(); // at 2 ...
  assert.deepEqual(host.armed, [2, 3]);
  host.now = 1000;
  host.pending!.callback(); // late: all 100 are due, and expire in one batch
  assert.deepEqual(host.armed, [2, 3, 1100]);
});

Deno.test("Alarm.stop clears the host timer", () => {
  const { host, clock } = handClock();
  const alarm = new Alarm<Entry>(clock, () => {});
  alarm.set(entry(), 5);
  alarm.stop();
  assert.equal(host.pending, null);
  alarm.set(entry(), 7);
  assert.deepEqual(host.armed, [5, 7]);
});

/** Keeps the CPU busy for `ms`, as a handler's synchronous work does. */
function busyFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) { /* work in this turn */ }
}

Deno.test("on the system clock, delay(ms) and a receive's timeout count from the wait, not from the start of a turn that ran long", async () => {
  const [a, b] = memoryConnPair();
  const lasted = await run((function* () {
    const lasted: number[] = [];
    for (let i = 0; i < 3; i++) {
      yield* delay(1); // a fresh turn, started by the host's timer
      busyFor(5);
      const start = performance.now();
      yield* delay(10);
      lasted.push(performance.now() - start);
    }
    for (let i = 0; i < 3; i++) {
      yield* delay(1);
      busyFor(5);
      const start = performance.now();
      try {
        yield* b.recv({ timeout: 10 });
      } catch (error) {
        if (!(error instanceof TimeoutError)) throw error;
      }
      lasted.push(performance.now() - start);
    }
    return lasted;
  })());
  a.close();
  b.close();
  // Before, each ended about 5 ms early: the clock was read once per turn.
  for (const ms of lasted) assert.ok(ms >= 10, `lasted ${lasted.join(", ")}`);
});
