/**
 * What both SIP examples share: the message a conversation receives (with
 * a way to answer it), the timer options, and a client transaction — send
 * a request, retransmit it on RFC 3261's timers, wait for its response.
 *
 * @module
 */

import type { Clock, Coroutine, Inbox } from "@corio/corio";
import { systemClock } from "@corio/corio";
import {
  getHeader,
  parseCSeq,
  type SipMessage,
  type SipRequest,
  type SipResponse,
} from "./message.ts";

/** A received SIP message and how to answer its sender. */
export interface Incoming {
  /** The message. */
  message: SipMessage;
  /** Sends a message back the way this one came (UDP address or TCP connection). */
  reply(message: SipMessage): void;
}

/** RFC 3261 timers, and the clock to read them on. */
export interface SipTimers {
  /**
   * RTT estimate T1, in ms (§17.1.1.1).
   * @default {500}
   */
  t1?: number;
  /**
   * Retransmission cap T2, in ms.
   * @default {4000}
   */
  t2?: number;
  /**
   * True on TCP: no retransmissions of requests, no lingering (§17).
   * @default {false}
   */
  isReliable?: boolean;
  /**
   * The clock the conversation's scheduler uses (virtual in tests).
   * @default {systemClock}
   */
  clock?: Clock;
}

/** {@linkcode SipTimers} with every default filled in. */
export type ResolvedTimers = Required<SipTimers>;

/** Fills in the defaults and checks them. */
export function resolveTimers(timers: SipTimers = {}): ResolvedTimers {
  const t1 = timers.t1 ?? 500;
  const t2 = timers.t2 ?? 4000;
  if (!(t1 > 0) || !(t2 >= t1)) {
    throw new RangeError(
      `Cannot use SIP timers: need 0 < t1 <= t2, got t1=${t1} t2=${t2}`,
    );
  }
  return {
    t1,
    t2,
    isReliable: timers.isReliable ?? false,
    clock: timers.clock ?? systemClock,
  };
}

/** True if `message` is a request with this method. */
export function isRequest(
  message: SipMessage,
  method: string,
): message is SipRequest {
  return message.kind === "request" && message.method === method;
}

/** True if `message` is a response to a request with this CSeq method (and number). */
export function isResponseTo(
  message: SipMessage,
  method: string,
  seq?: number,
): message is SipResponse {
  if (message.kind !== "response") return false;
  const cseq = parseCSeq(getHeader(message, "CSeq") ?? "");
  return cseq !== undefined && cseq.method === method &&
    (seq === undefined || cseq.seq === seq);
}

/** A random token for tags, branches and Call-IDs. */
export function randomToken(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 16);
}

/** Options for {@linkcode transact}. */
export interface TransactOptions {
  /** Told of each request sent, retransmissions included. */
  onSend?: (request: SipRequest) => void;
  /** Gets every message that is not this transaction's response. */
  onOther?: (incoming: Incoming) => void;
  /**
   * How long an INVITE waits for its final response after a provisional
   * one, in ms (RFC 3261 Timer C).
   * @default {180000}
   */
  proceedingTimeout?: number;
}

/**
 * A client transaction (RFC 3261 §17.1): sends `request`, retransmits it
 * over UDP — INVITE on Timer A (T1, 2·T1, 4·T1, … until any response),
 * others on Timer E (doubling, capped at T2) — and returns its final
 * response, or `undefined` when Timer B/F (64·T1) runs out first.
 * Provisional responses are skipped.
 */
export async function* transact(
  inbox: Inbox<Incoming>,
  send: (message: SipMessage) => void,
  request: SipRequest,
  timers: ResolvedTimers,
  options: TransactOptions = {},
): Coroutine<SipResponse | undefined> {
  const { t1, t2, clock, isReliable } = timers;
  const isInvite = request.method === "INVITE";
  const seq = parseCSeq(getHeader(request, "CSeq")!)!.seq;
  let giveUpAt = clock.now() + 64 * t1;
  let nextSend = clock.now();
  let interval = t1;
  for (;;) {
    const now = clock.now();
    if (now >= giveUpAt) return undefined;
    if (now >= nextSend) {
      send(request);
      options.onSend?.(request);
      nextSend = isReliable ? Infinity : now + interval;
      interval = isInvite ? 2 * interval : Math.min(2 * interval, t2);
    }
    const incoming = yield* inbox.poll({
      deadline: Math.min(nextSend, giveUpAt),
    });
    if (incoming === undefined) continue;
    const message = incoming.message;
    if (!isResponseTo(message, request.method, seq)) {
      options.onOther?.(incoming);
      continue;
    }
    if (message.status >= 200) return message;
    if (isInvite) {
      // Proceeding: the server has it; stop Timer A, wait on Timer C.
      nextSend = Infinity;
      giveUpAt = clock.now() + (options.proceedingTimeout ?? 180_000);
    } else if (!isReliable) {
      interval = t2; // §17.1.2.2: in Proceeding, retransmit every T2
    }
  }
}
