// Options of the Scheduler and of its spawn(). Internal file: the types are
// exported from scheduler.ts and mod.ts.

import type { Resource } from "./_coroutine.ts";
import type { Clock } from "./timers.ts";

/**
 * Options for {@linkcode Scheduler}.
 *
 * @example A virtual clock, and a sink for errors nobody awaits
 * ```ts
 * import { delay, Scheduler, type SchedulerOptions } from "@corio/corio";
 * import { VirtualClock } from "@corio/corio/testing";
 *
 * const errors: unknown[] = [];
 * const options: SchedulerOptions = {
 *   clock: new VirtualClock(),
 *   onError: (error) => errors.push(error),
 * };
 * const scheduler = new Scheduler(options);
 * scheduler.spawn((function* () { throw new Error("nobody awaits this task"); })());
 * await scheduler.spawn((function* () { yield* delay(1000); })()).finished;
 * console.log(errors.length, scheduler.now()); // 1 1000
 * ```
 */
export interface SchedulerOptions {
  /**
   * The clock for deadlines and delays.
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Receives errors nobody else will see: a top-level task that failed with
   * no one awaiting `finished`, and a child's error that no join delivered
   * when its parent was cancelled. (A parent that fails fails with one
   * error: its own, or its first child's.) If it throws, that is logged
   * with `console.error` and the scheduler goes on.
   * @default {console.error}
   */
  onError?: (error: unknown) => void;
}

/**
 * Options for {@linkcode spawn} and {@linkcode Scheduler.spawn}.
 *
 * @example A coroutine that owns its connection
 * ```ts
 * import { Scheduler, type SpawnOptions } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair();
 * const options: SpawnOptions = { owns: [conn] }; // closed when the coroutine ends
 * await new Scheduler().spawn((function* () { yield* conn.send("bye"); })(), options).finished;
 * peer.close();
 * console.log(conn.isClosed); // true
 * ```
 */
export interface SpawnOptions {
  /** Resources the new coroutine owns: closed when it ends. */
  owns?: Resource[];
}
