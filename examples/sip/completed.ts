/**
 * Non-INVITE server transactions in their Completed state (RFC 3261
 * §17.2.2). Over UDP a lost response makes the client send its request
 * again, and for 64·T1 (Timer J) each such retransmission must get the same
 * response. The UAS answers and remembers the answer here, so a call's
 * coroutine ends as soon as it has answered the BYE: waiting out Timer J in
 * the coroutine kept the whole call (its INVITE, its BYE, three suspended
 * generators and the conversation's inbox) alive for 32 s, about 10 KiB a
 * call, where an entry here holds a key and the response's text: 395 B
 * of heap (1,179 while it held the parsed response).
 *
 * An INVITE's transaction outlives its call the same way (RFC 6026's
 * Accepted state): a copy of the INVITE that arrives late, after the call
 * ended, must be absorbed, not start a second call. `rememberInvite` keeps
 * its key for 64·T1 (no answer: the copy gets none): 128 B of heap a call
 * (measured over 100,000), so 20 MiB at 5,000 calls/s.
 *
 * @module
 */

import {
  getBranch,
  getHeader,
  parseSipMessage,
  serializeSipMessage,
  type SipRequest,
  type SipResponse,
} from "./message.ts";
import type { Incoming, ResolvedTimers } from "./transaction.ts";

const decoder = new TextDecoder();

interface Answer {
  /**
   * The response as sent: its text, or its bytes when it has a body. A
   * `SipResponse` holds an array per header, and values that are slices of
   * its request's header lines, which they keep alive: 1,069 B of heap for
   * a 200 to a BYE (741 with its values copied out) against 285 as text.
   * `null` for an INVITE, whose copies are absorbed without an answer.
   */
  wire: string | Uint8Array | null;
  /** When Timer J ends it (clock ms). */
  until: number;
}

/**
 * The answers a UAS gave to non-INVITE requests within the last 64·T1, by
 * transaction: `remember` each answer, and let `absorb` answer a request
 * that repeats one. Entries expire as the table is used, with no timer of
 * their own (each lives 64·T1, so the oldest is always first to go): after
 * a burst, an idle server keeps them until its next request. At most
 * `maxEntries` are kept, the oldest going first: a flood of requests with
 * fresh branches (about 440 B each) cannot grow it without bound; a
 * retransmission of one pushed out is answered as new.
 *
 * @example A retransmitted BYE gets the same 200 again
 * ```ts
 * import { VirtualClock } from "@corio/corio/testing";
 * import { createResponse, parseSipMessage, type SipRequest } from "./message.ts";
 * import { CompletedTransactions } from "./completed.ts";
 * import { resolveTimers } from "./transaction.ts";
 *
 * const clock = new VirtualClock();
 * const completed = new CompletedTransactions(resolveTimers({ clock }));
 * const bye = parseSipMessage(
 *   "BYE sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n" +
 *     "From: <sip:b@127.0.0.1>;tag=f\r\nTo: <sip:a@127.0.0.1>;tag=t\r\n" +
 *     "Call-ID: c1\r\nCSeq: 2 BYE\r\n\r\n",
 * ) as SipRequest;
 * completed.remember(bye, createResponse(bye, 200, "OK"));
 * const replies: unknown[] = [];
 * const retransmission = { message: bye, reply: (m: unknown) => replies.push(m) };
 * console.log(completed.absorb(retransmission), replies.length); // true 1
 * ```
 */
export class CompletedTransactions {
  readonly #answers = new Map<string, Answer>();

  /**
   * @param timers T1, the clock, and whether the transport is reliable.
   * @param maxEntries The most answers kept (500,000: 32 s of 7,800
   *   calls/s, each call's BYE and INVITE; about 150 MiB of heap).
   */
  constructor(
    readonly timers: ResolvedTimers,
    readonly maxEntries = 500_000,
  ) {}

  /**
   * Answers retransmissions of `request` with `response` until Timer J
   * ends. Over TCP nothing is retransmitted, so nothing is kept.
   */
  remember(request: SipRequest, response: SipResponse): void {
    const bytes = serializeSipMessage(response);
    this.#keep(
      request,
      response.body.length === 0 ? decoder.decode(bytes) : bytes,
    );
  }

  /**
   * Absorbs copies of `invite`, whose call has ended, for 64·T1 (a little
   * longer than RFC 6026's Timer L, which runs from the 2xx: a copy that
   * late gets nothing either way). Over TCP nothing is retransmitted.
   */
  rememberInvite(invite: SipRequest): void {
    this.#keep(invite, null);
  }

  #keep(request: SipRequest, wire: string | Uint8Array | null): void {
    if (this.timers.isReliable) return;
    const now = this.timers.clock.now();
    this.#expire(now);
    const key = transactionKey(request);
    // Deleted first so that it goes to the back: the Map stays in the
    // order its entries expire.
    this.#answers.delete(key);
    if (this.#answers.size >= this.maxEntries) {
      this.#answers.delete(this.#answers.keys().next().value!);
    }
    this.#answers.set(key, { wire, until: now + 64 * this.timers.t1 });
  }

  /**
   * If `incoming` repeats a request answered within Timer J, answers it
   * again with the same response and returns true; a copy of an INVITE
   * whose call ended (`rememberInvite`) is absorbed without an answer.
   */
  absorb(incoming: Incoming): boolean {
    const message = incoming.message;
    if (
      this.#answers.size === 0 || message.kind !== "request" ||
      message.method === "ACK"
    ) return false;
    this.#expire(this.timers.clock.now());
    const answer = this.#answers.get(transactionKey(message));
    if (answer === undefined) return false;
    // Parsed again only for a retransmission, which is rare.
    if (answer.wire !== null) {
      incoming.reply(parseSipMessage(answer.wire) as SipResponse);
    }
    return true;
  }

  /** How many answers it keeps now. */
  get size(): number {
    return this.#answers.size;
  }

  #expire(now: number): void {
    for (const [key, answer] of this.#answers) {
      if (answer.until > now) return;
      this.#answers.delete(key);
    }
  }
}

/**
 * Which server transaction a request belongs to (§17.2.3): the top Via's
 * branch and the method; for a client of RFC 2543, which sets no branch,
 * its Call-ID and CSeq.
 */
function transactionKey(request: SipRequest): string {
  const branch = getBranch(request);
  return branch === undefined
    ? `${getHeader(request, "Call-ID")}\n${getHeader(request, "CSeq")}`
    : `${branch}\n${request.method}`;
}
