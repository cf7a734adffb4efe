/**
 * A virtual clock for deterministic tests of coroutines.
 *
 * @module
 */

import type { Clock } from "../timers.ts";
import { clearImmediate, setImmediate } from "node:timers";

/**
 * Options for {@linkcode VirtualClock}.
 *
 * @example A clock that starts at 1000 and moves only by advance()
 * ```ts
 * import { delay, run } from "@corio/corio";
 * import { VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock({ start: 1000, autojump: false });
 * const done = run((function* () { yield* delay(500); })(), { clock });
 * await clock.whenIdle(); // it has begun to wait
 * clock.advance(500);
 * await done;
 * console.log(clock.now()); // 1500
 * ```
 */
export interface VirtualClockOptions {
  /**
   * The starting time, in ms.
   * @default {0}
   */
  start?: number;
  /**
   * Jump to the next deadline whenever every scheduler using the clock has
   * nothing to do but wait on time (Trio's autojump). Off: only
   * {@linkcode VirtualClock.advance} moves time (a timer armed for the
   * time already reached still fires, a macrotask later).
   * @default {true}
   */
  autojump?: boolean;
}

interface VirtualTimer {
  at: number;
  seq: number;
  callback: () => void;
}

/**
 * Time that moves only when the test says so, or — with `autojump`, the
 * default — when every coroutine waits only on time: then it jumps straight
 * to the next deadline. A 3 s receive timeout is tested exactly, and at once.
 *
 * "Waits only on time" counts delays, deadlines, memory connections,
 * inboxes and joins as internal; a real socket or `wait(promise)` holds the
 * clock still until it completes. A timer armed for a time already reached
 * fires a macrotask later all the same, with or without `autojump`, as a
 * system timer would: time does not move for it.
 *
 * @example A 3 s timeout, tested in microseconds
 * ```ts
 * import { run, TimeoutError } from "@corio/corio";
 * import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock();
 * const [conn, peer] = memoryConnPair();
 * const at = await run((function* () {
 *   try {
 *     yield* conn.recv({ timeout: 3000 });
 *   } catch (error) {
 *     if (error instanceof TimeoutError) return clock.now();
 *     throw error;
 *   }
 * })(), { clock });
 * conn.close();
 * peer.close();
 * console.log(at); // 3000
 * ```
 */
