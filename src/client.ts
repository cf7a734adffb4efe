/**
 * The client side: `run` a top-level coroutine (a client, a test).
 *
 * @module
 */

import type { Coroutine } from "./effects.ts";
import { CancelledError } from "./errors.ts";
import { Scheduler } from "./scheduler.ts";
import type { Clock } from "./timers.ts";

/** Options for {@linkcode run}. */
export interface RunOptions {
  /**
   * The clock: `VirtualClock` in tests.
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Aborting it cancels the coroutine (its `finally` blocks run); `run`
   * then rejects with the signal's reason.
   */
  signal?: AbortSignal;
  /**
   * Run on this scheduler instead of a new one (with its clock).
   */
  scheduler?: Scheduler;
}

/**
 * Runs a coroutine to completion on a scheduler and resolves with its
 * return value. What it owns (connections it opened, children it spawned)
 * is closed and cancelled before the promise settles, however it ends.
 *
 * @param coroutine A generator object: `client()`, not `client`.
 * @param options Clock, signal or scheduler.
 * @returns Its return value.
 * @throws What the coroutine threw; the signal's reason if aborted.
 *
 * @example
 * ```ts
 * import { delay, run } from "@corio/corio";
 *
 * const answer = await run((async function* () {
 *   yield* delay(1);
 *   return 42;
 * })());
 * console.log(answer); // 42
 * ```
 */
export function run<T>(
  coroutine: Coroutine<T>,
  options: RunOptions = {},
): Promise<T> {
  const { signal } = options;
  const scheduler = options.scheduler ?? new Scheduler({ clock: options.clock });
  if (signal?.aborted) {
    coroutine.return?.(undefined as T);
    return Promise.reject(signal.reason);
  }
  const task = scheduler.spawn(coroutine);
  if (signal === undefined) return task.finished;
  const onAbort = () => task.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  return task.finished.then(
    (value) => {
      signal.removeEventListener("abort", onAbort);
      return value;
    },
    (error) => {
      signal.removeEventListener("abort", onAbort);
      throw error instanceof CancelledError && signal.aborted
        ? signal.reason
        : error;
    },
  );
}
