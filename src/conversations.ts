/**
 * Conversations (seed 000): route each message by its key — a SIP Call-ID
 * — to the coroutine that handles that conversation. A message with a new
 * key starts a coroutine; a message with a known key goes to that
 * coroutine's {@linkcode Inbox}. Transport-independent: UDP
 * (`serveDatagram`), TCP connections, or a test feed it with `dispatch`.
 *
 * @module
 */

import {
  type Coroutine as CoroutineRecord,
  ENDING,
  FAILED,
  type SettleListener,
} from "./_coroutine.ts";
import type { Coroutine } from "./effects.ts";
import { ConversationLimitError, TimeoutError } from "./errors.ts";
import { Inbox } from "./inbox.ts";
import { Scheduler, type Task } from "./scheduler.ts";
import { Alarm, type DeadlineEntry } from "./timers.ts";
import { callOnError } from "./_on_error.ts";
import {
  type ConversationHandler,
  type ConversationsOptions,
  type ConversationsShutdownOptions,
  type ConversationStats,
  DEFAULTS,
  type DispatchStatus,
} from "./_conversations_options.ts";

export type {
  ConversationHandler,
  ConversationsOptions,
  ConversationsShutdownOptions,
  ConversationStats,
  DispatchStatus,
} from "./_conversations_options.ts";

/**
 * One running conversation: its inbox, its handler's coroutine, and its
 * place in the idle-expiry queue. It is the scheduler's settle listener
 * for the handler, so a conversation needs no coroutine, task or closure
 * of its own beside its handler's.
 */
class Entry<M, K> implements DeadlineEntry, SettleListener {
  heapIndex = -1;
  constructor(
    readonly key: K,
    readonly inbox: Inbox<M>,
    /** The handler's coroutine. */
    readonly co: CoroutineRecord,
    /** When it last received a message, on the scheduler's clock. */
    public lastActivity: number,
    readonly table: EntryTable<M, K>,
  ) {}
  /** The scheduler calls this when the handler is done. */
  onSettled(): void {
    this.table.ended(this);
  }
  /** A child of the handler failed under a cancelled parent. */
  onChildError(error: unknown): void {
    this.table.childFailed(this, error);
  }
}

/** What an entry tells its table. */
interface EntryTable<M, K> {
  ended(entry: Entry<M, K>): void;
  childFailed(entry: Entry<M, K>, error: unknown): void;
}

/**
 * A table of conversations, each a coroutine with an inbox, keyed by
 * `key(message)`. Messages for one conversation arrive in dispatch order;
 * `dispatch` never blocks, so a slow conversation delays no other and not
 * the reader that feeds them. A conversation that ends is removed; the
 * table is capped (`maxConversations`) and idle ones expire. Messages its
 * handler never received are dispatched again once it has ended, as if
 * they had arrived a moment later: to a new conversation, not lost. Over a
 * lossy transport that includes a client's retransmitted request that came
 * while the handler worked: once the handler ends, it starts the exchange
 * again. A handler that wants no more takes them off its inbox before it
 * ends (`inbox.close()`, then `inbox.poll({ timeout: 0 })` until
 * `undefined`), or answers them, as a server transaction absorbs
 * retransmissions (RFC 3261 §17.2; `examples/sip/`).
 *
 * @example Seed 000: wait for INVITE, send OK, wait for ACK
 * ```ts
 * import { Conversations, type Inbox } from "@corio/corio";
 *
 * type Message = { callId: string; method: string };
 * const sent: string[] = [];
 * const calls = new Conversations<Message, string>({
 *   key: (message) => message.callId,
 *   handler: function* (inbox: Inbox<Message>, invite) {
 *     sent.push(`OK to ${invite!.method}`);
 *     const ack = yield* inbox.recv({ timeout: 32_000 });
 *     sent.push(`got ${ack.method}`);
 *   },
 * });
 * calls.dispatch({ callId: "a", method: "INVITE" });
 * calls.dispatch({ callId: "a", method: "ACK" });
 * await calls.shutdown({ grace: 1000 });
 * console.log(sent); // ["OK to INVITE", "got ACK"]
 * ```
 */
