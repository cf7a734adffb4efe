// SIP over a byte stream (examples/sip/tcp.ts): Content-Length framing
// (RFC 3261 §18.3), on memory connections.
import assert from "node:assert/strict";
import { connect, type Connection, run, wait } from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
import {
  getHeader,
  type SipLimits,
  type SipMessage,
} from "../examples/sip/message.ts";
import { recvSipMessage, SipFramingError } from "../examples/sip/tcp.ts";
import { startUas } from "../examples/sip_uas.ts";

const HEAD = "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\n" +
  "Via: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK1\r\n" +
  "From: <sip:uac@127.0.0.1>;tag=f1\r\nTo: <sip:uas@127.0.0.1>\r\n" +
  "Call-ID: c1\r\nCSeq: 1 OPTIONS\r\n";

/**
 * Writes `chunks` into one end of a memory pair (then ends it) and receives
 * SIP messages on the other until end of stream or an error: the Call-ID
 * and body of each message, then "end" or the framing error's reason.
 */
async function receiveAll(
  chunks: string[],
  limits?: SipLimits,
): Promise<string[]> {
  const [client, server] = memoryConnPair();
  try {
    return await run((async function* () {
      for (const chunk of chunks) yield* client.send(chunk);
      yield* client.closeWrite();
      return yield* collect(server, limits);
    })());
  } finally {
    client.close();
    server.close();
  }
}

async function* collect(conn: Connection, limits?: SipLimits) {
  const out: string[] = [];
  for (;;) {
    try {
      const message = yield* recvSipMessage(conn, limits);
      if (message === null) return [...out, "end"];
      const body = new TextDecoder().decode(message.body);
      out.push(`${getHeader(message, "Call-ID")} ${JSON.stringify(body)}`);
    } catch (error) {
      if (!(error instanceof SipFramingError)) throw error;
      assert.equal(error.isFramingLost, true);
      return [...out, `framing lost: ${error.reason}`];
    }
  }
}

Deno.test("recvSipMessage() frames messages on a stream by Content-Length, across any chunking, skipping keep-alive CRLFs", async () => {
  const first = `${HEAD}Content-Length: 5\r\n\r\nhello`;
  const second = `\r\n\r\n${HEAD.replace("c1", "c2")}Content-Length: 0\r\n\r\n`;
  const stream = first + second;
  for (const size of [stream.length, 7, 1]) {
    const chunks = [];
    for (let i = 0; i < stream.length; i += size) {
      chunks.push(stream.slice(i, i + size));
    }
    assert.deepEqual(await receiveAll(chunks), [
      'c1 "hello"',
      'c2 ""',
      "end",
    ]);
  }
});

Deno.test("recvSipMessage() loses framing, and says why, where a stream cannot be delimited", async () => {
  const cases: [string, string[], SipLimits?][] = [
    ["missing Content-Length on a stream transport", [`${HEAD}\r\n`]],
    ["bad Content-Length: -1", [`${HEAD}Content-Length: -1\r\n\r\n`]],
    ["stream ended inside the headers", [HEAD]],
    [
      "line exceeds maxLineLength of 40 bytes",
      [`${HEAD}Content-Length: 0\r\n\r\n`],
      { maxLineLength: 40 },
    ],
    [
      "headers exceed maxHeaders of 2 or maxMessageSize of 65535",
      [`${HEAD}Content-Length: 0\r\n\r\n`],
      { maxHeaders: 2 },
    ],
    [
      "message exceeds maxMessageSize of 300 bytes",
      [`${HEAD}Content-Length: 200\r\n\r\n${"x".repeat(200)}`],
      { maxMessageSize: 300 },
    ],
  ];
  for (const [reason, chunks, limits] of cases) {
    assert.deepEqual(await receiveAll(chunks, limits), [
      `framing lost: ${reason}`,
    ]);
  }
});

const invite = (call: string) =>
  `INVITE sip:uas@127.0.0.1 SIP/2.0\r\n` +
  `Via: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK${call}\r\n` +
  `From: <sip:uac@127.0.0.1>;tag=f1\r\nTo: <sip:uas@127.0.0.1>\r\n` +
  `Call-ID: ${call}\r\nCSeq: 1 INVITE\r\n` +
  `Contact: <sip:uac@127.0.0.1:5061>\r\nContent-Length: 0\r\n\r\n`;

function describe(message: SipMessage | null): string {
  if (message === null) return "closed";
  if (message.kind === "request") return message.method;
  const retryAfter = getHeader(message, "Retry-After");
  const why = /^Bad Request \((.*)\)$/.exec(message.reason)?.[1];
  return `${message.status} ${getHeader(message, "Call-ID")}` +
    (retryAfter === undefined ? "" : ` Retry-After ${retryAfter}`) +
    (why === undefined ? "" : ` ${why}`);
}

