// The SIP examples' conversations on a virtual clock: no sockets, exact
// RFC 3261 timer schedules, instantly.
import assert from "node:assert/strict";
import { Conversations, delay } from "@corio/corio";
import { VirtualClock } from "@corio/corio/testing";
import {
  createResponse,
  getHeader,
  parseSipMessage,
  serializeSipMessage,
  type SipMessage,
  type SipRequest,
} from "../examples/sip/message.ts";
import { CompletedTransactions } from "../examples/sip/completed.ts";
import { type Incoming, resolveTimers } from "../examples/sip/transaction.ts";
import { uas } from "../examples/sip/uas_call.ts";
import { startUas } from "../examples/sip_uas.ts";
import { type CallResult, uacCall } from "../examples/sip/uac_call.ts";

const T1 = 500;
const T2 = 4000;

function request(
  method: string,
  seq = 1,
  cseqMethod = method,
  { branch = `z9hG4bK${method}${seq}`, toTag = "" } = {},
): SipRequest {
  return parseSipMessage(
    `${method} sip:uas@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=${branch}\r\n` +
      `From: <sip:uac@127.0.0.1>;tag=f1\r\nTo: <sip:uas@127.0.0.1>${toTag}\r\nCall-ID: call-1\r\nCSeq: ${seq} ${cseqMethod}\r\n` +
      `Contact: <sip:uac@127.0.0.1:5061>\r\n\r\n`,
  ) as SipRequest;
}

/**
 * A UAS on a virtual clock; `sent` records what it sends, and when,
 * `ended` what it tells onCallEnd.
 */
function uasHarness(
  onSend?: (
    message: SipMessage,
    at: number,
    dispatch: (m: SipMessage) => void,
  ) => void,
  { idleTimeout = 300_000 } = {},
) {
  const clock = new VirtualClock();
  const sent: { at: number; message: SipMessage }[] = [];
  const ended: string[] = [];
  const calls = new Conversations<Incoming, string>({
    key: (incoming) => getHeader(incoming.message, "Call-ID")!,
    handler: uas({
      t1: T1,
      t2: T2,
      clock,
      onCallEnd: (_, outcome) => ended.push(outcome),
    }),
    idleTimeout,
    clock,
  });
  const dispatch = (message: SipMessage) =>
    calls.dispatch({
      message,
      reply: (reply) => {
        sent.push({ at: clock.now(), message: reply });
        onSend?.(reply, clock.now(), dispatch);
      },
    });
  return { clock, calls, sent, dispatch, ended };
}

const label = (message: SipMessage) =>
  message.kind === "response"
    ? `${message.status} ${getHeader(message, "CSeq")}`
    : message.method;

Deno.test("UAS retransmits 200 OK on Timer G (T1 doubling to T2) and sends BYE at Timer H when no ACK comes", async () => {
  const { calls, sent, dispatch } = uasHarness();
  dispatch(request("INVITE"));
  await calls.shutdown({ grace: 120_000 });
  const oks = sent.filter((s) => label(s.message) === "200 1 INVITE").map((s) =>
    s.at / 1000
  );
  assert.deepEqual(oks, [
    0,
    0.5,
    1.5,
    3.5,
    7.5,
    11.5,
    15.5,
    19.5,
    23.5,
    27.5,
    31.5,
  ]);
  const bye = sent.filter((s) => label(s.message) === "BYE");
  assert.equal(bye[0].at, 64 * T1);
  assert.deepEqual(sent.slice(0, 2).map((s) => label(s.message)), [
    "100 1 INVITE",
    "180 1 INVITE",
  ]);
  // The BYE goes to the caller's Contact, in the dialog the 200 OK set up.
  const byeRequest = bye[0].message as SipRequest;
  assert.equal(byeRequest.uri, "sip:uac@127.0.0.1:5061");
  assert.equal(getHeader(byeRequest, "From"), getHeader(sent[2].message, "To"));
});

for (const k of [1, 2, 5, 11]) {
  Deno.test(`UAS stops retransmitting 200 OK once the ACK arrives after send ${k}`, async () => {
    let oks = 0;
    const { calls, sent, dispatch } = uasHarness((message, _, dispatch) => {
      if (label(message) === "200 1 INVITE" && ++oks === k) {
        queueMicrotask(() => {
          dispatch(request("ACK", 1));
          dispatch(request("BYE", 2));
        });
      }
    });
    dispatch(request("INVITE"));
    await calls.shutdown({ grace: 120_000 });
    assert.equal(
      sent.filter((s) => label(s.message) === "200 1 INVITE").length,
      k,
    );
    assert.equal(
      sent.filter((s) => label(s.message) === "200 2 BYE").length,
      1,
    );
    assert.equal(sent.filter((s) => label(s.message) === "BYE").length, 0);
  });
}

