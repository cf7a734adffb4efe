/**
 * B6: corio's deadline queue against Deno's own timers, with 100k
 * deadlines pending: arm+cancel, fire, bytes per entry.
 * B7: 10k coroutines looping `delay(1..100 ms)` against 10k async loops
 * awaiting `new Promise((r) => setTimeout(r, ms))`: fires/s and CPU.
 *
 *     deno bench --v8-flags=--expose-gc bench/timers_bench.ts
 *     deno run --v8-flags=--expose-gc bench/timers_bench.ts --report   # B6 JSON
 *     deno run bench/timers_bench.ts --b7 corio 3   # one B7 run (corio, setTimeout, floor)
 *     deno run bench/timers_bench.ts --manual corio 100000   # B7 on a hand-moved clock
 *
 * @module
 */

import process from "node:process";
import { delay, Scheduler } from "@corio/corio";
import { VirtualClock } from "@corio/corio/testing";
import { type DeadlineEntry, DeadlineQueue } from "../src/timers.ts";
import { generatorNext } from "../src/_coroutine.ts";

const PENDING_ENTRIES = 100_000;

class Entry implements DeadlineEntry {
  heapIndex = -1;
}

/** A queue holding 100k random deadlines, and 1000 spare entries. */
function filledQueue() {
  const queue = new DeadlineQueue<Entry>();
  for (let i = 0; i < PENDING_ENTRIES; i++) {
    queue.set(new Entry(), 1e6 + Math.random() * 1e6);
  }
  const spares = Array.from({ length: 1000 }, () => new Entry());
  return { queue, spares };
}

type Timer = ReturnType<typeof setTimeout>;

function pendingTimers(): Timer[] {
  const timers: Timer[] = [];
  for (let i = 0; i < PENDING_ENTRIES; i++) {
    timers.push(setTimeout(noop, 1e6 + Math.random() * 1e6));
  }
  return timers;
}
function noop() {}

// ---- B6 as deno bench cases (1000 pairs per iteration)

// Filled on first use: `deno run` of this file (the runner's B6/B7 reports)
// must not carry 100k entries it does not measure.
let b6: ReturnType<typeof filledQueue> | null = null;
Deno.bench("DeadlineQueue arm+cancel ×1000, 100k pending", {
  group: "B6 arm+cancel",
  baseline: true,
}, () => {
  const { queue, spares } = b6 ??= filledQueue();
  for (const entry of spares) {
    queue.set(entry, 1e6 + Math.random() * 1e6);
    queue.delete(entry);
  }
});

let b6Timers: Timer[] | null = null;
Deno.bench("setTimeout+clearTimeout ×1000, 100k pending", {
  group: "B6 arm+cancel",
}, () => {
  b6Timers ??= pendingTimers();
  for (let i = 0; i < 1000; i++) {
    clearTimeout(setTimeout(noop, 1e6 + Math.random() * 1e6));
  }
});

Deno.bench("DeadlineQueue fire ×1000 of 100k", {
  group: "B6 fire",
  baseline: true,
}, (b) => {
  const { queue, spares } = filledQueue();
  for (const entry of spares) queue.set(entry, Math.random());
  b.start();
  let fired = 0;
  while (queue.popExpired(1)) fired++;
  b.end();
  if (fired !== 1000) throw new Error(`fired ${fired}`);
});

// ---- measurements for the runner's tables

/** JS heap plus off-heap bytes (the queue keeps its keys in a typed array). */
function heapUsed(): number {
  (globalThis as { gc?: () => void }).gc?.();
  const usage = Deno.memoryUsage();
  return usage.heapUsed + usage.external;
}

function nsPer(count: number, body: () => void): number {
  body(); // warm up
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    const t0 = performance.now();
    body();
    best = Math.min(best, performance.now() - t0);
  }
  return best * 1e6 / count;
}