Deno.test("sip_uas over TCP: 400 to a malformed message and the stream goes on, 503 at the call cap, 400 and close once framing is lost", async () => {
  const uas = startUas({
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 0,
    maxCalls: 1,
  });
  try {
    const seen = await run((async function* () {
      const conn = yield* connect({
        hostname: "127.0.0.1",
        port: uas.addr.port,
        timeout: 5000,
      });
      conn.recvTimeout = 5000;
      try {
        const out: string[] = [];
        yield* conn.send("NONSENSE\r\nContent-Length: 0\r\n\r\n"); // no Via: unanswerable
        const badVersion = HEAD.replace("SIP/2.0\r\n", "SIP/3.0\r\n");
        yield* conn.send(`${badVersion}Content-Length: 0\r\n\r\n`);
        out.push(describe(yield* recvSipMessage(conn)));
        yield* conn.send(invite("c1"));
        for (let status = ""; !status.startsWith("200");) {
          out.push(status = describe(yield* recvSipMessage(conn)));
        }
        yield* conn.send(invite("c2"));
        out.push(describe(yield* recvSipMessage(conn)));
        yield* conn.send(`${HEAD.replace("c1", "c3")}\r\n`); // no Content-Length
        out.push(describe(yield* recvSipMessage(conn)));
        out.push(describe(yield* recvSipMessage(conn)));
        return out;
      } finally {
        conn.close();
      }
    })());
    assert.deepEqual(seen, [
      '400 c1 bad SIP version: "SIP/3.0"',
      "100 c1",
      "180 c1",
      "200 c1",
      "503 c2 Retry-After 5",
      "400 c3 missing Content-Length on a stream transport",
      "closed",
    ]);
  } finally {
    await uas.shutdown(0);
  }
});