Deno.test("UAS answers a retransmitted INVITE with the last response, not a second call", async () => {
  let oks = 0;
  const { calls, sent, dispatch } = uasHarness((message, _, dispatch) => {
    if (label(message) !== "200 1 INVITE") return;
    oks++;
    if (oks === 1) queueMicrotask(() => dispatch(request("INVITE"))); // the caller missed it
    if (oks === 2) queueMicrotask(() => dispatch(request("ACK")));
    if (oks === 3) queueMicrotask(() => dispatch(request("BYE", 2)));
  });
  dispatch(request("INVITE"));
  await calls.shutdown({ grace: 120_000 });
  assert.equal(calls.stats.started, 1);
  // 200 at 0, 200 again at once for the retransmitted INVITE, ACK, then nothing until BYE
  const oksAt = sent.filter((s) => label(s.message) === "200 1 INVITE").map((
    s,
  ) => s.at);
  assert.deepEqual(oksAt, [0, 0]);
  assert.equal(
    sent.filter((s) => label(s.message) === "100 1 INVITE").length,
    1,
  );
});

Deno.test("UAS ignores a duplicate ACK and answers a retransmitted BYE with the same 200", async () => {
  let byes = 0;
  const { calls, sent, dispatch } = uasHarness((message, _, dispatch) => {
    if (label(message) === "200 1 INVITE") {
      queueMicrotask(() => {
        dispatch(request("ACK"));
        dispatch(request("ACK")); // duplicate
        dispatch(request("BYE", 2));
      });
    }
    if (label(message) === "200 2 BYE" && ++byes === 1) {
      queueMicrotask(() => dispatch(request("BYE", 2)));
    }
  });
  dispatch(request("INVITE"));
  // Let the call end first: a retransmitted BYE after it is answered by
  // the UAS's completed transactions, which a shutdown no longer feeds.
  await calls.scheduler.spawn((function* () {
    yield* delay(1000);
  })()).finished;
  await calls.shutdown();
  assert.deepEqual(sent.map((s) => label(s.message)), [
    "100 1 INVITE",
    "180 1 INVITE",
    "200 1 INVITE",
    "200 2 BYE",
    "200 2 BYE",
  ]);
});

/** A caller that ACKs the UAS's first 200 and hangs up at once. */
function ackAndByeAtTheOk(
  message: SipMessage,
  _: number,
  dispatch: (m: SipMessage) => void,
): void {
  if (label(message) !== "200 1 INVITE") return;
  queueMicrotask(() => {
    dispatch(request("ACK"));
    dispatch(request("BYE", 2));
  });
}

Deno.test("UAS ends a call's coroutine once it answers the BYE; a BYE repeated within Timer J gets the same 200, after it a 481", async () => {
  const { calls, sent, dispatch, clock } = uasHarness(ackAndByeAtTheOk);
  dispatch(request("INVITE"));
  let activeAfterBye = -1;
  await calls.scheduler.spawn((function* () {
    yield* delay(1000);
    activeAfterBye = calls.stats.active;
    yield* delay(64 * T1 - 1000 - 1); // just inside Timer J of the BYE at 0
    dispatch(request("BYE", 2));
    yield* delay(2);
    dispatch(request("BYE", 2));
  })()).finished;
  await calls.shutdown();
  assert.equal(activeAfterBye, 0); // nothing held for Timer J
  const byes = sent.filter((s) => label(s.message).endsWith("2 BYE"));
  assert.deepEqual(byes.map((s) => [label(s.message), s.at]), [
    ["200 2 BYE", 0],
    ["200 2 BYE", 64 * T1 - 1],
    ["481 2 BYE", 64 * T1 + 1],
  ]);
  // The same response, byte for byte.
  assert.deepEqual(
    serializeSipMessage(byes[1].message),
    serializeSipMessage(byes[0].message),
  );
  assert.equal(clock.now(), 64 * T1 + 1);
});

Deno.test("UAS absorbs a late copy of a call's INVITE after the call ended (RFC 6026): no answer and no second call, for 64·T1", async () => {
  const { calls, sent, dispatch, ended } = uasHarness(ackAndByeAtTheOk);
  dispatch(request("INVITE"));
  await calls.scheduler.spawn((function* () {
    yield* delay(1000);
    dispatch(request("INVITE")); // the copy, late
    yield* delay(64 * T1 - 1000 - 1);
    dispatch(request("INVITE")); // still within 64·T1 of the call's end
    yield* delay(1);
  })()).finished;
  await calls.shutdown();
  assert.deepEqual(ended, ["completed"]);
  assert.deepEqual(sent.map((s) => [label(s.message), s.at]), [
    ["100 1 INVITE", 0],
    ["180 1 INVITE", 0],
    ["200 1 INVITE", 0],
    ["200 2 BYE", 0],
  ]);
});

