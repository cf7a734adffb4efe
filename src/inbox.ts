/**
 * `Inbox`: a bounded FIFO of messages for one coroutine. Each conversation
 * of a `Conversations` table reads its messages from one; on its own it is
 * a channel between coroutines.
 *
 * @module
 */

import {
  Op,
  type Operation,
  type OperationOptions,
  PENDING,
} from "./effects.ts";
import { BusyError, InboxClosedError, TimeoutError } from "./errors.ts";
import type { Coroutine as CoroutineRecord } from "./scheduler.ts";

/**
 * Options for an {@linkcode Inbox}.
 *
 * @example A small inbox refuses what it cannot hold
 * ```ts
 * import { Inbox } from "@corio/corio";
 *
 * const inbox = new Inbox<string>({ capacity: 2, name: "call 42" });
 * console.log(inbox.push("a"), inbox.push("b"), inbox.push("c")); // true true false
 * ```
 */
export interface InboxOptions {
  /**
   * Messages the inbox holds before `push` refuses more and `send` waits.
   * @default {64}
   */
  capacity?: number;
  /**
   * A name for errors, e.g. the conversation's key.
   * @default {"inbox"}
   */
  name?: string;
}

const DEFAULTS = {
  capacity: 64,
} as const;

class RecvOp<M, R> extends Op<M | R> {
  get op(): string {
    return "recv";
  }
  constructor(
    readonly inbox: Inbox<M>,
    options: OperationOptions | undefined,
    readonly isOptional: boolean,
  ) {
    super(options);
    this.effect.external = inbox._isExternal;
  }
  poll(): M | typeof PENDING {
    const inbox = this.inbox;
    // One waiter slot: a second receiver would take the first one's wake.
    if (inbox._receiver !== null && inbox._receiver !== this) {
      throw new BusyError("recv", `from ${inbox.name}`, "inbox");
    }
    if (inbox.size === 0) {
      if (!inbox.isClosed) return PENDING;
      inbox._receiver = null;
      if (this.isOptional) return undefined as M;
      throw new InboxClosedError(`from ${inbox.name}`);
    }
    inbox._receiver = null;
    return inbox._take();
  }
  park(co: CoroutineRecord): boolean {
    if (this.inbox.size > 0 || this.inbox.isClosed) return true;
    this.inbox._waiter = co;
    this.inbox._receiver = this;
    return false;
  }
  unpark(): void {
    this.inbox._waiter = null;
    this.inbox._receiver = null;
  }
  override cancelled(): void {
    if (this.inbox._receiver === this) this.unpark();
  }
  timedOut(): M | R {
    if (this.isOptional) return undefined as R;
    throw new TimeoutError(
      "recv",
      this.effect.timeoutThatFired,
      `from ${this.inbox.name}`,
    );
  }
}

class SendOp<M> extends Op<void> {
  get op(): string {
    return "send";
  }
  /** The coroutine waiting for room, while it waits. */
  waiter: CoroutineRecord | null = null;
  constructor(
    readonly inbox: Inbox<M>,
    readonly message: M,
    options: OperationOptions | undefined,
  ) {
    super(options);
  }
  poll(): void | typeof PENDING {
    const inbox = this.inbox;
    if (inbox.isClosed) {
      inbox._leave(this);
      throw new InboxClosedError(`to ${inbox.name}`, "send");
    }
    if (!inbox._hasRoomFor(this)) return PENDING;
    inbox.push(this.message);
    inbox._leave(this);
  }
  park(co: CoroutineRecord): boolean {
    this.waiter = co;
    this.inbox._queue(this);
    return false;
  }
  unpark(): void {
    this.inbox._leave(this);
  }
  override cancelled(): void {
    this.inbox._leave(this);
  }
  timedOut(): void {
    // Also reached without `unpark()`: woken, then its deadline already
    // past as it parks again (a push took the place meanwhile).
    this.inbox._leave(this);
    throw new TimeoutError(
      "send",
      this.effect.timeoutThatFired,
      `to ${this.inbox.name}`,
    );
  }
}

