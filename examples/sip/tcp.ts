/**
 * SIP over TCP: messages on a byte stream are framed by Content-Length
 * (RFC 3261 §18.3), so a message without one cannot be delimited.
 *
 * @module
 */

import type { Connection, Coroutine } from "@corio/corio";
import {
  canonicalName,
  parseSipMessage,
  SIP_LIMITS,
  type SipLimits,
  type SipMessage,
  SipParseError,
} from "./message.ts";

const encoder = new TextEncoder();

/**
 * Receives one SIP message from a stream: header lines up to the blank
 * line, then exactly Content-Length body bytes. Blank keep-alive lines
 * before a message are skipped.
 *
 * Errors: `SipParseError` with `isFramingLost` when the stream cannot be
 * resynchronised (no or bad Content-Length, too many or too long lines):
 * answer 400 and close. A parse error of a well-framed message leaves the
 * stream usable. Connection errors (`TimeoutError`, resets) as `recvLine`.
 *
 * @returns The message, or `null` at end of stream.
 */
export async function* recvSipMessage(
  conn: Connection,
  limits: SipLimits = {},
): Coroutine<SipMessage | null> {
  const maxLineLength = limits.maxLineLength ?? SIP_LIMITS.maxLineLength;
  const maxHeaders = limits.maxHeaders ?? SIP_LIMITS.maxHeaders;
  const maxMessageSize = limits.maxMessageSize ?? SIP_LIMITS.maxMessageSize;
  let line: string | null;
  do {
    line = yield* conn.recvLine({ maxLineLength });
    if (line === null) return null;
  } while (line === "");
  const lines = [line];
  let size = line.length + 2;
  let contentLength: number | undefined;
  for (;;) {
    line = yield* conn.recvLine({ maxLineLength });
    if (line === null) throw framingLost("stream ended inside the headers");
    if (line === "") break;
    lines.push(line);
    size += line.length + 2;
    if (lines.length > 2 * maxHeaders || size > maxMessageSize) {
      throw framingLost(
        `headers exceed maxHeaders of ${maxHeaders} or maxMessageSize of ${maxMessageSize}`,
      );
    }
    const colon = line.indexOf(":");
    if (
      colon > 0 &&
      canonicalName(line.slice(0, colon).trim()) === "Content-Length"
    ) {
      const value = line.slice(colon + 1).trim();
      if (!/^[0-9]{1,10}$/.test(value)) {
        throw framingLost(`bad Content-Length: ${value.slice(0, 20)}`);
      }
      contentLength = Number(value);
    }
  }
  if (contentLength === undefined) {
    throw framingLost("missing Content-Length on a stream transport");
  }
  if (size + contentLength > maxMessageSize) {
    throw framingLost(
      `message exceeds maxMessageSize of ${maxMessageSize} bytes`,
    );
  }
  const body = yield* conn.recvExact(contentLength);
  const head = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(head);
  bytes.set(body, head.length);
  return parseSipMessage(bytes, { ...limits, isStream: true });
}

/** A parse error after which the stream's message boundaries are lost. */
export class SipFramingError extends SipParseError {
  /** Always true: answer 400 and close. */
  readonly isFramingLost = true;
  /** @param reason Why. */
  constructor(reason: string) {
    super(reason);
    this.name = "SipFramingError";
  }
}

function framingLost(reason: string): SipFramingError {
  return new SipFramingError(reason);
}