Deno.test("a request repeated within Timer J gets the exact bytes of its answer, body and UTF-8 included", () => {
  const clock = new VirtualClock();
  const completed = new CompletedTransactions(resolveTimers({ clock }));
  const options = parseSipMessage(
    "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKopt1\r\n" +
      'From: "Zoë Müller" <sip:z@127.0.0.1>;tag=f1\r\nTo: <sip:uas@127.0.0.1>\r\n' +
      "Call-ID: opt-1\r\nCSeq: 1 OPTIONS\r\n\r\n",
  ) as SipRequest;
  const withBody = createResponse(options, 200, "OK", {
    headers: [["Content-Type", "application/sdp"]],
    body: new Uint8Array([118, 61, 48, 13, 10, 0xff, 0x80]),
  });
  const bye = request("BYE", 2);
  const plain = createResponse(bye, 200, "OK");
  completed.remember(options, withBody);
  completed.remember(bye, plain);
  const replies: SipMessage[] = [];
  const repeat = (message: SipMessage) =>
    completed.absorb({ message, reply: (m) => replies.push(m) });
  assert.equal(repeat(options), true);
  assert.equal(repeat(bye), true);
  assert.equal(repeat(request("BYE", 3)), false); // another transaction
  assert.deepEqual(
    replies.map(serializeSipMessage),
    [serializeSipMessage(withBody), serializeSipMessage(plain)],
  );
});

Deno.test("the completed-transactions table keeps at most maxEntries answers, the oldest going first", () => {
  const clock = new VirtualClock();
  const completed = new CompletedTransactions(resolveTimers({ clock }), 3);
  const byes = [2, 3, 4, 5].map((seq) => request("BYE", seq));
  for (const bye of byes) {
    completed.remember(bye, createResponse(bye, 200, "OK"));
  }
  assert.equal(completed.size, 3);
  const repeat = (message: SipMessage) =>
    completed.absorb({ message, reply: () => {} });
  assert.deepEqual(byes.map(repeat), [false, true, true, true]);
});

Deno.test("UAS answers OPTIONS with 200 and an unknown method with 405", async () => {
  const { calls, sent, dispatch } = uasHarness();
  dispatch(request("OPTIONS"));
  const info = request("INFO");
  info.headers = info.headers.map((
    [n, v],
  ) => [n, n === "Call-ID" ? "call-2" : v]);
  dispatch(info);
  await calls.shutdown({ grace: 120_000 });
  assert.deepEqual(sent.map((s) => label(s.message)).sort(), [
    "200 1 OPTIONS",
    "405 1 INFO",
  ]);
});

Deno.test("UAS: a BYE before the ACK ends the call with 200, and a CANCEL after the 200 gets 200 and changes nothing", async () => {
  const { calls, sent, dispatch } = uasHarness((message, _, dispatch) => {
    if (label(message) === "200 1 INVITE") {
      queueMicrotask(() => {
        dispatch(request("CANCEL", 1));
        dispatch(request("BYE", 2));
      });
    }
  });
  dispatch(request("INVITE"));
  await calls.shutdown({ grace: 120_000 });
  assert.deepEqual(sent.map((s) => label(s.message)), [
    "100 1 INVITE",
    "180 1 INVITE",
    "200 1 INVITE",
    "200 1 CANCEL",
    "200 2 BYE",
  ]);
});

Deno.test("UAS: in a confirmed call, a retransmitted INVITE gets the 200 again, an in-dialog OPTIONS gets 200, an ACK nothing", async () => {
  const { calls, sent, dispatch, clock } = uasHarness(
    (message, _, dispatch) => {
      if (label(message) === "200 1 INVITE" && clock.now() === 0) {
        queueMicrotask(() => dispatch(request("ACK")));
        calls.scheduler.spawn((function* () {
          yield* delay(5000); // long after Timer G would have fired
          dispatch(request("INVITE"));
          dispatch(request("ACK"));
          dispatch(request("OPTIONS", 2));
          dispatch(request("BYE", 3));
        })());
      }
    },
  );
  dispatch(request("INVITE"));
  await calls.shutdown({ grace: 120_000 });
  assert.deepEqual(sent.map((s) => `${s.at} ${label(s.message)}`), [
    "0 100 1 INVITE",
    "0 180 1 INVITE",
    "0 200 1 INVITE",
    "5000 200 1 INVITE",
    "5000 200 2 OPTIONS",
    "5000 200 3 BYE",
  ]);
});