export class VirtualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, VirtualTimer>();
  #isAutojump: boolean;
  #idlers = new Set<() => boolean>();
  #check: ReturnType<typeof setImmediate> | undefined = undefined;
  /** Set while a timer armed for a time already reached waits to fire. */
  #due: ReturnType<typeof setImmediate> | undefined = undefined;

  /**
   * Creates a clock at `start` (0 by default).
   *
   * @param options Start time and autojump.
   */
  constructor(options: VirtualClockOptions = {}) {
    this.#now = options.start ?? 0;
    this.#isAutojump = options.autojump ?? true;
  }

  /** The virtual time, in ms. */
  now(): number {
    return this.#now;
  }

  /** How many timers are armed (one per waiting scheduler, at most). */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Arms a virtual timer. Timers due at the same time fire in the order
   * they were armed. A scheduler's deadlines share one timer, armed (again)
   * whenever its earliest deadline changes: a test's own timer armed after
   * that fires after the scheduler's deadlines at the same time. Clear what
   * a test arms and no longer needs: with autojump, time jumps to a timer
   * left armed once everything on the clock waits.
   * @param at When it fires.
   * @param callback What it calls.
   * @returns Its handle.
   */
  setTimer(at: number, callback: () => void): unknown {
    const seq = ++this.#seq;
    this.#timers.set(seq, { at, seq, callback });
    if (at <= this.#now && this.#due === undefined) {
      // As the check is: the two keep the order they were armed in.
      this.#due = setImmediate(this.#fireDue);
    } else if (this.#isAutojump && this.#check === undefined) {
      // Armed after every scheduler on the clock went idle (a server's
      // shutdown grace, armed once its accept loop has ended): no poke
      // will come to check for it.
      this.#check = setImmediate(this.#autojump);
    }
    return seq;
  }

  /**
   * Disarms a virtual timer.
   *
   * @param handle A handle from {@linkcode VirtualClock.setTimer}.
   */
  clearTimer(handle: unknown): void {
    this.#timers.delete(handle as number);
    if (this.#timers.size === 0) this.#cancelCheck();
  }

  /**
   * Called by a scheduler that waits only on time: with autojump on, time
   * jumps to the next deadline while every such scheduler stays idle.
   *
   * @param isIdle The scheduler's "nothing but time to wait on" test.
   */
  poke(isIdle: () => boolean): void {
    this.#idlers.add(isIdle);
    if (
      this.#isAutojump && this.#timers.size > 0 && this.#check === undefined
    ) {
      // A macrotask later, every promise reaction of this turn has run.
      this.#check = setImmediate(this.#autojump);
    }
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due, in
   * order, each at its own time.
   * @param ms How far.
   */
  advance(ms: number): void {
    if (!(ms >= 0)) {
      throw new RangeError(`Cannot advance: ms must be >= 0, got ${ms}`);
    }
    this.#advanceTo(this.#now + ms);
  }

  /** Fires what falls due up to `target`; returns how many fired. */
  #advanceTo(target: number): number {
    let fired = 0;
    for (;;) {
      const next = this.#earliest();
      if (next === undefined || next.at > target) break;
      this.#timers.delete(next.seq);
      if (next.at > this.#now) this.#now = next.at;
      next.callback();
      fired++;
    }
    if (target > this.#now) this.#now = target;
    // A scheduler poked while the last timers fired: no check is needed now.
    if (this.#timers.size === 0) this.#cancelCheck();
    return fired;
  }

  #earliest(): VirtualTimer | undefined {
    let best: VirtualTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (
        best === undefined || timer.at < best.at ||
        (timer.at === best.at && timer.seq < best.seq)
      ) best = timer;
    }
    return best;
  }

  /**
   * Resolves once every scheduler using this clock has nothing to do but
   * wait on time: the moment autojump would jump (Trio's
   * `wait_all_tasks_blocked`). With `autojump` off, a test awaits it before
   * {@linkcode VirtualClock.advance}, so that each coroutine has begun its
   * next wait. It checks once per macrotask; a coroutine waiting on a real
   * socket or promise keeps it pending.
   *
   * @returns A promise that resolves when the clock's schedulers are idle.
   *
   * @example Step a coroutine's timers by hand
   * ```ts
   * import { delay, run } from "@corio/corio";
   * import { VirtualClock } from "@corio/corio/testing";
   *
   * const clock = new VirtualClock({ autojump: false });
   * const ticks: number[] = [];
   * const done = run((function* () {
   *   for (let i = 0; i < 3; i++) {
   *     yield* delay(0); // a turn of the event loop
   *     yield* delay(100);
   *     ticks.push(clock.now());
   *   }
   * })(), { clock });
   * for (let i = 0; i < 3; i++) {
   *   await clock.whenIdle();
   *   clock.advance(100);
   * }
   * await done;
   * console.log(ticks); // [ 100, 200, 300 ]
   * ```
   */
  async whenIdle(): Promise<void> {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      let isIdle = true;
      for (const idle of this.#idlers) if (!idle()) isIdle = false;
      if (isIdle) return;
    }
  }

  #fireDue = (): void => {
    this.#due = undefined;
    this.#advanceTo(this.#now);
  };

  #autojump = (): void => {
    this.#check = undefined;
    // What is due fires whether or not every scheduler is idle: time
    // stays where it is for it. What it woke acts in the reactions to come
    // (a test awaiting a timer due now), so the jump is for the next turn.
    if (this.#advanceTo(this.#now) > 0) {
      if (this.#timers.size > 0 && this.#check === undefined) {
        this.#check = setImmediate(this.#autojump);
      }
      return;
    }
    for (const isIdle of this.#idlers) if (!isIdle()) return;
    const next = this.#earliest();
    if (next === undefined) return;
    this.#advanceTo(next.at);
    if (this.#timers.size > 0 && this.#check === undefined) {
      this.#check = setImmediate(this.#autojump);
    }
  };

  #cancelCheck(): void {
    if (this.#check !== undefined) clearImmediate(this.#check);
    this.#check = undefined;
    if (this.#due !== undefined) clearImmediate(this.#due);
    this.#due = undefined;
  }
}
