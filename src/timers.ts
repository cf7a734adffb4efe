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

/**
 * The real clock: `performance.now()`, and `setTimeout` for the one armed
 * timer. Read afresh each time: a relative timeout counts from the moment
 * its operation waits, however long the turn has run (read once per
 * microtask drain, as it once was, a `delay(10)` after 5 ms of work in
 * the same turn ended after 5 ms). A read costs about 700 instructions
 * (`deno task instructions`, echo with a recv timeout at 1000
 * connections: 6,824 per message, against 6,122 when one read served a
 * drain's waits; at one connection 7,058 against 7,142).
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
    return performance.now();
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

/**
 * An entry in a {@linkcode DeadlineQueue}: anything with this field. Its
 * deadline lives in the queue alone.
 */
export interface DeadlineEntry {
  /** Position in the queue's heap, -1 when not queued. Owned by the queue. */
  heapIndex: number;
}

/**
 * A 4-ary min-heap of entries by deadline. Entries carry their own index,
 * so removal and re-keying are O(log n) and allocate nothing: one scheduler
 * keeps every deadline here and arms one host timer for the earliest.
 * Entries with equal deadlines come out in the order they were set (FIFO),
 * as Node's timers and Trio's deadlines do: each slot also keeps the order
 * its entry was set in.
 *
 * The deadlines are also kept in a `Float64Array` beside the entries, so a
 * sift compares numbers that sit together in memory instead of reading each
 * child's object, and four children per node halve the depth (B7: 10k
 * looping delays spent a fifth of their JS time sifting a binary heap of
 * objects).
 */
export class DeadlineQueue<E extends DeadlineEntry> {
  #entries: E[] = [];
  #keys = new Float64Array(64);
  // When each slot's entry was set: ties on a key go to the earlier. A
  // float counts exactly to 2^53, past any process's lifetime of sets.
  #order = new Float64Array(64);
  #setCount = 0;
  #size = 0;

  /** How many entries are queued. */
  get size(): number {
    return this.#size;
  }

  /** The deadline `entry` is queued at, or `Infinity` when it is not. */
  keyOf(entry: E): number {
    const index = entry.heapIndex;
    return index < 0 ? Infinity : this.#keys[index];
  }

  /** The earliest deadline queued, or `Infinity` when none is. */
  peekDeadline(): number {
    return this.#size > 0 ? this.#keys[0] : Infinity;
  }

  /** The entry with the earliest deadline, or `undefined` when none is. */
  peek(): E | undefined {
    return this.#size > 0 ? this.#entries[0] : undefined;
  }

  /**
   * A place in the order of ties, later than every one taken before: for
   * an entry queued later at a deadline it takes now (see `set`).
   */
  takeOrder(): number {
    return this.#setCount++;
  }

