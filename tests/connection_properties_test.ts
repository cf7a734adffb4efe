// Properties of a connection under random timing, on a virtual clock.
//
// Receives (and peek({ min }) with skip()) with random timeouts, deadlines
// and aborts over bytes that arrive at random moments: whatever ends early, no byte is lost,
// duplicated or reordered, every timeout or abort ends its receive exactly
// when due and only when the receive could not have completed before, and
// every receive that completes does so the moment its bytes are there.
//
// Sends from several coroutines with random timeouts against a slow reader:
// each send arrives whole and in the order the sends were called, never
// interleaved; a send that times out while writing closes the connection
// and nothing follows its bytes; one that times out still queued writes
// nothing and leaves the connection open.
//
// The speed work keeps several things that must not change what a user
// sees (an `async function*` waits in place, an operation is reused, a
// deadline entry stays queued after its wait ends, a server's compactor
// moves a long wait in place to a yield); these check them together, in
// both handler forms.

import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./_property.ts";
import {
  type Connection,
  ConnectionClosedError,
  ConnectionResetError,
  type Coroutine,
  delay,
  type Effect,
  IncompleteReadError,
  LineTooLongError,
  type RecvOptions,
  run,
  Scheduler,
  spawn,
  type Task,
  TimeoutError,
} from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";

const LF = 10;
const CR = 13;
const decoder = new TextDecoder();

interface Step {
  /**
   * `recvLineCrlf`: `recvLine({ crlfOnly: true })`. `peekSkip`:
   * `peek({ min: max(1, n) })`, then `skip()` of that many bytes of what it
   * shows (fewer only at the end of the stream).
   */
  kind: "recv" | "recvExact" | "recvLine" | "recvLineCrlf" | "peekSkip";
  /** recvExact's byte count; peekSkip's `min`. */
  n: number;
  /**
   * What ends it early: a relative timeout, an absolute deadline (as an
   * offset from its start), a signal aborted that long after its start, or
   * nothing.
   */
  limit:
    | { timeout: number }
    | { deadlineIn: number }
    | { abortIn: number }
    | null;
  borrow: boolean;
}

const stepsOf = fc.array(
  fc.record({
    kind: fc.constantFrom(
      "recv",
      "recvExact",
      "recvLine",
      "recvLineCrlf",
      "peekSkip",
    ),
    n: fc.integer({ min: 0, max: 12 }),
    limit: fc.oneof(
      fc.constant(null),
      fc.record({ timeout: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ deadlineIn: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ abortIn: fc.integer({ min: 0, max: 40 }) }),
    ),
    borrow: fc.boolean(),
  }),
  { maxLength: 40 },
) as fc.Arbitrary<Step[]>;

/** Chunks of a, b, CR and LF, each sent `gap` ms after the one before. */
const arrivalsOf = fc.record({
  chunks: fc.array(
    fc.record({
      gap: fc.nat({ max: 30 }),
      bytes: fc.array(fc.constantFrom(97, 98, CR, LF), {
        minLength: 1,
        maxLength: 12,
      }),
    }),
    { maxLength: 15 },
  ),
  endGap: fc.nat({ max: 30 }),
  // Mostly the default; sometimes short, so that lines run over it.
  maxLineLength: fc.oneof(
    { arbitrary: fc.constant(8192), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: 12 }), weight: 1 },
  ),
});

type Arrivals = typeof arrivalsOf extends fc.Arbitrary<infer T> ? T : never;

/** What happened to one step: its result or error, and when. */
interface Outcome {
  step: Step;
  start: number;
  /** When its timeout, deadline or abort was due; Infinity for none. */
  deadline: number;
  end: number;
  value: Uint8Array | string | null | Error;
}

/** The bytes in order, when each arrives, and when the peer's FIN does. */
function timeline(plan: Arrivals) {
  const bytes: number[] = [];
  const at: number[] = [];
  let now = 0;
  for (const { gap, bytes: chunk } of plan.chunks) {
    now += gap;
    for (const byte of chunk) {
      bytes.push(byte);
      at.push(now);
    }
  }
  return { data: new Uint8Array(bytes), at, eofAt: now + plan.endGap };
}

/**
 * Checks each outcome against the timeline, in order. Returns how many
 * bytes were read, or -1 once a line over the limit closed the connection.
 */