Deno.test("UAS: while its BYE at Timer H is in flight, a late INVITE still gets the 200 and a crossing BYE gets 200", async () => {
  const { calls, sent, dispatch } = uasHarness((message, _, dispatch) => {
    if (label(message) === "BYE") {
      queueMicrotask(() => {
        dispatch(request("INVITE"));
        dispatch(request("BYE", 2));
      });
    }
  });
  dispatch(request("INVITE"));
  await calls.shutdown({ grace: 120_000 });
  const afterBye = sent.slice(sent.findIndex((s) => label(s.message) === "BYE"))
    .map((s) => `${s.at} ${label(s.message)}`);
  assert.deepEqual(afterBye.slice(0, 3), [
    `${64 * T1} BYE`,
    `${64 * T1} 200 1 INVITE`,
    `${64 * T1} 200 2 BYE`,
  ]);
});

Deno.test("UAS answers nothing to a stray response or to an ACK of no call, and their conversations end at once", async () => {
  const { calls, sent, dispatch } = uasHarness();
  dispatch(parseSipMessage(
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n" +
      "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>;tag=2\r\n" +
      "Call-ID: stray\r\nCSeq: 1 INVITE\r\n\r\n",
  ));
  dispatch(request("ACK"));
  await calls.scheduler.spawn((function* () {
    yield* delay(1); // on the virtual clock: every conversation has run
  })()).finished;
  assert.equal(calls.size, 0);
  await calls.shutdown();
  assert.deepEqual(sent, []);
  assert.deepEqual([calls.stats.started, calls.stats.failed], [2, 0]);
});

Deno.test("UAS answers a re-INVITE in a confirmed call with 488 to its own CSeq, and the call goes on to its BYE", async () => {
  const inDialog = { toTag: ";tag=x" };
  const { calls, sent, dispatch, clock, ended } = uasHarness(
    (message, _, dispatch) => {
      if (label(message) === "200 1 INVITE" && clock.now() === 0) {
        queueMicrotask(() => dispatch(request("ACK")));
        calls.scheduler.spawn((function* () {
          yield* delay(5000);
          dispatch(request("INVITE", 2, "INVITE", inDialog));
          dispatch(request("INVITE", 2, "INVITE", inDialog)); // retransmitted
          dispatch(request("ACK", 2, "ACK", inDialog));
          yield* delay(100);
          dispatch(request("BYE", 3, "BYE", inDialog));
        })());
      }
    },
  );
  dispatch(request("INVITE"));
  await calls.shutdown({ grace: 120_000 });
  assert.deepEqual(sent.slice(3).map((s) => `${s.at} ${label(s.message)}`), [
    "5000 488 2 INVITE",
    "5000 488 2 INVITE",
    "5100 200 3 BYE",
  ]);
  assert.match(getHeader(sent[3].message, "Warning")!, /^399 /);
  assert.deepEqual(ended, ["completed"]);
});

Deno.test("UAS answers an INFO in a confirmed call with 405 and Allow, and the same INFO after the call ended with the same 405 (Timer J)", async () => {
  const inDialog = { toTag: ";tag=x" };
  const { calls, sent, dispatch, clock } = uasHarness(
    (message, _, dispatch) => {
      if (label(message) === "200 1 INVITE" && clock.now() === 0) {
        queueMicrotask(() => dispatch(request("ACK")));
        calls.scheduler.spawn((function* () {
          yield* delay(1000);
          dispatch(request("INFO", 2, "INFO", inDialog));
          dispatch(request("BYE", 3, "BYE", inDialog));
          yield* delay(1000);
          dispatch(request("INFO", 2, "INFO", inDialog)); // its 405 was lost
        })());
      }
    },
  );
  dispatch(request("INVITE"));
  await calls.scheduler.spawn((function* () {
    yield* delay(3000);
  })()).finished;
  await calls.shutdown();
  assert.deepEqual(sent.slice(3).map((s) => `${s.at} ${label(s.message)}`), [
    "1000 405 2 INFO",
    "1000 200 3 BYE",
    "2000 405 2 INFO",
  ]);
  assert.equal(
    getHeader(sent[3].message, "Allow"),
    getHeader(sent[5].message, "Allow"),
  );
  assert.match(getHeader(sent[3].message, "Allow")!, /INVITE/);
});