/**
 * A bounded FIFO of messages for one coroutine. Messages come out in the
 * order they were pushed. `push` never blocks: when the inbox is full it
 * refuses the message (returns false), so a slow reader can never stall
 * whoever feeds it — for datagram protocols the sender's retransmission
 * recovers the dropped message. A producer that must not drop, and should
 * slow down to its consumer's pace instead, uses `send`: it waits for room.
 *
 * Waiting on an inbox is internal (a virtual clock may jump past it),
 * except on a `serveDatagram` conversation's inbox, which a socket feeds:
 * that waits as a socket does.
 *
 * @example A channel between two coroutines
 * ```ts
 * import { delay, Inbox, run, spawn } from "@corio/corio";
 *
 * const inbox = new Inbox<string>();
 * const got = await run((function* () {
 *   yield* spawn((function* () {
 *     yield* delay(1);
 *     inbox.push("hello");
 *   })());
 *   return yield* inbox.recv({ timeout: 1000 });
 * })());
 * console.log(got); // hello
 * ```
 */
export class Inbox<M> {
  /** What errors call it: the conversation's key. */
  readonly name: string;
  /** How many messages it holds at most. */
  readonly capacity: number;
  #items: (M | undefined)[] = [];
  #head = 0;
  #isClosed = false;
  /** @internal */ _waiter: CoroutineRecord | null = null;
  /** @internal The receive waiting, until it takes its message. */
  _receiver: RecvOp<M, unknown> | null = null;
  // Senders waiting for room, oldest first; made by the first that waits.
  #senders: SendOp<M>[] | null = null;
  /**
   * @internal Fed by the outside world (a socket): a receive waits on it as
   * on a socket, so a virtual clock does not jump past what is in flight.
   */
  _isExternal = false;