function check(plan: Arrivals, outcomes: Outcome[]): number {
  const { data, at, eofAt } = timeline(plan);
  const limit = plan.maxLineLength;
  let pos = 0;
  let isClosed = false;
  for (const { step, start, deadline, end, value } of outcomes) {
    const where = `${step.kind} from ${start} at byte ${pos}: ${
      value instanceof Error ? value.name : String(value)
    }`;
    if (isClosed) {
      assert.ok(
        value instanceof ConnectionClosedError,
        `after close: ${where}`,
      );
      continue;
    }
    // When this receive could first complete: its bytes, or the EOF.
    let ready: number;
    let isTooLong = false;
    if (step.kind === "recv") {
      ready = pos < data.length ? at[pos] : eofAt;
    } else if (step.kind === "recvExact") {
      if (step.n === 0) ready = start;
      else ready = pos + step.n <= data.length ? at[pos + step.n - 1] : eofAt;
    } else if (step.kind === "peekSkip") {
      const min = Math.max(1, step.n);
      ready = pos + min <= data.length ? at[pos + min - 1] : eofAt;
    } else {
      let lf = data.indexOf(LF, pos);
      if (step.kind === "recvLineCrlf") {
        // Only a CRLF ends it: a bare LF is part of the line.
        while (lf >= 0 && (lf === pos || data[lf - 1] !== CR)) {
          lf = data.indexOf(LF, lf + 1);
        }
      }
      const lineEnd = lf >= 0 ? lf : data.length;
      ready = lf >= 0 ? at[lf] : eofAt;
      // A CR ending the line (before its LF, or at the EOF) is no part of it.
      const contentEnd = lineEnd > pos && data[lineEnd - 1] === CR
        ? lineEnd - 1
        : lineEnd;
      isTooLong = contentEnd - pos > limit;
      // Past the limit with no LF in limit + 2 bytes, it need not wait.
      const over = pos + limit + 1;
      if (isTooLong && over < lineEnd && at[over] < ready) ready = at[over];
    }
    if (value instanceof TimeoutError || value instanceof Aborted) {
      assert.equal(end, deadline, `ended off its deadline: ${where}`);
      // Bytes arriving at the deadline itself may go either way.
      assert.ok(ready >= deadline, `ended with its bytes there: ${where}`);
      continue;
    }
    assert.equal(end, Math.max(start, ready), `completed late: ${where}`);
    assert.equal(
      value instanceof LineTooLongError,
      isTooLong && pos < data.length,
      `line over ${limit} bytes: ${where}`,
    );
    if (value instanceof LineTooLongError) {
      isClosed = true;
    } else if (value instanceof IncompleteReadError) {
      assert.equal(step.kind, "recvExact", where);
      assert.deepEqual(value.partial, data.subarray(pos), where);
      pos = data.length;
    } else if (value instanceof Error) {
      throw value;
    } else if (value === null) {
      assert.equal(pos, data.length, `EOF before the end: ${where}`);
    } else if (typeof value === "string") {
      const line = decoder.decode(data.subarray(pos, pos + value.length));
      assert.equal(value, line, where);
      pos += value.length;
      // Its terminator: LF, CRLF, or (at the EOF) a lone CR or nothing.
      if (data[pos] === CR) pos++;
      if (step.kind === "recvLineCrlf" && pos < data.length) {
        assert.equal(data[pos - 1], CR, `line ended by a bare LF: ${where}`);
      }
      if (pos < data.length) {
        assert.equal(data[pos], LF, `line cut short: ${where}`);
        pos++;
      }
    } else if (step.kind === "peekSkip") {
      // All it shows had arrived, in order; at least `min` unless the
      // stream ends first; and it skipped `min` of them.
      const min = Math.max(1, step.n);
      assert.ok(
        value.length >= Math.min(min, data.length - pos) && value.length > 0,
        where,
      );
      assert.deepEqual(value, data.subarray(pos, pos + value.length), where);
      assert.ok(at[pos + value.length - 1] <= end, `shown early: ${where}`);
      pos += Math.min(min, value.length);
    } else {
      if (step.kind === "recv") assert.ok(value.length > 0, where);
      else assert.equal(value.length, step.n, where);
      assert.deepEqual(value, data.subarray(pos, pos + value.length), where);
      pos += value.length;
    }
  }
  return isClosed ? -1 : pos;
}

function* sendAll(conn: Connection, arrivals: Arrivals) {
  try {
    for (const { gap, bytes } of arrivals.chunks) {
      yield* delay(gap);
      yield* conn.send(new Uint8Array(bytes));
    }
    yield* delay(arrivals.endGap);
    yield* conn.closeWrite();
  } catch (error) {
    // The receiver closed its end on a line over the limit.
    if (!(error instanceof ConnectionResetError)) throw error;
  }
}