Deno.test("UAS answers a CANCEL of its INVITE after the ACK with 200 within 64·T1 of the 200 OK, 481 after it, and the call goes on", async () => {
  const { calls, sent, dispatch, clock, ended } = uasHarness(
    (message, _, dispatch) => {
      if (label(message) === "200 1 INVITE" && clock.now() === 0) {
        queueMicrotask(() => dispatch(request("ACK")));
        calls.scheduler.spawn((function* () {
          yield* delay(10);
          dispatch(
            request("CANCEL", 1, "CANCEL", { branch: "z9hG4bKINVITE1" }),
          );
          yield* delay(64 * T1 - 10);
          dispatch(request("CANCEL", 1, "CANCEL", { branch: "z9hG4bKlate" }));
          dispatch(request("BYE", 2, "BYE", { toTag: ";tag=x" }));
        })());
      }
    },
  );
  dispatch(request("INVITE"));
  await calls.shutdown({ grace: 120_000 });
  assert.deepEqual(sent.slice(3).map((s) => `${s.at} ${label(s.message)}`), [
    "10 200 1 CANCEL",
    `${64 * T1} 481 1 CANCEL`,
    `${64 * T1} 200 2 BYE`,
  ]);
  assert.deepEqual(ended, ["completed"]);
});

Deno.test("UAS answers an INVITE with a To tag of no call with 481, and starts no call", async () => {
  const { calls, sent, dispatch, ended } = uasHarness();
  dispatch(request("INVITE", 5, "INVITE", { toTag: ";tag=gone" }));
  await calls.scheduler.spawn((function* () {
    yield* delay(64 * T1);
  })()).finished;
  await calls.shutdown();
  assert.deepEqual(sent.map((s) => `${s.at} ${label(s.message)}`), [
    "0 481 5 INVITE",
  ]);
  assert.deepEqual(ended, []);
});

Deno.test("UAS tells onCallEnd of a call that ends without a BYE (cut by the transport's idleTimeout) as cancelled", async () => {
  const { calls, dispatch, clock, ended } = uasHarness(
    (message, _, dispatch) => {
      if (label(message) === "200 1 INVITE" && clock.now() === 0) {
        queueMicrotask(() => dispatch(request("ACK")));
      }
    },
    { idleTimeout: 60_000 },
  );
  dispatch(request("INVITE"));
  await calls.scheduler.spawn((function* () {
    yield* delay(61_000);
  })()).finished;
  const expired = calls.stats.expired;
  await calls.shutdown();
  assert.deepEqual([expired, ended], [1, ["cancelled"]]);
});

/**
 * A UAC call on a virtual clock; `respond` plays the server (what it sends
 * may be requests too), and `replies` records what the UAC answers them.
 */
async function uacHarness(
  respond: (message: SipRequest, at: number) => SipMessage[],
  { holdTime = 0, isReliable = false } = {},
) {
  const clock = new VirtualClock();
  const calls = new Conversations<Incoming, string>({
    key: (i) => getHeader(i.message, "Call-ID")!,
    clock,
  });
  const sent: { at: number; message: SipRequest }[] = [];
  const replies: SipMessage[] = [];
  const told: { at: number; outcome: string }[] = [];
  const send = (message: SipMessage) => {
    sent.push({ at: clock.now(), message: message as SipRequest });
    for (const reply of respond(message as SipRequest, clock.now())) {
      queueMicrotask(() =>
        calls.dispatch({
          message: reply,
          reply: (answer) => replies.push(answer),
        })
      );
    }
  };
  const task = calls.start(
    "call-1",
    (inbox) =>
      uacCall(inbox, {
        callId: "call-1",
        send,
        target: "127.0.0.1:5060",
        hostport: "127.0.0.1:5061",
        t1: T1,
        t2: T2,
        holdTime,
        isReliable,
        clock,
        onResult: ({ outcome }) => told.push({ at: clock.now(), outcome }),
      }),
  );
  const result = await task.finished;
  await calls.shutdown();
  return { result: result as CallResult, sent, replies, told, clock };
}

function responseTo(
  request: SipRequest,
  status: number,
  reason: string,
): SipMessage {
  const text = `SIP/2.0 ${status} ${reason}\r\n` +
    request.headers.filter(([n]) =>
      ["Via", "From", "To", "Call-ID", "CSeq"].includes(n)
    )
      .map(([n, v]) => `${n}: ${n === "To" ? v + ";tag=t1" : v}\r\n`).join("") +
    "Contact: <sip:uas@127.0.0.1:5060>\r\n\r\n";
  return parseSipMessage(text);
}

Deno.test("UAC retransmits INVITE on Timer A (T1 doubling, uncapped) and gives up at Timer B", async () => {
  const { result, sent } = await uacHarness(() => []);
  assert.deepEqual(sent.map((s) => s.at / 1000), [
    0,
    0.5,
    1.5,
    3.5,
    7.5,
    15.5,
    31.5,
  ]);
  assert.equal(result.isCompleted, false);
  assert.match(result.outcome, /Timer B/);
  assert.equal(result.setupTime, 64 * T1);
});

