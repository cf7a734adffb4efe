/**
 * B5: what one operation costs without I/O, in ns and in microtask turns,
 * for `async function*` (typed `yield*` and untyped plain `yield`) and
 * `function*` coroutines.
 *
 *     deno bench bench/ops_bench.ts           # ns per 1000 operations
 *     deno run bench/ops_bench.ts --report    # ns and turns per operation, JSON
 *
 * The operations are stand-ins built on corio's own `Op` base class:
 * `immediate` goes through the scheduler and back (a yield, a dispatch, a
 * resume: the part every real operation pays), `parked` parks and is woken
 * one microtask later (like a socket read that has already completed), and
 * `ready` completes at its first poll without yielding (bytes buffered).
 *
 * Microtask turns are counted with a ticker that re-queues itself with
 * `queueMicrotask`: the number of ticks while N operations run, divided by
 * N, is how many trips round the microtask queue one operation takes.
 *
 * @module
 */

import { type Effect, run } from "@corio/corio";
import { Op, PENDING } from "../src/effects.ts";
import type { Coroutine } from "../src/scheduler.ts";

class ImmediateOp extends Op<number> {
  readonly op = "immediate";
  #isDone = false;
  constructor() {
    super(undefined);
    this.effect.immediate = true;
  }
  override perform(): void {
    this.#isDone = true;
  }
  poll(): number | typeof PENDING {
    return this.#isDone ? 1 : PENDING;
  }
  park(): boolean {
    return true;
  }
  unpark(): void {}
  timedOut(): number {
    throw new Error("unreachable");
  }
}

class ParkedOp extends Op<number> {
  readonly op = "parked";
  #isDone = false;
  poll(): number | typeof PENDING {
    return this.#isDone ? 1 : PENDING;
  }
  park(co: Coroutine): boolean {
    queueMicrotask(() => {
      this.#isDone = true;
      co.wake();
    });
    return false;
  }
  unpark(): void {}
  timedOut(): number {
    throw new Error("unreachable");
  }
}

class ReadyOp extends Op<number> {
  readonly op = "ready";
  poll(): number {
    return 1;
  }
  park(): boolean {
    return true;
  }
  unpark(): void {}
  timedOut(): number {
    throw new Error("unreachable");
  }
}

type Make = () => Op<number>;
const immediate: Make = () => new ImmediateOp();
const parked: Make = () => new ParkedOp(undefined);
const ready: Make = () => new ReadyOp(undefined);

async function* typedAsync(make: Make, n: number) {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += yield* make();
  return sum;
}

async function* untypedAsync(
  make: Make,
  n: number,
): AsyncGenerator<Effect, number, unknown> {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const op = make()[Symbol.iterator]();
    let r = op.next();
    while (!r.done) r = op.next(yield r.value);
    sum += r.value;
  }
  return sum;
}

function* typedSync(make: Make, n: number) {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += yield* make();
  return sum;
}

/** For scale: a plain async loop that awaits a resolved promise. */
async function plainAwait(n: number): Promise<number> {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += await Promise.resolve(1);
  return sum;
}

/** The cases, each running `n` operations. */
export const CASES: Record<string, (n: number) => Promise<unknown>> = {
  "async function*, yield* immediate op": (n) => run(typedAsync(immediate, n)),
  "async function*, plain yield immediate op (untyped)": (n) =>
    run(untypedAsync(immediate, n)),
  "function*, yield* immediate op": (n) => run(typedSync(immediate, n)),
  "async function*, yield* op parked and woken": (n) =>
    run(typedAsync(parked, n)),
  "function*, yield* op parked and woken": (n) => run(typedSync(parked, n)),
  "async function*, yield* op ready at once (no park)": (n) =>
    run(typedAsync(ready, n)),
  "function*, yield* op ready at once (no park)": (n) =>
    run(typedSync(ready, n)),
  "for scale: async function, await Promise.resolve()": plainAwait,
};

const PER_BENCH = 1000;
for (const [name, body] of Object.entries(CASES)) {
  Deno.bench(`${name} ×${PER_BENCH}`, { group: "B5" }, async () => {
    await body(PER_BENCH);
  });
}

/**
 * ns and microtask turns per operation for each case: the best of `rounds`
 * timed runs of `n` operations. The cases alternate within each round, as
 * the suite's servers do: this host's speed swings from one run to the
 * next (the `await Promise.resolve()` row alone has read 23 and 38 ns an
 * hour apart), and a slow spell then falls on every case alike instead of
 * on all the rounds of whichever case ran through it. A whole process can
 * also run slow (see B5 in `run.ts`, which runs one per round).
 */
export async function report(
  n = 100_000,
  rounds = 5,
): Promise<Record<string, number>[]> {
  const names = Object.keys(CASES);
  for (const name of names) await CASES[name](n); // warm up
  const best = new Map(names.map((name) => [name, Infinity]));
  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      const t0 = performance.now();
      await CASES[name](n);
      best.set(name, Math.min(best.get(name)!, performance.now() - t0));
    }
  }
  const rows: Record<string, number>[] = [];
  for (const name of names) {
    let ticks = 0;
    let isTicking = true;
    const tick = () => {
      ticks++;
      if (isTicking) queueMicrotask(tick);
    };
    queueMicrotask(tick);
    const counted = 10_000;
    await CASES[name](counted);
    isTicking = false;
    // run() itself takes a few turns to start and settle; n is large
    // enough that they vanish in the division.
    rows.push({
      name: name as unknown as number,
      nsPerOp: best.get(name)! * 1e6 / n,
      turnsPerOp: ticks / counted,
    });
  }
  return rows;
}

if (import.meta.main && Deno.args.includes("--report")) {
  console.log(JSON.stringify(await report()));
}