/** B6: ns per arm+cancel pair and per fire, bytes per pending entry. */
export async function reportB6(): Promise<Record<string, number>> {
  const pairs = 100_000;
  const h0 = heapUsed();
  const { queue, spares } = filledQueue();
  const queueBytes = (heapUsed() - h0) / PENDING_ENTRIES;
  const queueArmCancel = nsPer(pairs, () => {
    for (let i = 0; i < pairs; i++) {
      const entry = spares[i % spares.length];
      queue.set(entry, 1e6 + Math.random() * 1e6);
      queue.delete(entry);
    }
  });
  // Firing: pop 100k expired entries (every deadline <= now).
  const fireQueue = new DeadlineQueue<Entry>();
  const queueFire = nsPer(PENDING_ENTRIES, () => {
    for (let i = 0; i < PENDING_ENTRIES; i++) {
      fireQueue.set(new Entry(), Math.random() * 100);
    }
    while (fireQueue.popExpired(100));
  });

  const t0 = heapUsed();
  const rss0 = Deno.memoryUsage().rss;
  const timers = pendingTimers();
  const timerBytes = (heapUsed() - t0) / PENDING_ENTRIES;
  const timerRss = (Deno.memoryUsage().rss - rss0) / PENDING_ENTRIES;
  const timerArmCancel = nsPer(pairs, () => {
    for (let i = 0; i < pairs; i++) {
      clearTimeout(setTimeout(noop, 1e6 + Math.random() * 1e6));
    }
  });
  for (const timer of timers) clearTimeout(timer);
  // Firing: 100k timers due at once, time from the first to the last.
  const timerFire = await new Promise<number>((resolve) => {
    let left = PENDING_ENTRIES;
    let first = 0;
    const onFire = () => {
      if (first === 0) first = performance.now();
      if (--left === 0) {
        resolve((performance.now() - first) * 1e6 / PENDING_ENTRIES);
      }
    };
    for (let i = 0; i < PENDING_ENTRIES; i++) setTimeout(onFire, 5);
  });
  return {
    queueArmCancelNs: queueArmCancel,
    timerArmCancelNs: timerArmCancel,
    queueArmAndFireNs: queueFire,
    timerFireNs: timerFire,
    queueBytesPerEntry: queueBytes,
    timerHeapBytesPerEntry: timerBytes,
    timerRssBytesPerEntry: timerRss,
  };
}

const LOOPS = 10_000;

/**
 * The floor steps its generators as corio does, with the generator
 * prototype's own `next` (see `generatorNext` in `src/_coroutine.ts`).
 */
const floorNext = generatorNext as unknown as (
  this: Generator<number, void>,
) => IteratorResult<number, void>;
const msFor = (i: number, k: number) => 1 + (i * 37 + k * 11) % 100;

/** B7: 10k coroutines looping delay(1..100 ms) for `seconds`. */
export async function corioDelays(seconds: number) {
  const scheduler = new Scheduler();
  const stop = performance.now() + seconds * 1000;
  let fires = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const tasks = Array.from(
    { length: LOOPS },
    (_, i) =>
      scheduler.spawn((function* () {
        let k = 0;
        do {
          yield* delay(msFor(i, k++));
          fires++;
        } while (performance.now() < stop);
      })()).finished,
  );
  await Promise.all(tasks);
  return result(fires, t0, cpu0);
}

/**
 * B7 floor, not a corio form: 10k generators that yield their delay as a
 * number, the same deadline queue, one setTimeout for the earliest. No
 * operations, options, signals or cancellation: what a coroutine scheduler
 * on this heap costs before any library around it.
 */
export function floorDelays(seconds: number) {
  class Loop implements DeadlineEntry {
    heapIndex = -1;
    constructor(readonly gen: Generator<number, void>) {}
  }
  return new Promise<ReturnType<typeof result>>((resolve) => {
    const queue = new DeadlineQueue<Loop>();
    const stop = performance.now() + seconds * 1000;
    let fires = 0;
    let live = LOOPS;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timerAt = Infinity;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const arm = (at: number) => {
      if (timer !== undefined) clearTimeout(timer);
      timerAt = at;
      timer = setTimeout(
        onTimer,
        Math.max(0, Math.ceil(at - performance.now())),
      );
    };
    const park = (loop: Loop, r: IteratorResult<number, void>, now: number) => {
      if (r.done) {
        if (--live === 0) resolve(result(fires, t0, cpu0));
        return;
      }
      queue.set(loop, now + r.value);
      if (now + r.value < timerAt) arm(now + r.value);
    };
    const onTimer = () => {
      timer = undefined;
      timerAt = Infinity;
      const now = performance.now();
      for (let loop; (loop = queue.popExpired(now));) {
        park(loop, floorNext.call(loop.gen), now);
      }
      const next = queue.peekDeadline();
      if (next !== Infinity) arm(next);
    };
    const now = performance.now();
    for (let i = 0; i < LOOPS; i++) {
      const loop = new Loop((function* () {
        let k = 0;
        do {
          yield msFor(i, k++);
          fires++;
        } while (performance.now() < stop);
      })());
      park(loop, floorNext.call(loop.gen), now);
    }
  });
}

