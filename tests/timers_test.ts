import assert from "node:assert/strict";
import { type DeadlineEntry, DeadlineQueue } from "../src/timers.ts";
import fc from "fast-check";

function entry(): DeadlineEntry {
  return { deadline: Infinity, heapIndex: -1 };
}

Deno.test("DeadlineQueue pops entries in deadline order", () => {
  const queue = new DeadlineQueue<DeadlineEntry>();
  const deadlines = Array.from({ length: 500 }, (_, i) => (i * 7919) % 1000);
  for (const deadline of deadlines) queue.set(entry(), deadline);
  const popped: number[] = [];
  for (let e; (e = queue.popExpired(Infinity));) popped.push(e.deadline);
  assert.deepEqual(popped, [...deadlines].sort((a, b) => a - b));
});

Deno.test("DeadlineQueue pops only what has expired", () => {
  const queue = new DeadlineQueue<DeadlineEntry>();
  for (const deadline of [10, 20, 30]) queue.set(entry(), deadline);
  assert.equal(queue.popExpired(9), undefined);
  assert.equal(queue.popExpired(20)?.deadline, 10);
  assert.equal(queue.popExpired(20)?.deadline, 20);
  assert.equal(queue.popExpired(20), undefined);
  assert.equal(queue.size, 1);
});

Deno.test("DeadlineQueue removes and re-keys entries in place", () => {
  const queue = new DeadlineQueue<DeadlineEntry>();
  const entries = Array.from({ length: 100 }, entry);
  entries.forEach((e, i) => queue.set(e, i));
  for (let i = 0; i < 100; i += 2) queue.delete(entries[i]);
  queue.set(entries[99], -1); // earlier
  queue.set(entries[1], 1000); // later
  queue.delete(entries[0]); // already removed: no-op
  const popped: number[] = [];
  for (let e; (e = queue.popExpired(Infinity));) popped.push(e.deadline);
  const expected = [
    -1,
    ...Array.from({ length: 48 }, (_, i) => 3 + 2 * i),
    1000,
  ];
  assert.deepEqual(popped, expected);
  assert.ok(entries.every((e) => e.heapIndex === -1));
});

Deno.test("DeadlineQueue agrees with a sorted list under random set, re-key, delete and pop", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          // Mostly sets, so the heap gets several levels deep.
          fc.constantFrom("set", "set", "set", "delete", "pop"),
          fc.nat(99),
          fc.integer({ min: -50, max: 200 }),
        ),
        { maxLength: 400, size: "max" },
      ),
      (steps) => {
        const queue = new DeadlineQueue<DeadlineEntry>();
        const entries = Array.from({ length: 100 }, entry);
        const queued = new Set<DeadlineEntry>();
        for (const [kind, which, time] of steps) {
          const e = entries[which];
          if (kind === "set") {
            queue.set(e, time);
            queued.add(e);
          } else if (kind === "delete") {
            queue.delete(e);
            queued.delete(e);
          } else {
            const earliest = Math.min(...[...queued].map((q) => q.deadline));
            const popped = queue.popExpired(time);
            if (earliest <= time) {
              assert.equal(popped?.deadline, earliest);
              queued.delete(popped!);
            } else assert.equal(popped, undefined);
          }
          assert.equal(queue.size, queued.size);
          assert.equal(
            queue.peek()?.deadline,
            queued.size === 0
              ? undefined
              : Math.min(...[...queued].map((q) => q.deadline)),
          );
        }
        const rest: number[] = [];
        for (let e; (e = queue.popExpired(Infinity));) rest.push(e.deadline);
        assert.deepEqual(
          rest,
          [...queued].map((q) => q.deadline).sort((a, b) => a - b),
        );
        assert.ok(entries.every((e) => e.heapIndex === -1));
      },
    ),
    { numRuns: 300 },
  );
});
