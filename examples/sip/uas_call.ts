/**
 * The SIP server's conversation: one coroutine per Call-ID, reading top to
 * bottom like seed 000 — wait for INVITE, send OK (again and again, since
 * UDP loses it) until the ACK, then wait for BYE.
 *
 * @module
 */

import type { ConversationHandler, Coroutine, Inbox } from "@corio/corio";
import {
  createResponse,
  getHeader,
  type SipHeader,
  type SipRequest,
  type SipResponse,
} from "./message.ts";
import { CompletedTransactions } from "./completed.ts";
import {
  type Incoming,
  isRequest,
  randomToken,
  type ResolvedTimers,
  resolveTimers,
  type SipTimers,
  transact,
} from "./transaction.ts";

/** Options for {@linkcode uas}. */
export interface UasOptions extends SipTimers {
  /**
   * Our address for Contact and Via, e.g. `"127.0.0.1:5060"`.
   * @default {"127.0.0.1:5060"}
   */
  hostport?: string;
  /**
   * Send `180 Ringing` before the `200 OK`.
   * @default {true}
   */
  ringing?: boolean;
  /** Told when a call ends: `"completed"`, `"no-ack"` (Timer H), ... */
  onCallEnd?: (callId: string, outcome: string) => void;
}

interface Context extends ResolvedTimers {
  /** The answers retransmitted requests get until Timer J (UDP). */
  completed: CompletedTransactions;
  hostport: string;
  transport: string;
  ringing: boolean;
  onCallEnd: (callId: string, outcome: string) => void;
}

const ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS";
const SDP =
  "v=0\r\no=corio 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n" +
  "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/**
 * The conversation handler for a SIP UAS, for `Conversations` or
 * `serveDatagram`: the key is the Call-ID, the first message starts it.
 */
export function uas(
  options: UasOptions = {},
): ConversationHandler<Incoming, string> {
  const timers = resolveTimers(options);
  const context: Context = {
    ...timers,
    completed: new CompletedTransactions(timers),
    hostport: options.hostport ?? "127.0.0.1:5060",
    transport: timers.isReliable ? "tcp" : "udp",
    ringing: options.ringing ?? true,
    onCallEnd: options.onCallEnd ?? (() => {}),
  };
  return (inbox, first) => conversation(inbox, first!, context);
}

async function* conversation(
  inbox: Inbox<Incoming>,
  first: Incoming,
  context: Context,
): Coroutine<void> {
  const request = first.message;
  if (request.kind === "response") return; // a stray response: nothing to answer
  // A request answered within Timer J, sent again: its call has ended, and
  // it gets the same answer.
  if (context.completed.absorb(first)) return;
  switch (request.method) {
    case "INVITE": {
      const bye = yield* call(
        inbox,
        first as Incoming & { message: SipRequest },
        context,
      );
      if (bye !== undefined) byeReceived(bye, context);
      return; // the call's coroutine ends here; Timer J is CompletedTransactions'
    }
    case "ACK":
      return; // ACK is never answered; its call is gone
    case "OPTIONS":
      return answer(
        first,
        createResponse(request, 200, "OK", {
          toTag: randomToken(),
          headers: [["Allow", ALLOW], ["Accept", "application/sdp"]],
        }),
        context,
      );
    case "BYE":
    case "CANCEL":
      return answer(
        first,
        createResponse(request, 481, "Call/Transaction Does Not Exist"),
        context,
      );
    default:
      return answer(
        first,
        createResponse(request, 405, "Method Not Allowed", {
          headers: [["Allow", ALLOW]],
        }),
        context,
      );
  }
}

/**
 * INVITE → 100 → 180 → 200 until ACK (Timer G) or give up (Timer H) → wait
 * for BYE. Returns the caller's BYE, unanswered (undefined after Timer H).
 */
