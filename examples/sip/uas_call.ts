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
  getTag,
  parseCSeq,
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
  /**
   * Told once when a call ends: `"completed"` (a BYE), `"no-ack"` (Timer
   * H), or `"cancelled"` (its conversation expired or was shut down).
   */
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
 * A SIP UAS's conversation handler, and how it answers what no call takes.
 */
export interface UasHandler extends ConversationHandler<Incoming, string> {
  /**
   * Answers a request that `Conversations` dropped (its `onRefuse`): a
   * repeat of one answered within Timer J gets that answer again (a late
   * copy of an ended call's INVITE, none); a CANCEL or a request in a
   * dialog of no running call (at the cap, or shutting down) gets 481;
   * anything else that wants an answer, 503.
   */
  refuse(
    incoming: Incoming,
    reason: "refused" | "overflow" | "closed",
  ): void;
}

/**
 * The conversation handler for a SIP UAS, for `Conversations` or
 * `serveDatagram`: the key is the Call-ID, the first message starts it.
 */
export function uas(options: UasOptions = {}): UasHandler {
  const timers = resolveTimers(options);
  const context: Context = {
    ...timers,
    completed: new CompletedTransactions(timers),
    hostport: options.hostport ?? "127.0.0.1:5060",
    transport: timers.isReliable ? "tcp" : "udp",
    ringing: options.ringing ?? true,
    onCallEnd: options.onCallEnd ?? (() => {}),
  };
  const handler: ConversationHandler<Incoming, string> = (inbox, first) =>
    conversation(inbox, first!, context);
  return Object.assign(handler, {
    refuse: (incoming: Incoming, reason: string) =>
      refuse(incoming, reason, context),
  });
}

function refuse(incoming: Incoming, reason: string, context: Context): void {
  const request = incoming.message;
  if (request.kind !== "request" || request.method === "ACK") return;
  // While shutting down, a repeat of a request answered before (its 200
  // lost) gets that answer, not a 503 for a call that ended well.
  if (context.completed.absorb(incoming)) return;
  // A CANCEL or an in-dialog request (a To tag) of no running call: its
  // transaction or dialog is gone (§9.2, §12.2.2); a retry will not help.
  if (
    reason !== "overflow" &&
    (request.method === "CANCEL" ||
      getTag(getHeader(request, "To")) !== undefined)
  ) {
    return incoming.reply(
      createResponse(request, 481, "Call/Transaction Does Not Exist"),
    );
  }
  incoming.reply(
    createResponse(request, 503, "Service Unavailable", {
      headers: [["Retry-After", "5"]],
    }),
  );
}

