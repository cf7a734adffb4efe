import assert from "node:assert/strict";
import {
  badRequestFor,
  canonicalName,
  createResponse,
  getHeader,
  getTag,
  parseSipMessage,
  serializeSipMessage,
  type SipParseError,
  type SipRequest,
} from "../examples/sip/message.ts";

const INVITE = [
  "INVITE sip:bob@127.0.0.1 SIP/2.0",
  "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1",
  "From: <sip:alice@127.0.0.1>;tag=a1",
  "To: <sip:bob@127.0.0.1>",
  "Call-ID: c1@127.0.0.1",
  "CSeq: 1 INVITE",
  "Content-Type: application/sdp",
  "Content-Length: 4",
  "",
  "v=0\n",
].join("\r\n");

Deno.test("parseSipMessage() parses a request with CRLF lines and a Content-Length body", () => {
  const message = parseSipMessage(INVITE) as SipRequest;
  assert.equal(message.kind, "request");
  assert.equal(message.method, "INVITE");
  assert.equal(message.uri, "sip:bob@127.0.0.1");
  assert.equal(getHeader(message, "call-id"), "c1@127.0.0.1");
  assert.equal(new TextDecoder().decode(message.body), "v=0\n");
});

// [what, input, expected Call-ID / body / header checks]
const ACCEPTED: [
  string,
  string,
  (m: ReturnType<typeof parseSipMessage>) => void,
][] = [
  [
    "bare LF line ends",
    INVITE.replaceAll("\r\n", "\n"),
    (m) => assert.equal(getHeader(m, "CSeq"), "1 INVITE"),
  ],
  [
    "leading blank lines (keep-alives)",
    "\r\n\r\n" + INVITE,
    (m) => assert.equal(m.kind, "request"),
  ],
  [
    "folded header",
    INVITE.replace("Subject", "").replace(
      "CSeq: 1 INVITE",
      "Subject: a\r\n  long\r\n\tsubject\r\nCSeq: 1 INVITE",
    ),
    (m) => assert.equal(getHeader(m, "Subject"), "a long subject"),
  ],
  [
    "compact names",
    INVITE.replace("Call-ID:", "i:").replace("Via:", "v:").replace(
      "From:",
      "f:",
    ).replace("To:", "t:")
      .replace("Content-Length:", "l:"),
    (m) => {
      assert.equal(getHeader(m, "Call-ID"), "c1@127.0.0.1");
      assert.equal(m.headers[0][0], "Via");
    },
  ],
  [
    "no Content-Length over UDP: body is the rest",
    INVITE.replace("Content-Length: 4\r\n", ""),
    (m) => assert.equal(m.body.length, 4),
  ],
  [
    "bytes beyond Content-Length are ignored",
    INVITE + "junk",
    (m) => assert.equal(m.body.length, 4),
  ],
  [
    "a response",
    "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n",
    (m) => {
      assert.equal(m.kind, "response");
      assert.equal(m.kind === "response" && m.status, 180);
      assert.equal(getTag(getHeader(m, "To")), "2");
    },
  ],
];

for (const [what, input, check] of ACCEPTED) {
  Deno.test(`parseSipMessage() accepts ${what}`, () =>
    check(parseSipMessage(input)));
}

