// examples/sip_uac.ts's placeCalls over a real UDP socket, on a virtual
// clock that moves only when a test advances it, against a fake server in
// the test. (The socket's reader keeps the clock's whenIdle() pending: a
// test advances it once what it waits for has reached the server.)
import assert from "node:assert/strict";
import { VirtualClock } from "@corio/corio/testing";
import {
  getHeader,
  parseSipMessage,
  serializeSipMessage,
  type SipMessage,
  type SipRequest,
} from "../examples/sip/message.ts";
import type { CallResult } from "../examples/sip/uac_call.ts";
import { placeCalls } from "../examples/sip_uac.ts";

/**
 * A SIP server on 127.0.0.1 that answers each request with what `respond`
 * returns; `received` lists what it got ("INVITE call-id", ...).
 */
function fakeServer(respond: (request: SipRequest) => SipMessage[]) {
  const socket = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const received: string[] = [];
  const serving = (async () => {
    for await (const [data, from] of socket) {
      const request = parseSipMessage(data) as SipRequest;
      received.push(`${request.method} ${getHeader(request, "Call-ID")}`);
      for (const message of respond(request)) {
        await socket.send(serializeSipMessage(message), from);
      }
    }
  })().catch(() => {}); // the socket closed
  return {
    target: `127.0.0.1:${(socket.addr as Deno.NetAddr).port}`,
    received,
    close: async () => {
      socket.close();
      await serving;
    },
  };
}

function responseTo(request: SipRequest, status: number, reason: string) {
  return parseSipMessage(
    `SIP/2.0 ${status} ${reason}\r\n` +
      request.headers.filter(([n]) =>
        ["Via", "From", "To", "Call-ID", "CSeq"].includes(n)
      ).map(([n, v]) =>
        `${n}: ${n === "To" && !v.includes("tag=") ? v + ";tag=t1" : v}\r\n`
      ).join("") +
      "Contact: <sip:uas@127.0.0.1:5060>\r\n\r\n",
  );
}

/** Waits (real time, at most 5 s) until `isTrue()`. */
async function until(isTrue: () => boolean, what: string): Promise<void> {
  for (const start = Date.now(); !isTrue();) {
    if (Date.now() - start > 5000) throw new Error(`No ${what} within 5 s`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** `promise`'s value, or an error if it takes more than 5 s of real time. */
async function within5s<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not done`)), 5000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("placeCalls() completes a call held for 6 minutes, past Conversations' default idleTimeout of 5", async () => {
  const server = fakeServer((request) =>
    request.method === "ACK" ? [] : [responseTo(request, 200, "OK")]
  );
  const clock = new VirtualClock({ autojump: false });
  try {
    const placing = placeCalls({
      target: server.target,
      holdTime: 360_000,
      clock,
    });
    // INVITE, ACK: the call's hold began before its ACK went out.
    await until(() => server.received.length === 2, "ACK");
    clock.advance(360_000); // the hold ends: BYE
    const results = await within5s(placing, "placeCalls");
    assert.deepEqual(
      results.map((result) => result.outcome),
      ["completed"],
    );
    assert.deepEqual(server.received.map((line) => line.split(" ")[0]), [
      "INVITE",
      "ACK",
      "BYE",
    ]);
  } finally {
    clock.advance(3_600_000); // what still waits on the clock after a failure
    await server.close();
  }
});

Deno.test("placeCalls() ACKs each retransmitted 486 during Timer D, yet reports the calls and returns without waiting Timer D out", async () => {
  const acks = new Map<string, number>();
  const busy = new Map<string, SipMessage>(); // by Call-ID
  const server = fakeServer((request) => {
    const callId = getHeader(request, "Call-ID")!;
    if (request.method === "INVITE") {
      busy.set(callId, responseTo(request, 486, "Busy Here"));
      return [busy.get(callId)!];
    }
    // The first ACK "lost": the server sends its 486 again.
    const count = acks.set(callId, (acks.get(callId) ?? 0) + 1).get(callId);
    return count === 1 ? [busy.get(callId)!] : [];
  });
  const clock = new VirtualClock({ autojump: false });
  const told: [number, number, string][] = [];
  try {
    const placing = placeCalls({
      target: server.target,
      calls: 2,
      rate: 10, // the second call 100 ms after the first
      clock,
      onResult: (index: number, result: CallResult) =>
        told.push([index, clock.now(), result.outcome]),
    });
    await until(() => [...acks.values()][0] === 2, "second ACK of call 1");
    clock.advance(100);
    const results = await within5s(placing, "placeCalls");
    assert.equal(clock.now(), 100); // not 100 + Timer D
    assert.deepEqual(told, [
      [0, 0, "INVITE got 486 Busy Here"],
      [1, 100, "INVITE got 486 Busy Here"],
    ]);
    assert.deepEqual(results.map((result) => result.isCompleted), [
      false,
      false,
    ]);
  } finally {
    clock.advance(3_600_000);
    await server.close();
  }
});
