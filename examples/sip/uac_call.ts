/**
 * The SIP client's conversation: one coroutine per call — INVITE (Timer
 * A/B), ACK, hold, BYE — reading top to bottom.
 *
 * @module
 */

import type { Coroutine, Inbox } from "@corio/corio";
import {
  createResponse,
  getHeader,
  type SipHeader,
  type SipMessage,
  type SipRequest,
} from "./message.ts";
import {
  type Incoming,
  isRequest,
  isResponseTo,
  randomToken,
  resolveTimers,
  type SipTimers,
  transact,
} from "./transaction.ts";

/** Options for {@linkcode uacCall}. */
export interface UacCallOptions extends SipTimers {
  /** The call's Call-ID (its conversation key). */
  callId: string;
  /** Sends a request to the server. */
  send: (message: SipMessage) => void;
  /** Where the server is, `host:port`. */
  target: string;
  /** Our address, `host:port`, for Via, From and Contact. */
  hostport: string;
  /**
   * How long the call stays up between ACK and BYE, in ms.
   * @default {0}
   */
  holdTime?: number;
  /**
   * Told of the call's result as soon as it is known: after a non-2xx
   * final response the call still waits out Timer D (see `uacCall`)
   * before it returns the result.
   */
  onResult?: (result: CallResult) => void;
}

/** How a call went. */
export interface CallResult {
  /** The call's Call-ID. */
  callId: string;
  /** True if INVITE got a 2xx and BYE a 2xx (or the server hung up). */
  isCompleted: boolean;
  /** A short account: `"completed"`, `"INVITE timed out (Timer B)"`, `"INVITE got 486"`, ... */
  outcome: string;
  /** INVITE transmissions, retransmissions included. */
  inviteSends: number;
  /** Milliseconds from the first INVITE to its final response. */
  setupTime: number;
}

const SDP =
  "v=0\r\no=corio 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n" +
  "t=0 0\r\nm=audio 6002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/**
 * Places one call. Run it with `conversations.start(callId, (inbox) =>
 * uacCall(inbox, options))`. After a non-2xx final response it stays for
 * Timer D (RFC 3261 §17.1.1.2: 32 s over UDP, 0 over TCP) to ACK each
 * retransmission of that response, whose first ACK was lost; `onResult`
 * has the result before then.
 */
export async function* uacCall(
  inbox: Inbox<Incoming>,
  options: UacCallOptions,
): Coroutine<CallResult> {
  const timers = resolveTimers(options);
  const { clock } = timers;
  const { callId, send, target, hostport } = options;
  const via = () =>
    [
      "Via",
      `SIP/2.0/UDP ${hostport};branch=z9hG4bK${randomToken()}`,
    ] as SipHeader;
  const from = `<sip:uac@${hostport}>;tag=${randomToken()}`;
  const invite: SipRequest = {
    kind: "request",
    method: "INVITE",
    uri: `sip:service@${target}`,
    headers: [
      via(),
      ["From", from],
      ["To", `<sip:service@${target}>`],
      ["Call-ID", callId],
      ["CSeq", "1 INVITE"],
      ["Contact", `<sip:uac@${hostport}>`],
      ["Max-Forwards", "70"],
      ["Content-Type", "application/sdp"],
    ],
    body: new TextEncoder().encode(SDP),
  };
  let inviteSends = 0;
  const started = clock.now();
  const result = (isCompleted: boolean, outcome: string): CallResult => {
    const known = { callId, isCompleted, outcome, inviteSends, setupTime };
    options.onResult?.(known);
    return known;
  };

  const answer = yield* transact(inbox, send, invite, timers, {
    onSend: () => inviteSends++,
  });
  const setupTime = clock.now() - started;
  if (answer === undefined) return result(false, "INVITE timed out (Timer B)");
  const to = getHeader(answer, "To")!;
  const request = (method: string, seq: number, uri: string): SipRequest => ({
    kind: "request",
    method,
    uri,
    headers: [via(), ["From", from], ["To", to], ["Call-ID", callId], [
      "CSeq",
      `${seq} ${method}`,
    ], ["Max-Forwards", "70"]],
    body: new Uint8Array(0),
  });
  if (answer.status >= 300) {
    // §17.1.1.3: a non-2xx final response is ACKed within its transaction.
    const ack = request("ACK", 1, invite.uri);
    ack.headers[0] = invite.headers[0];
    send(ack);
    const failed = result(
      false,
      `INVITE got ${answer.status} ${answer.reason}`,
    );
    // Timer D: 32 s, or the server's Timer H (64·T1) if longer.
    const lingerUntil = clock.now() +
      (timers.isReliable ? 0 : Math.max(32_000, 64 * timers.t1));
    for (
      let incoming;
      (incoming = yield* inbox.poll({ deadline: lingerUntil })) !== undefined;
    ) {
      if (isResponseTo(incoming.message, "INVITE", 1)) send(ack);
    }
    return failed;
  }

  const remote = /<([^>]+)>/.exec(getHeader(answer, "Contact") ?? "")?.[1] ??
    invite.uri;
  const ack = request("ACK", 1, remote);
  send(ack);
  // §13.2.2.4: every retransmission of the 2xx gets the ACK again.
  const onOther = (incoming: Incoming) => {
    if (
      isResponseTo(incoming.message, "INVITE") && incoming.message.status < 300
    ) send(ack);
  };
  const holdUntil = clock.now() + (options.holdTime ?? 0);
  for (
    let incoming;
    (incoming = yield* inbox.poll({ deadline: holdUntil })) !== undefined;
  ) {
    const message = incoming.message;
    if (isRequest(message, "BYE")) {
      incoming.reply(createResponse(message, 200, "OK"));
      return result(true, "completed (the server hung up)");
    }
    onOther(incoming);
  }

  const bye = yield* transact(inbox, send, request("BYE", 2, remote), timers, {
    onOther: (incoming) => {
      const message = incoming.message;
      // The server hung up as we did: both BYEs get a 200.
      if (isRequest(message, "BYE")) {
        incoming.reply(createResponse(message, 200, "OK"));
      } else onOther(incoming);
    },
  });
  if (bye === undefined) return result(false, "BYE timed out (Timer F)");
  if (bye.status >= 300) {
    return result(false, `BYE got ${bye.status} ${bye.reason}`);
  }
  return result(true, "completed");
}