  /**
   * Queues `entry` at `deadline`, or moves it there if already queued.
   * Among equal deadlines it goes behind those set before it, or at
   * `order` (from `takeOrder`): where its wait began.
   */
  set(entry: E, deadline: number, order: number = this.#setCount++): void {
    const index = entry.heapIndex;
    if (index < 0) {
      const at = this.#size++;
      if (at === this.#keys.length) this.#grow();
      this.#up(entry, deadline, order, at);
    } else if (deadline < this.#keys[index]) {
      this.#up(entry, deadline, order, index);
    } else {
      this.#down(entry, deadline, order, index);
    }
  }

  /** Removes `entry` if queued. */
  delete(entry: E): void {
    const index = entry.heapIndex;
    if (index < 0) return;
    entry.heapIndex = -1;
    const lastIndex = --this.#size;
    const entries = this.#entries;
    const last = entries[lastIndex];
    entries[lastIndex] = undefined as unknown as E; // let it be collected
    const deadline = this.#keys[lastIndex];
    const order = this.#order[lastIndex];
    if (lastIndex <= this.#keys.length >> 2 && this.#keys.length > 64) {
      this.#shrink();
    }
    if (index === lastIndex) return;
    const parent = (index - 1) >> 2;
    if (
      index > 0 && (deadline < this.#keys[parent] ||
        deadline === this.#keys[parent] && order < this.#order[parent])
    ) {
      this.#up(last, deadline, order, index);
    } else {
      this.#down(last, deadline, order, index);
    }
  }

  /** Removes and returns the earliest entry if its deadline is `<= now`. */
  popExpired(now: number): E | undefined {
    if (this.#size === 0 || this.#keys[0] > now) return undefined;
    const top = this.#entries[0];
    this.delete(top);
    return top;
  }

  #grow(): void {
    const keys = new Float64Array(this.#keys.length * 2);
    keys.set(this.#keys);
    this.#keys = keys;
    const order = new Float64Array(keys.length);
    order.set(this.#order);
    this.#order = order;
  }

  /** Halves the arrays once a quarter is used: a burst leaves no big heap. */
  #shrink(): void {
    const length = this.#keys.length >> 1;
    this.#keys = this.#keys.slice(0, length);
    this.#order = this.#order.slice(0, length);
    if (this.#entries.length > length) this.#entries.length = length;
  }

  /** Places `entry` (key `deadline`, set `order`) at `index` or above. */
  #up(entry: E, deadline: number, order: number, index: number): void {
    const entries = this.#entries;
    const keys = this.#keys;
    const orders = this.#order;
    while (index > 0) {
      const parentIndex = (index - 1) >> 2;
      const parentKey = keys[parentIndex];
      if (
        parentKey < deadline ||
        parentKey === deadline && orders[parentIndex] < order
      ) break;
      const parent = entries[parentIndex];
      entries[index] = parent;
      keys[index] = parentKey;
      orders[index] = orders[parentIndex];
      parent.heapIndex = index;
      index = parentIndex;
    }
    entries[index] = entry;
    keys[index] = deadline;
    orders[index] = order;
    entry.heapIndex = index;
  }

  /** Places `entry` (key `deadline`, set `order`) at `index` or below. */
  #down(entry: E, deadline: number, order: number, index: number): void {
    const entries = this.#entries;
    const keys = this.#keys;
    const orders = this.#order;
    const size = this.#size;
    for (;;) {
      const first = 4 * index + 1;
      if (first >= size) break;
      let child = first;
      let childKey = keys[first];
      const end = first + 4 < size ? first + 4 : size;
      for (let i = first + 1; i < end; i++) {
        const key = keys[i];
        if (key < childKey || key === childKey && orders[i] < orders[child]) {
          child = i;
          childKey = key;
        }
      }
      if (
        childKey > deadline || childKey === deadline && orders[child] > order
      ) break;
      const moved = entries[child];
      entries[index] = moved;
      keys[index] = childKey;
      orders[index] = orders[child];
      moved.heapIndex = index;
      index = child;
    }
    entries[index] = entry;
    keys[index] = deadline;
    orders[index] = order;
    entry.heapIndex = index;
  }
}

/**
 * A {@linkcode DeadlineQueue} with the one host timer it needs: armed for
 * the earliest deadline only, and, when it fires, re-armed once after the
 * whole batch of expired entries is handled (their handlers mostly queue
 * new deadlines at once, and a `setTimeout` and `clearTimeout` pair costs
 * about 4 µs).
 */
export class Alarm<E extends DeadlineEntry> {
  readonly #queue = new DeadlineQueue<E>();
  readonly #clock: Clock;
  readonly #onExpired: (entry: E, now: number) => void;
  #handle: unknown = undefined;
  /** When the host timer fires; -Infinity while a batch is handled. */
  #armedAt = Infinity;

  /**
   * @param clock Read and armed.
   * @param onExpired Called with each entry whose deadline has passed
   * (and the time it was found so), after it is removed from the queue. It
   * may queue the entry again, at a later deadline.
   */
  constructor(clock: Clock, onExpired: (entry: E, now: number) => void) {
    this.#clock = clock;
    this.#onExpired = onExpired;
  }

  /** Queues `entry` at `deadline` (or moves it there), at `order` if given. */
  set(entry: E, deadline: number, order?: number): void {
    this.#queue.set(entry, deadline, order);
    if (deadline < this.#armedAt) this.#arm(deadline);
  }

  /** See {@linkcode DeadlineQueue.takeOrder}. */
  takeOrder(): number {
    return this.#queue.takeOrder();
  }

  /** The deadline `entry` is queued at, or `Infinity` when it is not. */
  keyOf(entry: E): number {
    return this.#queue.keyOf(entry);
  }

  /**
   * Removes `entry` if queued. The host timer stays, and finds nothing
   * (clearing and setting one costs ~4 µs), except on a clock that can
   * jump (`poke`): it jumps to the timer it holds, so the timer moves to
   * the earliest deadline left.
   */
  delete(entry: E): void {
    this.#queue.delete(entry);
    if (this.#clock.poke !== undefined) this.#rearm();
  }

  /**
   * Moves or drops entries whose deadline is no longer the one queued
   * (`deadlineOf` gives the live one, `Infinity` for none; `orderOf` its
   * place among ties), earliest first,
   * until the earliest is live; then arms the host timer for it. For a
   * clock that jumps to the timer it holds: an entry left queued on
   * purpose must not make time move when nothing waits on it.
   */
  tidy(
    deadlineOf: (entry: E) => number,
    orderOf: (entry: E) => number,
  ): void {
    const queue = this.#queue;
    for (let entry; (entry = queue.peek()) !== undefined;) {
      const deadline = deadlineOf(entry);
      if (deadline === queue.peekDeadline()) break;
      if (deadline === Infinity) queue.delete(entry);
      else queue.set(entry, deadline, orderOf(entry));
    }
    this.#rearm();
  }

  /** Clears the host timer (nothing is left to time). */
  stop(): void {
    if (this.#handle !== undefined) this.#clock.clearTimer(this.#handle);
    this.#handle = undefined;
    this.#armedAt = Infinity;
  }

  /** Arms the host timer for the earliest deadline, unless in a batch. */
  #rearm(): void {
    if (this.#armedAt === -Infinity) return; // #fire arms after its batch
    const next = this.#queue.peekDeadline();
    if (next === this.#armedAt) return;
    if (next === Infinity) this.stop();
    else this.#arm(next);
  }

  #arm(at: number): void {
    if (this.#handle !== undefined) this.#clock.clearTimer(this.#handle);
    this.#armedAt = at;
    this.#handle = this.#clock.setTimer(at, this.#fire);
  }

  #fire = (): void => {
    this.#handle = undefined;
    this.#armedAt = -Infinity;
    const now = this.#clock.now();
    for (let entry; (entry = this.#queue.popExpired(now));) {
      this.#onExpired(entry, now);
    }
    // (stop() in the batch leaves Infinity.) Arm once, for what is left.
    if (this.#armedAt === -Infinity) this.#armedAt = Infinity;
    const next = this.#queue.peekDeadline();
    if (next < this.#armedAt) this.#arm(next);
  };
}
