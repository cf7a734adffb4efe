// The options, counters and defaults of `Conversations`: the public types
// live here so that src/conversations.ts holds the behaviour. Re-exported
// by src/conversations.ts.

import type { Coroutine } from "./effects.ts";
import type { Inbox } from "./inbox.ts";
import type { Scheduler } from "./scheduler.ts";
import type { Clock } from "./timers.ts";

/**
 * How {@linkcode Conversations.dispatch} disposed of a message.
 *
 * @example What became of each message
 * ```ts
 * import { Conversations, type DispatchStatus } from "@corio/corio";
 *
 * const calls = new Conversations<string, string>({
 *   key: (message) => message,
 *   handler: function* (inbox) { yield* inbox.recv(); },
 * });
 * const statuses: DispatchStatus[] = [calls.dispatch("a"), calls.dispatch("a")];
 * await calls.shutdown();
 * statuses.push(calls.dispatch("b"));
 * console.log(statuses); // ["started", "delivered", "closed"]
 * ```
 */
export type DispatchStatus =
  /** A new conversation was started with it. */
  | "started"
  /** It went to a running conversation's inbox. */
  | "delivered"
  /** New key at `maxConversations`: dropped, `onRefuse` called. */
  | "refused"
  /** The conversation's inbox was full: dropped, `onRefuse` called. */
  | "overflow"
  /**
   * New key while shutting down, or no handler for new keys: dropped,
   * `onRefuse` called.
   */
  | "closed";

/**
 * A conversation handler: a coroutine function.
 *
 * @example A handler declared on its own, then used for every new key
 * ```ts
 * import { type ConversationHandler, Conversations } from "@corio/corio";
 *
 * type Message = { callId: string; method: string };
 * const log: string[] = [];
 * const call: ConversationHandler<Message, string> = function* (inbox, first, key) {
 *   log.push(`${key}: ${first!.method}`);
 *   log.push(`${key}: ${(yield* inbox.recv({ timeout: 32_000 })).method}`);
 * };
 * const calls = new Conversations({ key: (message: Message) => message.callId, handler: call });
 * calls.dispatch({ callId: "a", method: "INVITE" });
 * calls.dispatch({ callId: "a", method: "BYE" });
 * await calls.shutdown({ grace: 1000 });
 * console.log(log); // ["a: INVITE", "a: BYE"]
 * ```
 */
export type ConversationHandler<M, K> = (
  inbox: Inbox<M>,
  first: M | undefined,
  key: K,
) => Coroutine<unknown>;

/**
 * Options for {@linkcode Conversations}.
 *
 * @example Idle conversations expire, on a virtual clock
 * ```ts
 * import { Conversations, type ConversationsOptions, delay, run } from "@corio/corio";
 * import { VirtualClock } from "@corio/corio/testing";
 *
 * const options: ConversationsOptions<string, string> = {
 *   key: (message) => message,
 *   handler: function* (inbox) { yield* inbox.recv(); }, // waits for a second message
 *   idleTimeout: 30_000,
 *   maxConversations: 1000,
 *   clock: new VirtualClock(),
 * };
 * const calls = new Conversations(options);
 * calls.dispatch("a");
 * await run((function* () { yield* delay(31_000); })(), { scheduler: calls.scheduler });
 * console.log(calls.stats.expired); // 1
 * await calls.shutdown();
 * ```
 */
export interface ConversationsOptions<M, K> {
  /** The conversation a message belongs to (a SIP Call-ID). */
  key: (message: M) => K;
  /**
   * Started for each message with a new key, with that message as `first`.
   * Without one, messages for unknown keys are dropped (status `"closed"`)
   * and conversations begin only with `start()` (a client).
   */
  handler?: ConversationHandler<M, K>;
  /**
   * Conversations running at once; a new key beyond it is refused.
   * @default {10000}
   */
  maxConversations?: number;
  /**
   * A conversation that receives no message for this long is cancelled
   * (its `finally` blocks run), in ms. `Infinity` disables.
   * @default {300000}
   */
  idleTimeout?: number;
  /**
   * Each conversation's inbox capacity. When full, further messages for it
   * are dropped (status `"overflow"`) rather than block the dispatcher.
   * @default {64}
   */
  inboxCapacity?: number;
  /**
   * Told about every message dropped: a new key at `maxConversations`
   * (`"refused"`), a full inbox (`"overflow"`), a new key while shutting
   * down or with no handler (`"closed"`); a server answers there ("busy",
   * "going away", "no such transaction").
   */
  onRefuse?: (
    message: M,
    key: K,
    reason: "refused" | "overflow" | "closed",
  ) => void;
  /**
   * Receives a conversation's uncaught error (it ends only that one), and
   * the error of a child of a conversation that expired or was shut down,
   * if no join delivered it.
   * @default {console.error, except TimeoutError}
   */
  onError?: (error: unknown, key: K) => void;
  /**
   * Run on this scheduler (and its clock).
   * @default {a new Scheduler on `clock`}
   */
  scheduler?: Scheduler;
  /**
   * The clock of the new scheduler, when `scheduler` is not given.
   * @default {systemClock}
   */
  clock?: Clock;
}

/**
 * Counters of a {@linkcode Conversations}; a live view.
 *
 * @example Read the counters from conversations.stats
 * ```ts
 * import { Conversations } from "@corio/corio";
 *
 * const calls = new Conversations<string, string>({
 *   key: (message) => message,
 *   handler: function* (inbox) { yield* inbox.recv(); },
 *   maxConversations: 1,
 * });
 * calls.dispatch("a"); // started
 * calls.dispatch("a"); // delivered
 * calls.dispatch("b"); // refused: one conversation at most
 * await calls.shutdown();
 * const { started, delivered, refused } = calls.stats;
 * console.log(started, delivered, refused); // 1 1 1
 * ```
 */
export interface ConversationStats {
  /** Conversations running now. */
  active: number;
  /** Conversations started. */
  started: number;
  /**
   * Messages delivered to running conversations. One its conversation ended
   * without receiving is dispatched again, and counted again where it goes.
   */
  delivered: number;
  /** Messages refused at `maxConversations`. */
  refused: number;
  /** Messages dropped because an inbox was full. */
  overflowed: number;
  /**
   * Messages of no running conversation dropped while shutting down, or
   * with no handler for new keys (a late reply to a request whose
   * conversation has ended, on a client's socket).
   */
  closed: number;
  /** Conversations cancelled by `idleTimeout`. */
  expired: number;
  /** Conversations that threw. */
  failed: number;
}

/**
 * Options for {@linkcode Conversations.shutdown}.
 *
 * @example Cancel what still runs after 5 virtual seconds
 * ```ts
 * import { Conversations, delay } from "@corio/corio";
 * import { VirtualClock } from "@corio/corio/testing";
 *
 * const calls = new Conversations<string, string>({
 *   key: (message) => message,
 *   handler: function* () { yield* delay(60_000); }, // a long call
 *   clock: new VirtualClock(),
 * });
 * calls.dispatch("a");
 * await calls.shutdown({ grace: 5000 });
 * console.log(calls.scheduler.now(), calls.stats.active); // 5000 0
 * ```
 */
export interface ConversationsShutdownOptions {
  /**
   * How long running conversations may go on (on the scheduler's clock)
   * before they are cancelled, in ms.
   * @default {0}
   */
  grace?: number;
}

export const DEFAULTS = {
  maxConversations: 10_000,
  idleTimeout: 300_000,
  inboxCapacity: 64,
} as const;