  /**
   * Creates an empty inbox.
   * @param options Capacity and name.
   */
  constructor(options: InboxOptions = {}) {
    const capacity = options.capacity ?? DEFAULTS.capacity;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(
        `Cannot create inbox: capacity must be an integer >= 1, got ${capacity}`,
      );
    }
    this.capacity = capacity;
    this.name = options.name ?? "inbox";
  }

  /** Messages waiting to be received. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** True once `close()` was called. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /**
   * Ends the stream of messages: `push` refuses from now on, while the
   * receiver still gets what is queued; then `recv()` throws
   * `InboxClosedError` and `poll()` gives `undefined`, at once. A receiver
   * waiting now is woken. Idempotent. How a producer says "no more" to a
   * consumer coroutine (a writer that flushes and stops). A conversation
   * that closes its own inbox gets no more messages: `dispatch` reports
   * those of its key as `"overflow"`. An inbox given to a coroutine with
   * `spawn(child, { owns: [inbox] })` is closed as the child ends.
   */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    const waiter = this._waiter;
    this._waiter = null;
    waiter?.wake();
    // Each finds the inbox closed, and leaves the queue as it throws.
    if (this.#senders !== null) {
      for (const sender of [...this.#senders]) sender.waiter?.wake();
    }
  }

  /**
   * Adds a message and wakes the receiver. Never blocks, and does not wait
   * its turn behind senders waiting in `send`: a free place goes to
   * whichever comes first.
   * @param message The message.
   * @returns False if the inbox is full or closed and the message was
   *   dropped.
   */
  push(message: M): boolean {
    if (this.#isClosed || this.size >= this.capacity) return false;
    this.#items.push(message);
    const waiter = this._waiter;
    this._waiter = null;
    waiter?.wake();
    return true;
  }

  /**
   * Waits for the next message.
   *
   * Deadline: `timeout`/`deadline`/`signal`. Errors: `TimeoutError` (op
   * `"recv"`); the signal's reason; `BusyError` while another coroutine
   * waits on this inbox; `InboxClosedError` once the inbox is closed and
   * empty (what was queued before `close()` is received first). State after
   * failure: intact — a message that arrives later is kept for the next
   * receive.
   *
   * @param options Deadline and signal.
   * @returns An operation giving the oldest message.
   */
  recv(options?: OperationOptions): Operation<M> {
    return new RecvOp<M, never>(this, options, false);
  }

  /**
   * Waits for the next message, or gives `undefined` at the deadline: the
   * readable form for retransmission loops (`poll({ timeout: 0 })` only
   * looks). Once the inbox is closed and empty it gives `undefined` at
   * once. Errors: the signal's reason; `BusyError` while another
   * coroutine waits on this inbox.
   *
   * @param options Deadline and signal.
   * @returns An operation giving the oldest message, or `undefined`.
   */
  poll(options?: OperationOptions): Operation<M | undefined> {
    return new RecvOp<M, undefined>(this, options, true);
  }

  /**
   * Adds a message, waiting for room while the inbox is full: a bounded
   * channel that slows its producer to the consumer's pace. Senders
   * waiting at once get room in the order they came. With room at hand it
   * adds the message at once, even given `timeout: 0`.
   *
   * Deadline: `timeout`/`deadline`/`signal`. Errors: `TimeoutError` (op
   * `"send"`) and the signal's reason, the message not added;
   * `InboxClosedError` (op `"send"`) when the inbox is closed, or closes
   * while the sender waits. A sender cancelled in the step that makes room
   * for it may still add its message in an `async function*` (see
   * `Task.cancel`).
   *
   * @example A producer held to its consumer's pace
   * ```ts
   * import { delay, Inbox, run, spawn } from "@corio/corio";
   * import { VirtualClock } from "@corio/corio/testing";
   *
   * const clock = new VirtualClock();
   * const inbox = new Inbox<number>({ capacity: 1 });
   * const sentAt = await run((function* () {
   *   yield* spawn((function* () {
   *     for (;;) {
   *       yield* delay(10); // a slow consumer
   *       yield* inbox.recv();
   *     }
   *   })());
   *   const sentAt: number[] = [];
   *   for (let i = 0; i < 3; i++) {
   *     yield* inbox.send(i);
   *     sentAt.push(clock.now());
   *   }
   *   return sentAt;
   * })(), { clock });
   * console.log(sentAt); // [0, 10, 20]
   * ```
   *
   * @param message The message.
   * @param options Deadline and signal.
   * @returns An operation that completes once the message is in the inbox.
   */
  send(message: M, options?: OperationOptions): Operation<void> {
    return new SendOp(this, message, options);
  }

  /** @internal True when `sender` may add its message now. */
  _hasRoomFor(sender: SendOp<M>): boolean {
    if (this.size >= this.capacity) return false;
    const senders = this.#senders;
    return senders === null || senders.length === 0 || senders[0] === sender;
  }

  /** @internal Queues `sender` for room, once. */
  _queue(sender: SendOp<M>): void {
    const senders = this.#senders ??= [];
    if (!senders.includes(sender)) senders.push(sender);
  }

  /**
   * @internal Takes `sender` off the queue (it sent, or stopped waiting),
   * and passes room it leaves to the next one.
   */
  _leave(sender: SendOp<M>): void {
    sender.waiter = null;
    const senders = this.#senders;
    if (senders === null) return;
    const at = senders.indexOf(sender);
    if (at === -1) return;
    senders.splice(at, 1);
    if (at === 0) this.#wakeSender();
  }

  /** Wakes the oldest sender if there is room for it. */
  #wakeSender(): void {
    const senders = this.#senders;
    if (senders !== null && senders.length > 0 && this.size < this.capacity) {
      senders[0].waiter?.wake();
    }
  }

  /** @internal */
  _take(): M {
    const message = this.#items[this.#head] as M;
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    } else if (this.#head >= 32 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    if (this.#senders !== null) this.#wakeSender();
    return message;
  }
}