/** What an abort signal of a step throws. */
class Aborted extends Error {}

/**
 * Starts a step: its options, when its limit is due (Infinity for none),
 * and the coroutine that aborts its signal, if it has one.
 */
function* begin(
  step: Step,
  clock: VirtualClock,
): Generator<Effect, [number, RecvOptions, Task<void> | null]> {
  const now = clock.now();
  // A step without a limit waits as long as it takes: the FIN always comes.
  const options: RecvOptions = { timeout: Infinity, borrow: step.borrow };
  const limit = step.limit;
  if (limit === null) return [Infinity, options, null];
  if ("timeout" in limit) {
    return [now + limit.timeout, { ...options, timeout: limit.timeout }, null];
  }
  if ("deadlineIn" in limit) {
    const deadline = now + limit.deadlineIn;
    return [deadline, { ...options, deadline }, null];
  }
  const controller = new AbortController();
  const aborter = yield* spawn((function* () {
    yield* delay(limit.abortIn);
    controller.abort(new Aborted());
  })());
  return [
    now + limit.abortIn,
    { ...options, signal: controller.signal },
    aborter,
  ];
}

/** What a step's error or result leaves to check (borrowed views copied). */
function outcomeOf(value: unknown): Outcome["value"] {
  if (value instanceof Uint8Array) return value.slice();
  if (value instanceof Error || typeof value === "string") return value;
  if (value === null) return null;
  throw new TypeError(`unexpected ${String(value)}`);
}

/** After the steps, receives to the end: nothing may be missing. */
const TO_THE_END: Step[] = Array(200).fill({
  kind: "recv",
  n: 0,
  limit: null,
  borrow: false,
});

// The two forms differ only in where `yield*` runs an operation: inside an
// `async function*` it waits in place, inside a `function*` it yields to
// the scheduler. Each form writes the operations out itself for that.

async function* receiveAsync(
  [a, b]: [Connection, Connection],
  arrivals: Arrivals,
  steps: Step[],
  clock: VirtualClock,
  outcomes: Outcome[],
) {
  const sender = yield* spawn(sendAll(a, arrivals));
  for (const step of [...steps, ...TO_THE_END]) {
    const start = clock.now();
    const [deadline, options, aborter] = yield* begin(step, clock);
    let value: unknown;
    try {
      if (step.kind === "peekSkip") {
        const min = Math.max(1, step.n);
        const view = yield* b.peek({ ...options, min });
        value = view?.slice() ?? null; // before skip() lets its bytes go
        if (view !== null) b.skip(Math.min(min, view.length));
      } else {
        value = step.kind === "recv"
          ? yield* b.recv(options)
          : step.kind === "recvExact"
          ? yield* b.recvExact(step.n, options)
          : yield* b.recvLine({
            ...options,
            crlfOnly: step.kind === "recvLineCrlf",
          });
      }
    } catch (error) {
      value = error;
    }
    aborter?.cancel();
    const end = clock.now();
    outcomes.push({ step, start, deadline, end, value: outcomeOf(value) });
  }
  yield* sender.join();
}

function* receiveSync(
  [a, b]: [Connection, Connection],
  arrivals: Arrivals,
  steps: Step[],
  clock: VirtualClock,
  outcomes: Outcome[],
) {
  const sender = yield* spawn(sendAll(a, arrivals));
  for (const step of [...steps, ...TO_THE_END]) {
    const start = clock.now();
    const [deadline, options, aborter] = yield* begin(step, clock);
    let value: unknown;
    try {
      if (step.kind === "peekSkip") {
        const min = Math.max(1, step.n);
        const view = yield* b.peek({ ...options, min });
        value = view?.slice() ?? null; // before skip() lets its bytes go
        if (view !== null) b.skip(Math.min(min, view.length));
      } else {
        value = step.kind === "recv"
          ? yield* b.recv(options)
          : step.kind === "recvExact"
          ? yield* b.recvExact(step.n, options)
          : yield* b.recvLine({
            ...options,
            crlfOnly: step.kind === "recvLineCrlf",
          });
      }
    } catch (error) {
      value = error;
    }
    aborter?.cancel();
    const end = clock.now();
    outcomes.push({ step, start, deadline, end, value: outcomeOf(value) });
  }
  yield* sender.join();
}