async function* call(
  inbox: Inbox<Incoming>,
  first: Incoming & { message: SipRequest },
  context: Context,
): Coroutine<Incoming | undefined> {
  const { message: invite, reply } = first;
  const { clock, t1, t2 } = context;
  const callId = getHeader(invite, "Call-ID")!;
  const toTag = randomToken();
  const contact: SipHeader = [
    "Contact",
    `<sip:uas@${context.hostport};transport=${context.transport}>`,
  ];
  reply(createResponse(invite, 100, "Trying"));
  if (context.ringing) {
    reply(
      createResponse(invite, 180, "Ringing", { toTag, headers: [contact] }),
    );
  }
  const ok = createResponse(invite, 200, "OK", {
    toTag,
    headers: [contact, ["Content-Type", "application/sdp"]],
    body: SDP,
  });

  // RFC 3261 §13.3.1.4: the UAS core retransmits the 2xx at T1, 2·T1, …
  // capped at T2 (Timer G) until the ACK; at 64·T1 (Timer H) it gives up
  // and ends the session with a BYE.
  const giveUpAt = clock.now() + 64 * t1;
  let nextSend = clock.now();
  let interval = t1;
  for (;;) {
    if (clock.now() >= giveUpAt) {
      context.onCallEnd(callId, "no-ack");
      yield* hangUp(inbox, first, ok, context);
      return undefined;
    }
    if (clock.now() >= nextSend) {
      reply(ok);
      nextSend = clock.now() + interval;
      interval = Math.min(2 * interval, t2);
    }
    const incoming = yield* inbox.poll({
      deadline: Math.min(nextSend, giveUpAt),
    });
    if (incoming === undefined) continue;
    const message = incoming.message;
    if (isRequest(message, "ACK")) break;
    if (isRequest(message, "INVITE")) incoming.reply(ok); // a retransmission gets the last response
    else if (isRequest(message, "BYE")) {
      return incoming;
    } else if (isRequest(message, "CANCEL")) {
      incoming.reply(createResponse(message, 200, "OK"));
    }
  }

  // Confirmed: wait for the caller's BYE (Conversations' idleTimeout bounds it).
  for (;;) {
    const incoming = yield* inbox.recv();
    const message = incoming.message;
    if (isRequest(message, "BYE")) {
      return incoming;
    }
    if (isRequest(message, "INVITE")) incoming.reply(ok);
    else if (isRequest(message, "OPTIONS")) {
      incoming.reply(createResponse(message, 200, "OK"));
    }
    // A retransmitted ACK needs nothing.
  }
}

function byeReceived(incoming: Incoming, context: Context): void {
  const bye = incoming.message as SipRequest;
  context.onCallEnd(getHeader(bye, "Call-ID")!, "completed");
  answer(incoming, createResponse(bye, 200, "OK"), context);
}

/**
 * Answers a non-INVITE request. Over UDP its retransmissions get the same
 * response until Timer J (64·T1, §17.2.2), since a lost response makes the
 * client retransmit: `context.completed` answers them, after the
 * conversation has ended.
 */
function answer(
  incoming: Incoming,
  response: SipResponse,
  context: Context,
): void {
  // Remembered first: a retransmission the reply provokes at once finds it.
  context.completed.remember(incoming.message as SipRequest, response);
  incoming.reply(response);
}

/** Timer H fired: end the session we answered with a BYE of our own. */
async function* hangUp(
  inbox: Inbox<Incoming>,
  first: Incoming & { message: SipRequest },
  ok: SipResponse,
  context: Context,
): Coroutine<void> {
  const invite = first.message;
  const target = /<([^>]+)>/.exec(getHeader(invite, "Contact") ?? "")?.[1] ??
    getHeader(invite, "Contact") ?? invite.uri;
  const bye: SipRequest = {
    kind: "request",
    method: "BYE",
    uri: target,
    headers: [
      [
        "Via",
        `SIP/2.0/${context.transport.toUpperCase()} ${context.hostport};branch=z9hG4bK${randomToken()}`,
      ],
      ["From", getHeader(ok, "To")!],
      ["To", getHeader(invite, "From")!],
      ["Call-ID", getHeader(invite, "Call-ID")!],
      ["CSeq", "1 BYE"],
      ["Max-Forwards", "70"],
    ],
    body: new Uint8Array(0),
  };
  yield* transact(inbox, first.reply, bye, context, {
    // A late INVITE retransmission still gets its answer.
    onOther: (incoming) => {
      const message = incoming.message;
      if (isRequest(message, "INVITE")) incoming.reply(ok);
      else if (isRequest(message, "BYE")) {
        incoming.reply(createResponse(message, 200, "OK")); // both hung up
      }
    },
  });
}