Deno.test("UAC stops Timer A at a provisional response and then waits on Timer C", async () => {
  let invites = 0;
  const { result, sent } = await uacHarness((message) => {
    if (message.method === "INVITE" && ++invites === 3) {
      return [responseTo(message, 180, "Ringing")];
    }
    return [];
  });
  // INVITE at 0, 0.5, 1.5; 180 stops Timer A; no 200 ever: Timer C, not B.
  assert.equal(sent.filter((s) => s.message.method === "INVITE").length, 3);
  assert.match(result.outcome, /Timer B/);
  assert.equal(result.setupTime, 1500 + 180_000);
});

Deno.test("UAC completes a call: INVITE, 200, ACK, BYE, 200", async () => {
  const { result, sent } = await uacHarness((message) => {
    if (message.method === "INVITE") {
      return [
        responseTo(message, 100, "Trying"),
        responseTo(message, 200, "OK"),
      ];
    }
    if (message.method === "BYE") return [responseTo(message, 200, "OK")];
    return [];
  });
  assert.equal(result.isCompleted, true);
  assert.deepEqual(sent.map((s) => s.message.method), ["INVITE", "ACK", "BYE"]);
  assert.equal(sent[2].message.uri, "sip:uas@127.0.0.1:5060");
  assert.match(getHeader(sent[1].message, "To")!, /tag=t1/);
});

const methods = (sent: { message: SipRequest }[]) =>
  sent.map((s) => `${s.message.method} ${getHeader(s.message, "CSeq")}`);

Deno.test("UAC ACKs a non-2xx final response within the INVITE's transaction (same Via, same URI) and reports it", async () => {
  const { result, sent } = await uacHarness((message) =>
    message.method === "INVITE" ? [responseTo(message, 486, "Busy Here")] : []
  );
  assert.equal(result.isCompleted, false);
  assert.equal(result.outcome, "INVITE got 486 Busy Here");
  assert.deepEqual(methods(sent), ["INVITE 1 INVITE", "ACK 1 ACK"]);
  const [invite, ack] = sent.map((s) => s.message);
  assert.equal(getHeader(ack, "Via"), getHeader(invite, "Via"));
  assert.equal(ack.uri, invite.uri);
  assert.match(getHeader(ack, "To")!, /tag=t1/);
});

Deno.test("UAC ACKs every retransmission of the 200 OK while the call holds", async () => {
  let acks = 0;
  let invite: SipRequest | undefined;
  const { result, sent } = await uacHarness((message) => {
    if (message.method === "INVITE") {
      invite = message;
      return [responseTo(message, 200, "OK")];
    }
    // The first two ACKs "lost": the server retransmits its 200.
    if (message.method === "ACK" && ++acks <= 2) {
      return [responseTo(invite!, 200, "OK")];
    }
    if (message.method === "BYE") return [responseTo(message, 200, "OK")];
    return [];
  }, { holdTime: 1000 });
  assert.equal(result.isCompleted, true);
  assert.deepEqual(methods(sent), [
    "INVITE 1 INVITE",
    "ACK 1 ACK",
    "ACK 1 ACK",
    "ACK 1 ACK",
    "BYE 2 BYE",
  ]);
  // The hold runs out on time: the re-ACKs did not restart it.
  assert.equal(sent[4].at, 1000);
});

Deno.test("UAC answers a BYE from the server during the call with 200 and ends the call", async () => {
  const { result, sent, replies } = await uacHarness((message) => {
    if (message.method === "INVITE") return [responseTo(message, 200, "OK")];
    if (message.method === "ACK") {
      return [
        parseSipMessage(
          "BYE sip:uac@127.0.0.1:5061 SIP/2.0\r\n" +
            "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbye1\r\n" +
            `From: ${getHeader(message, "To")}\r\n` +
            `To: ${getHeader(message, "From")}\r\n` +
            "Call-ID: call-1\r\nCSeq: 1 BYE\r\n\r\n",
        ),
      ];
    }
    return [];
  }, { holdTime: 60_000 });
  assert.equal(result.isCompleted, true);
  assert.equal(result.outcome, "completed (the server hung up)");
  assert.deepEqual(methods(sent), ["INVITE 1 INVITE", "ACK 1 ACK"]);
  assert.deepEqual(replies.map(label), ["200 1 BYE"]);
});