/**
 * B7's loops on a hand-moved clock until `fires` delays have ended: corio's
 * scheduler, or the floor's bare generators on the same deadline queue. No
 * host timer and no idle time, so what remains is the scheduler's own work
 * per fire (`instructions.ts` counts it). The loops are left parked: run it
 * in a process of its own.
 */
export async function manualDelays(
  form: "corio" | "floor",
  fires: number,
): Promise<void> {
  let fired = 0;
  if (form === "corio") {
    // Deadlines are whole ms from 0, so stepping 1 ms fires each on time.
    const clock = new VirtualClock({ autojump: false });
    const scheduler = new Scheduler({ clock });
    for (let i = 0; i < LOOPS; i++) {
      scheduler.spawn((function* () {
        for (let k = 0;;) {
          yield* delay(msFor(i, k++));
          fired++;
        }
      })());
    }
    await Promise.resolve(); // the loops start on a microtask
    while (fired < fires) clock.advance(1);
    return;
  }
  class Loop implements DeadlineEntry {
    heapIndex = -1;
    constructor(readonly gen: Generator<number, void>) {}
  }
  const queue = new DeadlineQueue<Loop>();
  for (let i = 0; i < LOOPS; i++) {
    const loop = new Loop((function* () {
      for (let k = 0;;) {
        yield msFor(i, k++);
        fired++;
      }
    })());
    queue.set(loop, floorNext.call(loop.gen).value!);
  }
  while (fired < fires) {
    const now = queue.peekDeadline();
    for (let loop; (loop = queue.popExpired(now));) {
      queue.set(loop, now + floorNext.call(loop.gen).value!);
    }
  }
}

/** B7 baseline: 10k async loops awaiting a setTimeout promise. */
export async function setTimeoutDelays(seconds: number) {
  const stop = performance.now() + seconds * 1000;
  let fires = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const loops = Array.from({ length: LOOPS }, async (_, i) => {
    let k = 0;
    do {
      await new Promise((r) => setTimeout(r, msFor(i, k++)));
      fires++;
    } while (performance.now() < stop);
  });
  await Promise.all(loops);
  return result(fires, t0, cpu0);
}

function result(fires: number, t0: number, cpu0: NodeJS.CpuUsage) {
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  // Mean delay 50.5 ms: the most fires/s that exact timers could give.
  return {
    firesPerSec: fires / elapsed,
    idealFiresPerSec: LOOPS / 0.0505,
    cpuPerSec: cpuSeconds / elapsed,
    cpuUsPerFire: cpuSeconds / fires * 1e6,
  };
}

Deno.bench("corio: 10k coroutines × one delay(1..100 ms)", {
  group: "B7",
  baseline: true,
  n: 5,
  warmup: 1,
}, async () => {
  await corioDelays(0);
});
Deno.bench("setTimeout: 10k async loops × one setTimeout promise", {
  group: "B7",
  n: 5,
  warmup: 1,
}, async () => {
  await setTimeoutDelays(0);
});

const B7_FORMS = {
  corio: corioDelays,
  setTimeout: setTimeoutDelays,
  floor: floorDelays,
};

// `--report`: B6 as JSON. `--b7 FORM SECONDS`: one B7 run of one form as
// JSON; the runner starts a process per run, so no form inherits another's
// heap, and alternates them over its rounds.
if (import.meta.main && Deno.args.includes("--report")) {
  console.log(JSON.stringify({ b6: await reportB6() }));
}
if (import.meta.main && Deno.args.includes("--manual")) {
  const [form, fires] = Deno.args.slice(Deno.args.indexOf("--manual") + 1);
  if (form !== "corio" && form !== "floor") {
    throw new TypeError(`unknown manual form ${form}`);
  }
  await manualDelays(form, Number(fires));
}
if (import.meta.main && Deno.args.includes("--b7")) {
  const [form, seconds] = Deno.args.slice(Deno.args.indexOf("--b7") + 1);
  const run = B7_FORMS[form as keyof typeof B7_FORMS];
  if (!run) throw new TypeError(`unknown B7 form ${form}`);
  console.log(JSON.stringify(await run(Number(seconds) || 3)));
}