export class Conversations<M, K = string> implements AsyncDisposable {
  /** The scheduler the conversations run on. */
  readonly scheduler: Scheduler;
  #table = new Map<K, Entry<M, K>>();
  /**
   * @internal Its messages come from a socket (`serveDatagram`): the
   * inboxes' receives wait as on a socket (see `Inbox._isExternal`).
   */
  _isFedExternally = false;
  /** Live counters. */
  readonly stats: ConversationStats = liveStats(this.#table);
  #key: (message: M) => K;
  #handler: ConversationHandler<M, K> | undefined;
  #max: number;
  #idleTimeout: number;
  #inboxCapacity: number;
  #onRefuse: ConversationsOptions<M, K>["onRefuse"];
  #onError: (error: unknown, key: K) => void;
  /** Idle conversations' expiry: one queue and one host timer in all. */
  #idleAlarm: Alarm<Entry<M, K>>;
  #isClosed = false;
  #shutdown: Promise<void> | null = null;
  #stopping = new AbortController();

  /**
   * Aborted as shutdown begins, its reason a `DOMException` named
   * `AbortError`: a `serve` handler's `info.signal`, for conversations. Give
   * it to a wait (`inbox.recv({ signal })`) to end that wait at the start
   * of the grace instead of being cancelled at its end, so a conversation
   * can flush what it holds and return. One that lets the reason propagate
   * is not counted as failed, nor reported to `onError`.
   *
   * @example A forwarder that drains its inbox when shutdown begins
   * ```ts
   * import { Conversations, type Effect } from "@corio/corio";
   *
   * const written: string[] = [];
   * const sink: Conversations<string, number> = new Conversations({
   *   key: () => 0, // one conversation for every message
   *   *handler(inbox, first): Generator<Effect, void, unknown> {
   *     written.push(first!);
   *     try {
   *       for (;;) written.push(yield* inbox.recv({ signal: sink.signal }));
   *     } catch (error) {
   *       if (error !== sink.signal.reason) throw error;
   *     }
   *     for (let m; (m = yield* inbox.poll({ timeout: 0 })) !== undefined;) {
   *       written.push(m); // what was queued as shutdown began
   *     }
   *   },
   * });
   * sink.dispatch("a");
   * sink.dispatch("b");
   * await sink.shutdown({ grace: 60_000 }); // ends at once, not in a minute
   * console.log(written, sink.stats.failed); // [ "a", "b" ] 0
   * ```
   */
  get signal(): AbortSignal {
    return this.#stopping.signal;
  }

  /**
   * Creates an empty table of conversations.
   * @param options Key, handler, limits and hooks.
   * @throws {TypeError} If `key` is not a function.
   * @throws {RangeError} For a cap below 1 or a negative timeout.
   */
  constructor(options: ConversationsOptions<M, K>) {
    if (typeof options?.key !== "function") {
      throw new TypeError(
        "Cannot create conversations: key must be a function",
      );
    }
    if (
      options.handler !== undefined && typeof options.handler !== "function"
    ) {
      throw new TypeError(
        "Cannot create conversations: handler must be a function* or async function*",
      );
    }
    const max = options.maxConversations ?? DEFAULTS.maxConversations;
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(
        `Cannot create conversations: maxConversations must be an integer >= 1, got ${max}`,
      );
    }
    const idleTimeout = options.idleTimeout ?? DEFAULTS.idleTimeout;
    if (!(idleTimeout >= 0)) {
      throw new RangeError(
        `Cannot create conversations: idleTimeout must be >= 0, got ${idleTimeout}`,
      );
    }
    this.#inboxCapacity = options.inboxCapacity ?? DEFAULTS.inboxCapacity;
    new Inbox({ capacity: this.#inboxCapacity }); // validates it
    this.#key = options.key;
    this.#handler = options.handler;
    this.#max = max;
    this.#idleTimeout = idleTimeout;
    this.#onRefuse = options.onRefuse;
    this.#onError = options.onError ?? defaultOnError;
    this.scheduler = options.scheduler ??
      new Scheduler({ clock: options.clock });
    this.#idleAlarm = new Alarm(this.scheduler.clock, this.#onIdle);
  }

  /** Conversations running now. */
  get size(): number {
    return this.#table.size;
  }

  /** True if a conversation with this key is running. */
  has(key: K): boolean {
    return this.#table.has(key);
  }

  /**
   * Routes a message: to its running conversation's inbox, or to a new
   * conversation started with it. Never blocks and never throws for a
   * full table or inbox: the status says what happened.
   *
   * @param message The message.
   * @returns What became of it.
   * @throws What `key(message)`, the handler's call or `onRefuse` throw.
   * @throws {TypeError} If the handler returns no generator object.
   */
  dispatch(message: M): DispatchStatus {
    const key = this.#key(message);
    const entry = this.#table.get(key);
    if (entry !== undefined) {
      if (!entry.inbox.push(message)) {
        this.stats.overflowed++;
        this.#onRefuse?.(message, key, "overflow");
        return "overflow";
      }
      entry.lastActivity = this.scheduler.now();
      this.stats.delivered++;
      return "delivered";
    }
    const handler = this.#handler;
    if (this.#isClosed || handler === undefined) {
      this.stats.closed++;
      this.#onRefuse?.(message, key, "closed");
      return "closed";
    }
    if (this.#table.size >= this.#max) {
      this.stats.refused++;
      this.#onRefuse?.(message, key, "refused");
      return "refused";
    }
    this.#begin(key, (inbox) => handler(inbox, message, key));
    return "started";
  }

  /**
   * Starts a conversation from this side (a client placing a call): later
   * messages with `key` go to its inbox.
   *
   * @param key The new conversation's key.
   * @param handler The coroutine function; it gets the inbox.
   * @returns The handler's task: its result, or its error (which
   * `onError` is told too), or {@linkcode CancelledError} when it expired
   * or was cancelled at shutdown.
   * @throws {ConversationLimitError} At `maxConversations` or after shutdown.
   * @throws {RangeError} If a conversation with `key` is running.
   */
  start(
    key: K,
    handler: (inbox: Inbox<M>, key: K) => Coroutine<unknown>,
  ): Task<unknown> {
    if (this.#table.has(key)) {
      throw new RangeError(
        `Cannot start conversation ${
          String(key)
        }: one with that key is running`,
      );
    }
    if (this.#isClosed || this.#table.size >= this.#max) {
      throw new ConversationLimitError(this.#max, this.#isClosed);
    }
    return this.scheduler._task(
      this.#begin(key, (inbox) => handler(inbox, key)),
    );
  }

  /**
   * Refuses new conversations at once, lets running ones finish (they
   * still receive messages) for up to `grace` ms on the scheduler's clock,
   * then cancels the rest; their `finally` blocks run. Idempotent.
   *
   * @param options The grace period.
   * @returns Resolves when every conversation has ended.
   */
  shutdown(options: ConversationsShutdownOptions = {}): Promise<void> {
    const grace = options.grace ?? 0;
    if (!(grace >= 0)) {
      throw new RangeError(
        `Cannot shut down conversations: grace must be >= 0, got ${grace}`,
      );
    }
    this.#isClosed = true;
    if (!this.#stopping.signal.aborted) {
      this.#stopping.abort(
        new DOMException("the conversations are shutting down", "AbortError"),
      );
    }
    return this.#shutdown ??= this.#stop(grace);
  }

  /** Shuts down with no grace. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #begin(
    key: K,
    body: (inbox: Inbox<M>) => Coroutine<unknown>,
  ): CoroutineRecord {
    const inbox = new Inbox<M>({
      capacity: this.#inboxCapacity,
      name: String(key),
    });
    inbox._isExternal = this._isFedExternally;
    const conversation = body(inbox);
    if (
      conversation === null || typeof conversation !== "object" ||
      typeof (conversation as { next?: unknown }).next !== "function"
    ) {
      throw new TypeError(
        `Cannot start conversation ${
          String(key)
        }: the handler must return a generator object (use function* or async function*)`,
      );
    }
    const co = this.scheduler._start(conversation, null);
    const entry = new Entry(
      key,
      inbox,
      co,
      this.scheduler.now(),
      this.#entryTable,
    );
    co.listener = entry;
    this.#table.set(key, entry);
    this.stats.started++;
    if (this.#idleTimeout !== Infinity) {
      this.#idleAlarm.set(entry, entry.lastActivity + this.#idleTimeout);
    }
    return co;
  }

  /**
   * An entry's idle deadline passed: expire it unless a message came
   * meanwhile. A delivery only writes `lastActivity`; the queue catches up
   * here, once per idle period, not once per message.
   */
  #onIdle = (entry: Entry<M, K>, now: number): void => {
    const expiry = entry.lastActivity + this.#idleTimeout;
    if (now < expiry) return this.#idleAlarm.set(entry, expiry);
    const co = entry.co;
    // Ending already, or cancelled by shutdown or its task: its finally
    // runs, and expiry cancels nothing.
    if (co.state >= ENDING || co.isCancelled || co.cancelRequested) return;
    this.stats.expired++;
    this.scheduler._cancel(co);
  };

  #entryTable: EntryTable<M, K> = {
    ended: (entry) => this.#onEnded(entry),
    childFailed: (entry, error) => callOnError(this.#onError, error, entry.key),
  };

  /** A handler ended: leave the table, report a failure, re-dispatch. */
  #onEnded(entry: Entry<M, K>): void {
    this.#table.delete(entry.key);
    this.#idleAlarm.delete(entry);
    if (this.#table.size === 0) this.#idleAlarm.stop();
    const co = entry.co;
    // A wait given `signal` that the shutdown ended, not caught: cancelled.
    if (co.outcome === FAILED && co.result !== this.#stopping.signal.reason) {
      this.stats.failed++;
      callOnError(this.#onError, co.result, entry.key);
    }
    // Delivered while the handler was ending, and never received: had
    // they come a moment later they would have started a new
    // conversation (a client's retransmission after the server answered
    // and ended, say), so that is where they go, not nowhere. This runs in
    // the scheduler's own bookkeeping: what `key` or `onRefuse` throw goes
    // to `onError`.
    // Closed first: a sender waiting for room in it would take that room
    // as the queue drains, and wait on after, for a handler that is gone.
    entry.inbox.close();
    while (entry.inbox.size > 0) {
      try {
        this.dispatch(entry.inbox._take());
      } catch (error) {
        callOnError(this.#onError, error, entry.key);
      }
    }
  }

  async #stop(grace: number): Promise<void> {
    const tasks = [...this.#table.values()].map((entry) =>
      this.scheduler._task(entry.co)
    );
    if (tasks.length === 0) return;
    if (grace > 0) {
      const deadline = this.scheduler.now() + grace;
      await this.scheduler.spawn((function* () {
        for (const task of tasks) {
          try {
            yield* task.join({ deadline });
          } catch {
            if (!task.isDone) return; // grace is over
          }
        }
      })()).finished;
    }
    for (const task of tasks) task.cancel();
    await Promise.all(tasks.map((task) => task.finished.catch(() => {})));
  }
}

/** Counters that start at 0; `active` is the table's size. */
function liveStats(table: Map<unknown, unknown>): ConversationStats {
  return {
    get active() {
      return table.size;
    },
    started: 0,
    delivered: 0,
    refused: 0,
    overflowed: 0,
    closed: 0,
    expired: 0,
    failed: 0,
  };
}

function defaultOnError(error: unknown): void {
  if (error instanceof TimeoutError) return;
  console.error(error);
}