/**
 * Runs `body` as a server runs a handler, on `scheduler`: and at each of
 * `compactions` (ms apart), as a server's compactor does a few times a
 * second, moves its wait on a receive to the compact form if it has waited
 * since the last pass, and has its connection forget what it keeps for
 * reuse.
 */
async function runCompacted(
  scheduler: Scheduler,
  clock: VirtualClock,
  conn: Connection,
  body: Generator<unknown> | AsyncGenerator<unknown>,
  compactions: number[],
): Promise<void> {
  let settle!: (outcome: [boolean, unknown]) => void;
  const outcome = new Promise<[boolean, unknown]>((r) => settle = r);
  const co = scheduler._spawnSettled(body as Coroutine, conn, {
    onSettled: (isOk, result) => settle([isOk, result]),
  });
  const timers: unknown[] = [];
  let at = clock.now();
  for (const gap of compactions) {
    at += gap;
    timers.push(clock.setTimer(at, () => {
      if (scheduler._compact(co)) conn.compact();
      scheduler._nextEpoch();
    }));
  }
  const [isOk, result] = await outcome;
  for (const timer of timers) clock.clearTimer(timer);
  if (!isOk) throw result;
}

for (const receive of [receiveAsync, receiveSync]) {
  const form = receive === receiveAsync ? "async function*" : "function*";
  Deno.test(`receives with random timeouts over random arrivals lose no byte and time out exactly at their deadlines (${form}, 300 runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(
        arrivalsOf,
        stepsOf,
        fc.array(fc.integer({ min: 1, max: 25 }), { maxLength: 20 }),
        async (arrivals, steps, compactions) => {
          const clock = new VirtualClock();
          const pair = memoryConnPair({
            maxLineLength: arrivals.maxLineLength,
          });
          const outcomes: Outcome[] = [];
          try {
            await runCompacted(
              new Scheduler({ clock }),
              clock,
              pair[1],
              receive(pair, arrivals, steps, clock, outcomes),
              compactions,
            );
            const read = check(arrivals, outcomes);
            if (read >= 0) {
              assert.equal(
                read,
                timeline(arrivals).data.length,
                "bytes unread",
              );
            }
          } finally {
            pair[0].close();
            pair[1].close();
          }
        },
      ),
      runs(300),
    );
  });
}

// ---- sends

interface SendStep {
  /** ms to wait before this send. */
  gap: number;
  length: number;
  timeout: number | null;
}

/** Up to 4 coroutines sending at once, each a list of sends. */
const sendersOf = fc.array(
  fc.array(
    fc.record({
      gap: fc.nat({ max: 20 }),
      length: fc.integer({ min: 1, max: 20 }),
      timeout: fc.option(fc.integer({ min: 0, max: 40 }), { nil: null }),
    }),
    { maxLength: 6 },
  ),
  { minLength: 1, maxLength: 4 },
);

/** The pipe's capacity, and the peer's pauses before its receives. */
const readerOf = fc.record({
  capacity: fc.integer({ min: 1, max: 16 }),
  gaps: fc.array(fc.nat({ max: 15 }), { maxLength: 60 }),
});

interface SendOutcome {
  /** Its bytes are all this id: 1 for the first send called, and so on. */
  id: number;
  length: number;
  deadline: number;
  end: number;
  error: unknown;
  /** The connection was closed when the send returned or threw. */
  isClosedAfter: boolean;
}

interface SendRun {
  clock: VirtualClock;
  nextId: number;
  outcomes: SendOutcome[];
}

function* sendSync(conn: Connection, steps: SendStep[], state: SendRun) {
  for (const { gap, length, timeout } of steps) {
    yield* delay(gap);
    const id = state.nextId++;
    const start = state.clock.now();
    let error: unknown = null;
    try {
      const bytes = new Uint8Array(length).fill(id);
      yield* conn.send(bytes, timeout === null ? {} : { timeout });
    } catch (caught) {
      error = caught;
    }
    const deadline = timeout === null ? Infinity : start + timeout;
    const end = state.clock.now();
    const isClosedAfter = conn.isClosed;
    state.outcomes.push({ id, length, deadline, end, error, isClosedAfter });
  }
}

async function* sendAsync(conn: Connection, steps: SendStep[], state: SendRun) {
  for (const { gap, length, timeout } of steps) {
    yield* delay(gap);
    const id = state.nextId++;
    const start = state.clock.now();
    let error: unknown = null;
    try {
      const bytes = new Uint8Array(length).fill(id);
      yield* conn.send(bytes, timeout === null ? {} : { timeout });
    } catch (caught) {
      error = caught;
    }
    const deadline = timeout === null ? Infinity : start + timeout;
    const end = state.clock.now();
    const isClosedAfter = conn.isClosed;
    state.outcomes.push({ id, length, deadline, end, error, isClosedAfter });
  }
}

/** Receives to the end, pausing before each receive as `gaps` say. */
function* receiveAll(conn: Connection, gaps: number[]) {
  const got: number[] = [];
  for (let i = 0;; i++) {
    if (i < gaps.length) yield* delay(gaps[i]);
    const chunk = yield* conn.recv({ timeout: Infinity });
    if (chunk === null) return got;
    got.push(...chunk);
  }
}

/** The received bytes as runs of one id: [id, count][]. */
function runsOf(bytes: number[]): [number, number][] {
  const runs: [number, number][] = [];
  for (const byte of bytes) {
    const last = runs.at(-1);
    if (last !== undefined && last[0] === byte) last[1]++;
    else runs.push([byte, 1]);
  }
  return runs;
}

function checkSends(received: number[], outcomes: SendOutcome[]): void {
  const runs = runsOf(received);
  const byId = new Map(outcomes.map((outcome) => [outcome.id, outcome]));
  const runOf = new Map<number, number>();
  let lastId = 0;
  for (const [index, [id, count]] of runs.entries()) {
    const outcome = byId.get(id);
    assert.ok(outcome !== undefined, `bytes of no send: ${id}`);
    // In the order the sends were called, never two runs of one send (no
    // interleaving), and each whole unless its send ended the stream.
    assert.ok(id > lastId, `send ${id} written after send ${lastId}`);
    lastId = id;
    runOf.set(id, count);
    if (count !== outcome.length) {
      assert.ok(count < outcome.length, `send ${id} written twice`);
      assert.ok(outcome.error instanceof TimeoutError, `send ${id} cut short`);
      assert.equal(index, runs.length - 1, `bytes after a cut send ${id}`);
    }
  }
  const timeouts = outcomes.filter((o) => o.error instanceof TimeoutError);
  for (const { id, length, deadline, end, error, isClosedAfter } of outcomes) {
    const count = runOf.get(id) ?? 0;
    if (error === null) {
      assert.equal(count, length, `send ${id} succeeded, ${count} bytes came`);
      assert.ok(end <= deadline, `send ${id} succeeded past its deadline`);
    } else if (error instanceof TimeoutError) {
      assert.equal(end, deadline, `send ${id} timed out off its deadline`);
      // Bytes of it may have gone: then it closed the connection, and the
      // stream ends with them.
      if (count > 0) {
        assert.ok(isClosedAfter, `send ${id} timed out, left the conn open`);
        assert.equal(runs.at(-1)![0], id, `bytes after timed-out send ${id}`);
      }
    } else if (error instanceof ConnectionClosedError) {
      // Only a timed-out send that was writing closes the connection.
      assert.ok(
        timeouts.some((t) => t.isClosedAfter && t.end <= end),
        `send ${id} found the connection closed, and no send closed it`,
      );
      assert.equal(count, 0, `send ${id} failed, its bytes came`);
    } else {
      throw error;
    }
  }
}

for (const send of [sendAsync, sendSync]) {
  const form = send === sendAsync ? "async function*" : "function*";
  Deno.test(`sends from several coroutines with random timeouts against a slow reader arrive whole, in order, or end the stream (${form}, 300 runs)`, async () => {
    await fc.assert(
      fc.asyncProperty(sendersOf, readerOf, async (senders, reader) => {
        const clock = new VirtualClock();
        const [a, b] = memoryConnPair({ capacity: reader.capacity });
        const state: SendRun = { clock, nextId: 1, outcomes: [] };
        try {
          const received = await run(
            (function* () {
              const receiver = yield* spawn(receiveAll(b, reader.gaps));
              const tasks = [];
              for (const steps of senders) {
                tasks.push(yield* spawn(send(a, steps, state)));
              }
              for (const task of tasks) yield* task.join();
              if (!a.isClosed) yield* a.closeWrite();
              return yield* receiver.join();
            })(),
            { clock },
          );
          checkSends(received, state.outcomes);
        } finally {
          if (!a.isClosed) a.close();
          b.close();
        }
      }),
      runs(300),
    );
  });
}