Deno.test("UAC retransmits an unanswered BYE on Timer E and gives up at Timer F; a BYE refused is a failed call", async () => {
  const unanswered = await uacHarness((message) =>
    message.method === "INVITE" ? [responseTo(message, 200, "OK")] : []
  );
  assert.equal(unanswered.result.isCompleted, false);
  assert.equal(unanswered.result.outcome, "BYE timed out (Timer F)");
  const byes = unanswered.sent.filter((s) => s.message.method === "BYE");
  // Timer E: T1 doubling, capped at T2; Timer F at 64·T1.
  assert.deepEqual(byes.map((s) => s.at), [
    0,
    500,
    1500,
    3500,
    7500,
    11_500,
    15_500,
    19_500,
    23_500,
    27_500,
    31_500,
  ]);
  assert.equal(unanswered.clock.now(), 64 * T1);
  const refused = await uacHarness((message) =>
    message.method === "INVITE"
      ? [responseTo(message, 200, "OK")]
      : message.method === "BYE"
      ? [responseTo(message, 481, "Call/Transaction Does Not Exist")]
      : []
  );
  assert.equal(refused.result.isCompleted, false);
  assert.equal(
    refused.result.outcome,
    "BYE got 481 Call/Transaction Does Not Exist",
  );
});

Deno.test("UAC: a BYE answered 100 Trying is retransmitted every T2 from its next Timer E on (§17.1.2.2), until Timer F", async () => {
  let byes = 0;
  const { result, sent } = await uacHarness((message) =>
    message.method === "INVITE"
      ? [responseTo(message, 200, "OK")]
      : message.method === "BYE" && ++byes === 1
      ? [responseTo(message, 100, "Trying")]
      : []
  );
  assert.equal(result.outcome, "BYE timed out (Timer F)");
  // Without the 100: 0, 500, 1500, 3500, then every T2 (see Timer E above).
  assert.deepEqual(
    sent.filter((s) => s.message.method === "BYE").map((s) => s.at),
    [0, 500, 4500, 8500, 12_500, 16_500, 20_500, 24_500, 28_500],
  );
});

Deno.test("UAC answers the server's BYE that crosses its own with 200, and the call completes", async () => {
  const { result, replies } = await uacHarness((message) => {
    if (message.method === "INVITE") return [responseTo(message, 200, "OK")];
    if (message.method !== "BYE") return [];
    const serverBye = parseSipMessage(
      "BYE sip:uac@127.0.0.1:5061 SIP/2.0\r\n" +
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbye1\r\n" +
        `From: ${getHeader(message, "To")}\r\n` +
        `To: ${getHeader(message, "From")}\r\n` +
        "Call-ID: call-1\r\nCSeq: 1 BYE\r\n\r\n",
    );
    return [serverBye, responseTo(message, 200, "OK")];
  }, { holdTime: 1000 });
  assert.equal(result.outcome, "completed");
  assert.deepEqual(replies.map(label), ["200 1 BYE"]);
});

Deno.test("UAC ACKs each retransmission of a non-2xx final response until Timer D (32 s over UDP, none over TCP), and tells its result at once", async () => {
  for (const isReliable of [false, true]) {
    let acks = 0;
    let invite: SipRequest | undefined;
    const { result, sent, told, clock } = await uacHarness((message) => {
      if (message.method === "INVITE") invite = message;
      // The first ACK "lost": the server sends its 486 again.
      if (message.method === "INVITE" || ++acks === 1) {
        return [responseTo(invite!, 486, "Busy Here")];
      }
      return [];
    }, { isReliable });
    assert.equal(result.outcome, "INVITE got 486 Busy Here");
    assert.deepEqual(told, [{ at: 0, outcome: result.outcome }]);
    assert.equal(clock.now(), isReliable ? 0 : 32_000);
    const ackBytes = sent.filter((s) => s.message.method === "ACK").map((s) =>
      new TextDecoder().decode(serializeSipMessage(s.message))
    );
    assert.equal(ackBytes.length, isReliable ? 1 : 2);
    assert.equal(new Set(ackBytes).size, 1); // the same ACK again
  }
});

Deno.test("resolveTimers() refuses a T1 that is not positive, or a T2 under T1", () => {
  for (
    const timers of [{ t1: 0 }, { t1: -5 }, { t1: NaN }, { t1: 500, t2: 400 }]
  ) {
    assert.throws(() => resolveTimers(timers), {
      name: "RangeError",
      message: /^Cannot use SIP timers: need 0 < t1 <= t2, got t1=/,
    });
  }
  assert.deepEqual(
    (({ t1, t2, isReliable }) => [t1, t2, isReliable])(resolveTimers()),
    [500, 4000, false],
  );
});

