/**
 * SIP over TCP: messages on a byte stream are framed by Content-Length
 * (RFC 3261 §18.3), so a message without one cannot be delimited.
 *
 * @module
 */

import {
  type Connection,
  type Coroutine,
  LineTooLongError,
} from "@corio/corio";
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
 * resynchronised (no or bad Content-Length, too many lines): answer 400 and
 * close; a line over `maxLineLength` too, but corio has closed the
 * connection then. A parse error of a well-framed message leaves the stream
 * usable. Either error's `input` holds what was read of the message (for
 * `badRequestFor`). Connection errors (`TimeoutError`, resets) as
 * `recvLine`.
 *
 * @returns The message, or `null` at end of stream.
 */
export async function* recvSipMessage(
  conn: Connection,
  limits: SipLimits = {},
): Coroutine<SipMessage | null> {
  const max: Required<SipLimits> = {
    maxLineLength: limits.maxLineLength ?? SIP_LIMITS.maxLineLength,
    maxHeaders: limits.maxHeaders ?? SIP_LIMITS.maxHeaders,
    maxMessageSize: limits.maxMessageSize ?? SIP_LIMITS.maxMessageSize,
  };
  const { maxLineLength, maxMessageSize } = max;
  const lines: string[] = [];
  let head: Head | null;
  try {
    head = yield* recvHead(conn, lines, max);
  } catch (error) {
    if (!(error instanceof LineTooLongError)) throw error;
    throw framingLost(
      `line exceeds maxLineLength of ${maxLineLength} bytes`,
      lines,
    );
  }
  if (head === null) return null;
  const { size, contentLength } = head;
  if (contentLength === undefined) {
    throw framingLost("missing Content-Length on a stream transport", lines);
  }
  if (size + contentLength > maxMessageSize) {
    throw framingLost(
      `message exceeds maxMessageSize of ${maxMessageSize} bytes`,
      lines,
    );
  }
  const body = yield* conn.recvExact(contentLength);
  const headBytes = encodeHead(lines);
  const bytes = new Uint8Array(headBytes.length + body.length);
  bytes.set(headBytes);
  bytes.set(body, headBytes.length);
  try {
    return parseSipMessage(bytes, { ...limits, isStream: true });
  } catch (error) {
    if (!(error instanceof SipParseError)) throw error;
    throw new SipParseError(error.reason, bytes);
  }
}

/** What the header lines say of the message that follows them. */
interface Head {
  /** Bytes of the start line and headers, CRLFs included. */
  size: number;
  contentLength: number | undefined;
}

/** Reads the start line and headers into `lines`; `null` at end of stream. */
async function* recvHead(
  conn: Connection,
  lines: string[],
  { maxLineLength, maxHeaders, maxMessageSize }: Required<SipLimits>,
): Coroutine<Head | null> {
  let line: string | null;
  do {
    line = yield* conn.recvLine({ maxLineLength });
    if (line === null) return null;
  } while (line === "");
  lines.push(line);
  let size = line.length + 2;
  let contentLength: number | undefined;
  for (;;) {
    line = yield* conn.recvLine({ maxLineLength });
    if (line === null) {
      throw framingLost("stream ended inside the headers", lines);
    }
    if (line === "") return { size, contentLength };
    lines.push(line);
    size += line.length + 2;
    if (lines.length > 2 * maxHeaders || size > maxMessageSize) {
      throw framingLost(
        `headers exceed maxHeaders of ${maxHeaders} or maxMessageSize of ${maxMessageSize}`,
        lines,
      );
    }
    const colon = line.indexOf(":");
    if (
      colon > 0 &&
      canonicalName(line.slice(0, colon).trim()) === "Content-Length"
    ) {
      const value = line.slice(colon + 1).trim();
      if (!/^[0-9]{1,10}$/.test(value)) {
        throw framingLost(`bad Content-Length: ${value.slice(0, 20)}`, lines);
      }
      contentLength = Number(value);
    }
  }
}

function encodeHead(lines: string[]): Uint8Array {
  return encoder.encode(lines.join("\r\n") + "\r\n\r\n");
}

/** A parse error after which the stream's message boundaries are lost. */
export class SipFramingError extends SipParseError {
  /** Always true: answer 400 and close. */
  readonly isFramingLost = true;
  /**
   * @param reason Why.
   * @param input What was read of the message.
   */
  constructor(reason: string, input?: Uint8Array) {
    super(reason, input);
    this.name = "SipFramingError";
  }
}

function framingLost(reason: string, lines: string[]): SipFramingError {
  return new SipFramingError(reason, encodeHead(lines));
}