Deno.test("sip_uas over TCP: a client gone in the middle of a message's body or headers is no error worth printing, and the server answers on", async () => {
  const printed: unknown[] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void printed.push(args);
  const uas = startUas({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
  try {
    const withBody = `${HEAD}Content-Length: 10\r\n\r\n01234`; // 5 of 10
    const headersOnly = HEAD.slice(0, 60);
    const seen = await run((async function* () {
      for (const partial of [withBody, headersOnly]) {
        const conn = yield* connect({ port: uas.addr.port, timeout: 5000 });
        yield* conn.send(partial);
        yield* conn.closeWrite();
        yield* conn.recv({ timeout: 5000 }); // the server closes: null
        conn.close();
      }
      const conn = yield* connect({ port: uas.addr.port, timeout: 5000 });
      conn.recvTimeout = 5000;
      yield* conn.send(`${HEAD}Content-Length: 0\r\n\r\n`);
      return describe(yield* recvSipMessage(conn));
    })());
    assert.equal(seen, "200 c1");
  } finally {
    await uas.shutdown(0);
    console.error = consoleError;
  }
  assert.deepEqual(printed, []);
});

Deno.test("sip_uas over TCP answers every pipelined request sent before the client's half-close, then closes", async () => {
  const uas = startUas({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
  try {
    const count = 2000;
    const requests = Array.from(
      { length: count },
      (_, i) =>
        HEAD.replace("Call-ID: c1", `Call-ID: p${i}`) +
        "Content-Length: 0\r\n\r\n",
    ).join("");
    const answered = await run((async function* () {
      const conn = yield* connect({ port: uas.addr.port, timeout: 5000 });
      conn.recvTimeout = 5000;
      yield* conn.send(requests);
      yield* conn.closeWrite();
      let ok = 0;
      for (let m; (m = yield* recvSipMessage(conn)) !== null;) {
        if (m.kind === "response" && m.status === 200) ok++;
      }
      return ok;
    })());
    assert.equal(answered, count);
  } finally {
    await uas.shutdown(0);
  }
});

/**
 * Where the UAS tests' virtual clocks start: far from the system clock's
 * time, so that a server that read its calls' timers on one clock and
 * waited on the other would wait for days (and fail the test) rather than
 * spin.
 */
const FAR = 1e9;

/** A TCP UAS on 127.0.0.1 whose calls and server run on a clock at FAR. */
function tcpUasOnFarClock() {
  const clock = new VirtualClock({ start: FAR, autojump: false });
  const uas = startUas({
    transport: "tcp",
    hostname: "127.0.0.1",
    port: 0,
    clock,
  });
  return { clock, uas };
}

Deno.test("sip_uas over TCP: shutdown(grace) answers a new INVITE during the grace with 503 on the open connection, and ends after the grace, not twice it", async () => {
  const { clock, uas } = tcpUasOnFarClock();
  let stopped: Promise<void> | undefined;
  try {
    const seen = await run((async function* () {
      const conn = yield* connect({ port: uas.addr.port, timeout: 5000 });
      conn.recvTimeout = 5000;
      try {
        const out: string[] = [];
        yield* conn.send(invite("c1"));
        for (let status = ""; !status.startsWith("200");) {
          out.push(status = describe(yield* recvSipMessage(conn)));
        }
        stopped = uas.shutdown(500);
        yield* conn.send(invite("c2"));
        out.push(describe(yield* recvSipMessage(conn)));
        // The grace's deadlines are armed by now: the 503 came after them.
        clock.advance(500);
        for (let status = ""; status !== "closed";) { // until the server closes it
          out.push(status = describe(yield* recvSipMessage(conn)));
        }
        yield* wait(stopped, { timeout: 5000 }); // no second grace
        return out;
      } finally {
        conn.close();
      }
    })());
    assert.deepEqual(seen, [
      "100 c1",
      "180 c1",
      "200 c1",
      "503 c2 Retry-After 5",
      "200 c1", // Timer G, at 500 as the grace ends
      "closed",
    ]);
    assert.equal(clock.now(), FAR + 500);
    assert.deepEqual(uas.stats().calls, { cancelled: 1 });
  } finally {
    clock.advance(10_000); // what still waits on the clock after a failure
    await uas.shutdown(0);
  }
});

Deno.test("sip_uas over TCP: stats() counts connections (active, accepted) apart from calls (activeCalls, started)", async () => {
  const uas = startUas({ transport: "tcp", hostname: "127.0.0.1", port: 0 });
  try {
    const stats = await run((async function* () {
      const caller = yield* connect({ port: uas.addr.port, timeout: 5000 });
      const other = yield* connect({ port: uas.addr.port, timeout: 5000 });
      try {
        caller.recvTimeout = other.recvTimeout = 5000;
        yield* caller.send(invite("c1"));
        for (let status = ""; !status.startsWith("200");) {
          status = describe(yield* recvSipMessage(caller));
        }
        yield* other.send(
          `${HEAD.replace("c1", "o1")}Content-Length: 0\r\n\r\n`,
        ); // OPTIONS: no call
        describe(yield* recvSipMessage(other));
        return uas.stats();
      } finally {
        caller.close();
        other.close();
      }
    })());
    const { active, accepted, activeCalls, started } = stats;
    assert.deepEqual({ active, accepted, activeCalls, started }, {
      active: 2,
      accepted: 2,
      activeCalls: 1,
      started: 2,
    });
  } finally {
    await uas.shutdown(0);
  }
});

const inDialog = (method: string, call: string, seq: number) =>
  `${method} sip:uas@127.0.0.1 SIP/2.0\r\n` +
  `Via: SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bK${call}${method}\r\n` +
  `From: <sip:uac@127.0.0.1>;tag=f1\r\nTo: <sip:uas@127.0.0.1>;tag=x\r\n` +
  `Call-ID: ${call}\r\nCSeq: ${seq} ${method}\r\nContent-Length: 0\r\n\r\n`;

Deno.test("sip_uas: a confirmed call outlives Conversations' default idleTimeout of 5 minutes (its BYE at 6 gets 200), and one silent for --idle-timeout (1 h) is dropped as cancelled", async () => {
  const { clock, uas } = tcpUasOnFarClock();
  try {
    const seen = await run((async function* () {
      const conn = yield* connect({ port: uas.addr.port, timeout: 5000 });
      conn.recvTimeout = 5000;
      try {
        for (const call of ["long", "silent"]) {
          yield* conn.send(invite(call));
          for (let status = ""; !status.startsWith("200");) {
            status = describe(yield* recvSipMessage(conn));
          }
          yield* conn.send(inDialog("ACK", call, 1));
        }
        yield* wait(until(() => uas.stats().delivered === 2)); // both ACKs
        clock.advance(360_000);
        yield* conn.send(inDialog("BYE", "long", 2));
        const answer = describe(yield* recvSipMessage(conn));
        clock.advance(3_600_000 - 360_000);
        yield* wait(until(() => uas.stats().expired === 1));
        return answer;
      } finally {
        conn.close();
      }
    })());
    assert.equal(seen, "200 long");
    assert.deepEqual(uas.stats().calls, { completed: 1, cancelled: 1 });
  } finally {
    clock.advance(10_000_000); // what still waits on the clock after a failure
    await uas.shutdown(0);
  }
});

/** Resolves once `isTrue()`, or rejects after 5 s of real time. */
async function until(isTrue: () => boolean): Promise<void> {
  for (const start = Date.now(); !isTrue();) {
    if (Date.now() - start > 5000) throw new Error("Not true within 5 s");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}