Deno.test("sip_uas over UDP: shutdown(grace) answers a new INVITE during the grace with 503", async () => {
  const uas = startUas({ hostname: "127.0.0.1", port: 0 });
  const socket = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const to = {
    transport: "udp" as const,
    hostname: "127.0.0.1",
    port: uas.addr.port,
  };
  const encoder = new TextEncoder();
  const statusOf = async (callId: string) => {
    for (;;) {
      const [data] = await socket.receive();
      const message = parseSipMessage(data);
      if (getHeader(message, "Call-ID") === callId) return label(message);
    }
  };
  const sendInvite = (callId: string) => {
    const wire = new TextDecoder().decode(
      serializeSipMessage(request("INVITE")),
    )
      .replace("Call-ID: call-1", `Call-ID: ${callId}`)
      .replace(
        "127.0.0.1:5061",
        `127.0.0.1:${(socket.addr as Deno.NetAddr).port}`,
      );
    return socket.send(encoder.encode(wire), to);
  };
  let stopped: Promise<void> | undefined;
  // No answer within 5 s fails the test instead of hanging it.
  const guard = setTimeout(() => socket.close(), 5000);
  try {
    await sendInvite("c1"); // a call in progress, so the grace has work
    assert.equal(await statusOf("c1"), "100 1 INVITE");
    stopped = uas.shutdown(200);
    await sendInvite("c2");
    assert.equal(await statusOf("c2"), "503 1 INVITE");
  } finally {
    clearTimeout(guard);
    await (stopped ?? uas.shutdown(0));
    try {
      socket.close();
    } catch {
      // closed by the guard
    }
  }
});

Deno.test("UAS during shutdown's grace: a BYE repeated within Timer J gets its 200 again, a late INVITE copy nothing, a request of a dialog that is gone 481, a new call 503", async () => {
  const clock = new VirtualClock();
  const sent: string[] = [];
  const handler = uas({ t1: T1, t2: T2, clock });
  const reply = (reply: SipMessage) =>
    sent.push(`${label(reply)} ${getHeader(reply, "Call-ID")}`);
  const calls: Conversations<Incoming, string> = new Conversations({
    key: (incoming) => getHeader(incoming.message, "Call-ID")!,
    handler,
    onRefuse: (incoming, _, reason) => handler.refuse(incoming, reason),
    clock,
  });
  const withCallId = (message: SipRequest, callId: string) =>
    parseSipMessage(
      new TextDecoder().decode(serializeSipMessage(message)).replace(
        "Call-ID: call-1",
        `Call-ID: ${callId}`,
      ),
    );
  const dispatch = (message: SipMessage) => calls.dispatch({ message, reply });
  dispatch(request("INVITE")); // call-1: it ends at once
  dispatch(request("ACK"));
  dispatch(request("BYE", 2));
  dispatch(withCallId(request("INVITE"), "call-2")); // keeps the grace busy
  await calls.scheduler.spawn((function* () {
    yield* delay(100);
  })()).finished;
  const stopping = calls.shutdown({ grace: 1000 });
  sent.length = 0;
  dispatch(request("BYE", 2)); // its 200 was lost
  dispatch(request("INVITE")); // a late copy
  dispatch(request("INFO", 3, "INFO", { toTag: ";tag=gone" }));
  dispatch(
    withCallId(
      request("INVITE", 1, "INVITE", { branch: "z9hG4bK3" }),
      "call-3",
    ),
  );
  await stopping;
  assert.deepEqual(sent.filter((line) => !line.endsWith("call-2")), [
    "200 2 BYE call-1",
    "481 3 INFO call-1",
    "503 1 INVITE call-3",
  ]);
});

Deno.test("UAS refuse(): what no running call takes gets 481 when its transaction or dialog is gone (CANCEL, a To tag), 503 for a new call or an overflow, nothing for an ACK", () => {
  const handler = uas({ t1: T1, t2: T2, clock: new VirtualClock() });
  const statusOf = (
    message: SipRequest,
    reason: "refused" | "overflow" | "closed",
  ) => {
    const replies: SipMessage[] = [];
    handler.refuse({ message, reply: (m) => replies.push(m) }, reason);
    return replies.map(label).join();
  };
  const inDialog = { toTag: ";tag=gone" };
  assert.equal(statusOf(request("CANCEL"), "closed"), "481 1 CANCEL");
  assert.equal(
    statusOf(request("BYE", 2, "BYE", inDialog), "refused"),
    "481 2 BYE",
  );
  assert.equal(
    statusOf(request("BYE", 2, "BYE", inDialog), "closed"),
    "481 2 BYE",
  );
  assert.equal(statusOf(request("INVITE"), "closed"), "503 1 INVITE");
  assert.equal(statusOf(request("INVITE"), "refused"), "503 1 INVITE");
  assert.equal(
    statusOf(request("BYE", 2, "BYE", inDialog), "overflow"),
    "503 2 BYE",
  );
  assert.equal(statusOf(request("ACK", 1, "ACK", inDialog), "closed"), "");
});
