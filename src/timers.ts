/**
 * Time for the scheduler: the {@linkcode Clock} it reads and arms, and the
 * single deadline queue that holds every pending deadline.
 *
 * @module
 */

/**
 * The scheduler's source of time. It reads `now()` and keeps at most one
 * host timer armed, for its earliest deadline. {@linkcode systemClock} is
 * the real one; `VirtualClock` from `@corio/corio/testing` is the test one.
 *
 * @example A clock that counts how often it is read
 * ```ts
 * import { type Clock, systemClock } from "@corio/corio";
 *
 * let reads = 0;
 * const counting: Clock = {
 *   now: () => (reads++, systemClock.now()),
 *   setTimer: (at, callback) => systemClock.setTimer(at, callback),
 *   clearTimer: (handle) => systemClock.clearTimer(handle),
 * };
 * counting.now();
 * console.log(reads); // 1
 * ```
 */
export interface Clock {
  /** The current time in milliseconds (any epoch; only differences count). */
  now(): number;
  /**
   * Calls `callback` once, at or after the time `at`.
   * @returns A handle for {@linkcode Clock.clearTimer}.
   */
  setTimer(at: number, callback: () => void): unknown;
  /** Cancels a timer set with {@linkcode Clock.setTimer}. */
  clearTimer(handle: unknown): void;
  /**
   * Told by a scheduler when all its coroutines wait only on time; a virtual
   * clock may then jump ahead while `isIdle()` stays true. The system clock
   * has no such method.
   */
  poke?(isIdle: () => boolean): void;
}

// The largest delay setTimeout accepts (2^31 - 1 ms); longer ones fire at once.
const MAX_TIMER_DELAY = 2_147_483_647;

let cachedNow = -1;
function forgetNow() {
  cachedNow = -1;
}

/**
 * The real clock: `performance.now()`, read at most once per microtask
 * drain (a scheduler turn), and `setTimeout` for the one armed timer.
 *
 * @example
 * ```ts
 * import { systemClock } from "@corio/corio";
 *
 * const t0 = systemClock.now();
 * console.log(systemClock.now() >= t0); // true
 * ```
 */
export const systemClock: Clock = {
  now(): number {
    if (cachedNow < 0) {
      cachedNow = performance.now();
      queueMicrotask(forgetNow);
    }
    return cachedNow;
  },
  setTimer(at: number, callback: () => void): unknown {
    const delay = Math.min(
      Math.max(0, Math.ceil(at - performance.now())),
      MAX_TIMER_DELAY,
    );
    return setTimeout(callback, delay);
  },
  clearTimer(handle: unknown): void {
    clearTimeout(handle as ReturnType<typeof setTimeout>);
  },
};

/** An entry in a {@linkcode DeadlineQueue}: anything with these two fields. */
export interface DeadlineEntry {
  /** Absolute time on the scheduler's clock. */
  deadline: number;
  /** Position in the queue's heap, -1 when not queued. Owned by the queue. */
  heapIndex: number;
}

/**
 * A binary min-heap of entries by deadline. Entries carry their own index,
 * so removal and re-keying are O(log n) and allocate nothing: one scheduler
 * keeps every deadline here and arms one host timer for the earliest.
 */
export class DeadlineQueue<E extends DeadlineEntry> {
  #heap: E[] = [];

  /** How many entries are queued. */
  get size(): number {
    return this.#heap.length;
  }

  /** The entry with the earliest deadline, if any. */
  peek(): E | undefined {
    return this.#heap[0];
  }

  /** Queues `entry` at `deadline`, or moves it there if already queued. */
  set(entry: E, deadline: number): void {
    const heap = this.#heap;
    if (entry.heapIndex < 0) {
      entry.deadline = deadline;
      entry.heapIndex = heap.length;
      heap.push(entry);
      this.#up(entry.heapIndex);
    } else if (deadline < entry.deadline) {
      entry.deadline = deadline;
      this.#up(entry.heapIndex);
    } else {
      entry.deadline = deadline;
      this.#down(entry.heapIndex);
    }
  }

  /** Removes `entry` if queued. */
  delete(entry: E): void {
    const index = entry.heapIndex;
    if (index < 0) return;
    const heap = this.#heap;
    const last = heap.pop()!;
    entry.heapIndex = -1;
    if (last === entry) return;
    heap[index] = last;
    last.heapIndex = index;
    this.#down(index);
    this.#up(last.heapIndex);
  }

  /** Removes and returns the earliest entry if its deadline is `<= now`. */
  popExpired(now: number): E | undefined {
    const top = this.#heap[0];
    if (top === undefined || top.deadline > now) return undefined;
    this.delete(top);
    return top;
  }

  #up(index: number): void {
    const heap = this.#heap;
    const entry = heap[index];
    while (index > 0) {
      const parentIndex = (index - 1) >> 1;
      const parent = heap[parentIndex];
      if (parent.deadline <= entry.deadline) break;
      heap[index] = parent;
      parent.heapIndex = index;
      index = parentIndex;
    }
    heap[index] = entry;
    entry.heapIndex = index;
  }

  #down(index: number): void {
    const heap = this.#heap;
    const length = heap.length;
    const entry = heap[index];
    for (;;) {
      let child = 2 * index + 1;
      if (child >= length) break;
      if (
        child + 1 < length && heap[child + 1].deadline < heap[child].deadline
      ) child++;
      if (heap[child].deadline >= entry.deadline) break;
      heap[index] = heap[child];
      heap[index].heapIndex = index;
      index = child;
    }
    heap[index] = entry;
    entry.heapIndex = index;
  }
}