const REJECTED: [
  string,
  string,
  RegExp,
  {
    isStream?: boolean;
    maxHeaders?: number;
    maxLineLength?: number;
    maxMessageSize?: number;
  }?,
][] = [
  [
    "missing Content-Length over TCP",
    INVITE.replace("Content-Length: 4\r\n", ""),
    /missing Content-Length/,
    { isStream: true },
  ],
  [
    "a bad request line",
    INVITE.replace(
      "INVITE sip:bob@127.0.0.1 SIP/2.0",
      "INVITE sip:bob@127.0.0.1",
    ),
    /bad request line/,
  ],
  [
    "a bad SIP version",
    INVITE.replace("SIP/2.0\r\n", "SIP/3.0\r\n"),
    /bad SIP version/,
  ],
  [
    "a bad status line",
    "SIP/2.0 99 Odd\r\nCall-ID: x\r\n\r\n",
    /bad status line/,
  ],
  ["a bad method", INVITE.replace("INVITE sip", "IN(VITE sip"), /bad method/],
  [
    "a missing Call-ID",
    INVITE.replace("Call-ID: c1@127.0.0.1\r\n", ""),
    /missing Call-ID/,
  ],
  [
    "a CSeq of another method",
    INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
    /CSeq method/,
  ],
  [
    "a header without a colon",
    INVITE.replace("Call-ID: ", "Call-ID "),
    /without a colon/,
  ],
  [
    "a Content-Length beyond the body",
    INVITE.replace("Content-Length: 4", "Content-Length: 40"),
    /exceeds/,
  ],
  [
    "a non-numeric Content-Length",
    INVITE.replace("Content-Length: 4", "Content-Length: four"),
    /bad Content-Length/,
  ],
  [
    "unterminated headers",
    "INVITE sip:a@b SIP/2.0\r\nVia: x",
    /not terminated/,
  ],
  ["empty input", "", /empty message/],
  ["too many headers", INVITE, /maxHeaders/, { maxHeaders: 3 }],
  ["a line over maxLineLength", INVITE, /maxLineLength/, { maxLineLength: 20 }],
  ["a message over maxMessageSize", INVITE, /maxMessageSize/, {
    maxMessageSize: 100,
  }],
];

for (const [what, input, reason, options] of REJECTED) {
  Deno.test(`parseSipMessage() rejects ${what} with SipParseError`, () => {
    assert.throws(
      () => parseSipMessage(input, options),
      (error: SipParseError) => {
        assert.equal(error.name, "SipParseError");
        assert.match(error.reason, reason);
        return true;
      },
    );
  });
}

Deno.test("serializeSipMessage() round-trips through the parser with a fresh Content-Length", () => {
  const message = parseSipMessage(
    INVITE.replaceAll("\r\n", "\n").replace("Call-ID:", "i:"),
  );
  const again = parseSipMessage(serializeSipMessage(message), {
    isStream: true,
  });
  assert.deepEqual(again, message);
});

Deno.test("createResponse() copies Via, From, To, Call-ID and CSeq and adds the To-tag", () => {
  const invite = parseSipMessage(INVITE) as SipRequest;
  const ok = createResponse(invite, 200, "OK", {
    toTag: "t9",
    headers: [["Contact", "<sip:uas@h>"]],
  });
  assert.deepEqual(ok.headers.map((h) => h[0]), [
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
  ]);
  assert.equal(getTag(getHeader(ok, "To")), "t9");
});

Deno.test("canonicalName() expands compact forms and capitalises", () => {
  assert.deepEqual(
    ["i", "call-id", "CSEQ", "l", "content-type", "v"].map(canonicalName),
    [
      "Call-ID",
      "Call-ID",
      "CSeq",
      "Content-Length",
      "Content-Type",
      "Via",
    ],
  );
});

Deno.test("badRequestFor() answers a malformed request it can address, and nothing else", () => {
  const bytes = new TextEncoder().encode(
    INVITE.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
  );
  const response = parseSipMessage(badRequestFor(bytes, "CSeq method")!);
  assert.equal(response.kind === "response" && response.status, 400);
  assert.equal(getHeader(response, "Call-ID"), "c1@127.0.0.1");
  assert.equal(
    badRequestFor(new TextEncoder().encode("garbage"), "x"),
    undefined,
  );
});

Deno.test("canonicalName() still canonicalises every name after thousands of distinct ones", () => {
  for (let i = 0; i < 2000; i++) {
    assert.equal(canonicalName(`x-custom-${i}-name`), `X-Custom-${i}-Name`);
  }
  assert.equal(canonicalName("x-custom-1999-name"), "X-Custom-1999-Name");
  assert.equal(canonicalName("CALL-ID"), "Call-ID");
});