async function* conversation(
  inbox: Inbox<Incoming>,
  first: Incoming,
  context: Context,
): Coroutine<void> {
  const request = first.message;
  if (request.kind === "response") return; // a stray response: nothing to answer
  // A request answered within Timer J, sent again: its call has ended, and
  // it gets the same answer (a late copy of the call's INVITE, none).
  if (context.completed.absorb(first)) return;
  switch (request.method) {
    case "INVITE": {
      // RFC 3261 §12.2.2: a request with a To tag belongs to a dialog, and
      // this one's is gone (or never was).
      if (getTag(getHeader(request, "To")) !== undefined) {
        return first.reply(
          createResponse(request, 481, "Call/Transaction Does Not Exist"),
        );
      }
      const callId = getHeader(request, "Call-ID")!;
      let outcome: string | undefined;
      const end = (how: string) => context.onCallEnd(callId, outcome = how);
      try {
        const bye = yield* call(
          inbox,
          first as Incoming & { message: SipRequest },
          context,
          end,
        );
        if (bye !== undefined) byeReceived(bye, context, end);
      } finally {
        if (outcome === undefined) end("cancelled"); // expired or shut down
        // A late copy of this INVITE must not start a second call.
        context.completed.rememberInvite(request);
      }
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
 * for BYE. Returns the caller's BYE, unanswered (undefined after Timer H,
 * which it reports to `end` as "no-ack").
 */
async function* call(
  inbox: Inbox<Incoming>,
  first: Incoming & { message: SipRequest },
  context: Context,
  end: (outcome: string) => void,
): Coroutine<Incoming | undefined> {
  const { message: invite, reply } = first;
  const { clock, t1, t2 } = context;
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
  const dialog: Dialog = {
    inviteSeq: parseCSeq(getHeader(invite, "CSeq")!)!.seq,
    ok,
    acceptedUntil: giveUpAt,
  };
  let nextSend = clock.now();
  let interval = t1;
  for (;;) {
    if (clock.now() >= giveUpAt) {
      end("no-ack");
      yield* hangUp(inbox, first, dialog, context);
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
    if (isRequest(incoming.message, "ACK")) break;
    if (isRequest(incoming.message, "BYE")) return incoming;
    answerInDialog(incoming, dialog, context);
  }

  // Confirmed: wait for the caller's BYE (the transport's idleTimeout
  // bounds it: see startUas).
  for (;;) {
    const incoming = yield* inbox.recv();
    if (isRequest(incoming.message, "BYE")) return incoming;
    answerInDialog(incoming, dialog, context);
  }
}

/** What a call answers the requests of its dialog from. */
interface Dialog {
  /** The INVITE's CSeq number: an INVITE with it is a retransmission. */
  inviteSeq: number;
  /** The 200 to the INVITE. */
  ok: SipResponse;
  /**
   * Until when a CANCEL finds the INVITE's transaction (clock ms): Timer L,
   * 64·T1 after the 200 (RFC 6026 §7.1).
   */
  acceptedUntil: number;
}

/**
 * Answers a request of a call's dialog other than BYE. A retransmitted
 * INVITE gets the 200 again; a new one (a re-INVITE, which would change
 * the session) gets 488, and the call goes on as it was (RFC 3261 §14.2):
 * this UAS offers one session, and does not renegotiate it. A CANCEL of
 * the INVITE, which has its final response, changes nothing and gets 200
 * while the INVITE's transaction lasts, 481 after it (§9.2); OPTIONS gets
 * 200, any other method 405. ACKs and responses need no answer.
 */
function answerInDialog(
  incoming: Incoming,
  dialog: Dialog,
  context: Context,
): void {
  const request = incoming.message;
  if (request.kind === "response") return;
  const seq = parseCSeq(getHeader(request, "CSeq") ?? "")?.seq;
  switch (request.method) {
    case "ACK":
      return;
    case "INVITE":
      if (seq === dialog.inviteSeq) return incoming.reply(dialog.ok);
      return incoming.reply(
        createResponse(request, 488, "Not Acceptable Here", {
          headers: [[
            "Warning",
            `399 ${context.hostport} "session changes not supported"`,
          ]],
        }),
      );
    case "CANCEL":
      return answer(
        incoming,
        seq === dialog.inviteSeq &&
          context.clock.now() < dialog.acceptedUntil
          ? createResponse(request, 200, "OK")
          : createResponse(request, 481, "Call/Transaction Does Not Exist"),
        context,
      );
    case "OPTIONS":
      return answer(incoming, createResponse(request, 200, "OK"), context);
    default:
      return answer(
        incoming,
        createResponse(request, 405, "Method Not Allowed", {
          headers: [["Allow", ALLOW]],
        }),
        context,
      );
  }
}

function byeReceived(
  incoming: Incoming,
  context: Context,
  end: (outcome: string) => void,
): void {
  end("completed");
  answer(
    incoming,
    createResponse(incoming.message as SipRequest, 200, "OK"),
    context,
  );
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
  dialog: Dialog,
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
      ["From", getHeader(dialog.ok, "To")!],
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
      if (isRequest(message, "BYE")) {
        answer(incoming, createResponse(message, 200, "OK"), context); // both hung up
      } else answerInDialog(incoming, dialog, context);
    },
  });
}
