/**
 * A SIP message parser and serializer (RFC 3261 §7, a subset): start line,
 * headers (CRLF or bare LF, folded lines, compact names), body framed by
 * Content-Length. Limits bound every input; anything malformed gives a
 * {@linkcode SipParseError} and nothing else, so a server can answer
 * `400 Bad Request` and go on.
 *
 * @module
 */

/** One header, its name in canonical form (`Call-ID`, never `i`). */
export type SipHeader = [name: string, value: string];

/** A SIP request. */
export interface SipRequest {
  readonly kind: "request";
  /** `INVITE`, `ACK`, `BYE`, ... */
  method: string;
  /** The Request-URI. */
  uri: string;
  /** Headers in order. */
  headers: SipHeader[];
  /** The body (empty when none). */
  body: Uint8Array;
}

/** A SIP response. */
export interface SipResponse {
  readonly kind: "response";
  /** 100-699. */
  status: number;
  /** The reason phrase. */
  reason: string;
  /** Headers in order. */
  headers: SipHeader[];
  /** The body (empty when none). */
  body: Uint8Array;
}

/** A SIP request or response. */
export type SipMessage = SipRequest | SipResponse;

/** Limits on what {@linkcode parseSipMessage} accepts. */
export interface SipLimits {
  /**
   * Bytes in the whole message.
   * @default {65535}
   */
  maxMessageSize?: number;
  /**
   * Header fields (after unfolding).
   * @default {100}
   */
  maxHeaders?: number;
  /**
   * Bytes in one line, the start line included.
   * @default {8192}
   */
  maxLineLength?: number;
}

/** Options for {@linkcode parseSipMessage}. */
export interface ParseSipOptions extends SipLimits {
  /**
   * True for stream transports (TCP): Content-Length is required, since it
   * alone frames the message (RFC 3261 §18.3).
   * @default {false}
   */
  isStream?: boolean;
}

/** The message could not be parsed; `reason` says why. */
export class SipParseError extends Error {
  /** Why, e.g. `"missing Call-ID"`. */
  readonly reason: string;
  /**
   * What was read of the message, where the reader knows it (a stream's
   * header lines): enough for {@linkcode badRequestFor} to address a 400.
   */
  readonly input: Uint8Array | undefined;
  /**
   * @param reason Why the message is malformed.
   * @param input What was read of it.
   */
  constructor(reason: string, input?: Uint8Array) {
    super(`Cannot parse SIP message: ${reason}`);
    this.name = "SipParseError";
    this.reason = reason;
    this.input = input;
  }
}

/** Default limits. */
export const SIP_LIMITS: Required<SipLimits> = {
  maxMessageSize: 65535,
  maxHeaders: 100,
  maxLineLength: 8192,
};

// RFC 3261 §7.3.3 and the IANA registry's compact forms.
const COMPACT: Record<string, string> = {
  i: "Call-ID",
  m: "Contact",
  e: "Content-Encoding",
  l: "Content-Length",
  c: "Content-Type",
  f: "From",
  s: "Subject",
  k: "Supported",
  t: "To",
  v: "Via",
  o: "Event",
  r: "Refer-To",
  b: "Referred-By",
  u: "Allow-Events",
  x: "Session-Expires",
};
const CANONICAL: Record<string, string> = {
  "call-id": "Call-ID",
  "cseq": "CSeq",
  "www-authenticate": "WWW-Authenticate",
  "mime-version": "MIME-Version",
};

// Header names repeat from message to message, so each spelling is
// canonicalised once: a lookup instead of a lower-casing and a regex
// replace per header (under sipp at 1500 calls/s, 250 of the UAS's 3,877
// ms of CPU over 12,000 calls; 64 ms as a lookup), and one string per
// name instead of one per header. Bounded: a peer
// sending ever new names costs the slow path, not memory.
const canonicalNames = new Map<string, string>();
const MAX_CANONICAL_NAMES = 512;

/**
 * The canonical form of a header name: compact forms expanded, words
 * capitalised (`call-id` and `i` → `Call-ID`, `content-length` →
 * `Content-Length`).
 */
export function canonicalName(name: string): string {
  let canonical = canonicalNames.get(name);
  if (canonical === undefined) {
    canonical = canonicalize(name);
    if (canonicalNames.size < MAX_CANONICAL_NAMES) {
      // A copy for the key: the name may be a slice of a whole message,
      // which a key would keep alive.
      canonicalNames.set([...name].join(""), canonical);
    }
  }
  return canonical;
}

function canonicalize(name: string): string {
  if (name.length === 1) {
    const full = COMPACT[name.toLowerCase()];
    if (full) return full;
  }
  const lower = name.toLowerCase();
  return CANONICAL[lower] ??
    lower.replace(/(^|-)([a-z])/g, (_, dash, c) => dash + c.toUpperCase());
}

// RFC 3261 §25.1 token characters.
const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
const REQUIRED = ["Via", "From", "To", "Call-ID", "CSeq"] as const;
const decoder = new TextDecoder();
const encoder = new TextEncoder();
const CR = 13;
const LF = 10;

/**
 * Parses one SIP message from bytes (a datagram, or one framed TCP
 * message). Leading blank lines are skipped (RFC 3261 §7.5). Without
 * Content-Length the body is the rest of the input (datagrams only);
 * bytes beyond Content-Length are ignored (§18.3).
 *
 * @param input The bytes or text.
 * @param options Limits, and `isStream` for TCP.
 * @returns The message.
 * @throws {SipParseError} For anything malformed or over a limit.
 */
export function parseSipMessage(
  input: Uint8Array | string,
  options: ParseSipOptions = {},
): SipMessage {
  const bytes = typeof input === "string" ? encoder.encode(input) : input;
  const maxMessageSize = options.maxMessageSize ??
    SIP_LIMITS.maxMessageSize;
  const maxHeaders = options.maxHeaders ?? SIP_LIMITS.maxHeaders;
  const maxLineLength = options.maxLineLength ?? SIP_LIMITS.maxLineLength;
  if (bytes.length > maxMessageSize) {
    fail(`message exceeds maxMessageSize of ${maxMessageSize} bytes`);
  }
  // Split lines in bytes, so that the body's offset is exact.
  let offset = 0;
  while (
    offset < bytes.length && (bytes[offset] === CR || bytes[offset] === LF)
  ) {
    offset++;
  }
  const lines: string[] = [];
  let bodyStart = -1;
  while (offset < bytes.length) {
    const lf = bytes.indexOf(LF, offset);
    if (lf < 0) break; // no terminated blank line: headers never ended
    const end = lf > offset && bytes[lf - 1] === CR ? lf - 1 : lf;
    if (end - offset > maxLineLength) {
      fail(`line exceeds maxLineLength of ${maxLineLength} bytes`);
    }
    if (end === offset) {
      bodyStart = lf + 1;
      break;
    }
    lines.push(decoder.decode(bytes.subarray(offset, end)));
    offset = lf + 1;
  }
  if (bodyStart < 0) {
    if (bytes.length - offset > maxLineLength) {
      fail(`line exceeds maxLineLength of ${maxLineLength} bytes`);
    }
    fail(
      lines.length === 0
        ? "empty message"
        : "headers not terminated by a blank line",
    );
  }
  const startLine = lines[0];
  const headers = parseHeaders(lines, maxHeaders);
  const message = parseStartLine(startLine, headers);
  for (const name of REQUIRED) {
    if (!headers.some((header) => header[0] === name)) fail(`missing ${name}`);
  }
  checkCSeq(message);
  message.body = frameBody(
    bytes,
    bodyStart,
    headers,
    options.isStream ?? false,
  );
  return message;
}

function parseHeaders(lines: string[], maxHeaders: number): SipHeader[] {
  const headers: SipHeader[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const first = line.charCodeAt(0);
    if (first === 32 || first === 9) {
      // RFC 3261 §7.3.1: a line starting with white space continues the
      // previous header; the fold counts as one space.
      if (headers.length === 0) fail("folded line before any header");
      headers[headers.length - 1][1] += " " + line.trim();
      continue;
    }
    const colon = line.indexOf(":");
    if (colon < 0) fail(`header line without a colon: ${clip(line)}`);
    const name = line.slice(0, colon).trimEnd();
    if (!TOKEN.test(name)) fail(`bad header name: ${clip(name)}`);
    if (headers.length >= maxHeaders) {
      fail(`more than maxHeaders of ${maxHeaders} headers`);
    }
    headers.push([canonicalName(name), line.slice(colon + 1).trim()]);
  }
  return headers;
}

function parseStartLine(line: string, headers: SipHeader[]): SipMessage {
  if (line.startsWith("SIP/")) {
    const match = /^SIP\/2\.0 ([1-6][0-9]{2}) (.*)$/.exec(line);
    if (!match) fail(`bad status line: ${clip(line)}`);
    return {
      kind: "response",
      status: Number(match[1]),
      reason: match[2],
      headers,
      body: EMPTY,
    };
  }
  const parts = line.split(" ");
  if (parts.length !== 3) fail(`bad request line: ${clip(line)}`);
  const [method, uri, version] = parts;
  if (!TOKEN.test(method)) fail(`bad method: ${clip(method)}`);
  if (version !== "SIP/2.0") fail(`bad SIP version: ${clip(version)}`);
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\S+$/.test(uri)) {
    fail(`bad Request-URI: ${clip(uri)}`);
  }
  return { kind: "request", method, uri, headers, body: EMPTY };
}

function checkCSeq(message: SipMessage): void {
  const cseq = parseCSeq(getHeader(message, "CSeq")!);
  if (cseq === undefined) fail("bad CSeq");
  if (message.kind === "request" && cseq.method !== message.method) {
    fail(`CSeq method ${cseq.method} does not match ${message.method}`);
  }
}

function frameBody(
  bytes: Uint8Array,
  bodyStart: number,
  headers: SipHeader[],
  isStream: boolean,
): Uint8Array {
  let length: number | undefined;
  for (const [name, value] of headers) {
    if (name !== "Content-Length") continue;
    if (!/^[0-9]{1,10}$/.test(value)) {
      fail(`bad Content-Length: ${clip(value)}`);
    }
    const n = Number(value);
    if (length !== undefined && length !== n) {
      fail("conflicting Content-Length");
    }
    length = n;
  }
  const available = bytes.length - bodyStart;
  if (length === undefined) {
    if (isStream) fail("missing Content-Length on a stream transport");
    return bytes.slice(bodyStart);
  }
  if (length > available) {
    fail(`Content-Length ${length} exceeds the ${available} body bytes`);
  }
  return bytes.slice(bodyStart, bodyStart + length);
}

const EMPTY = new Uint8Array(0);

function fail(reason: string): never {
  throw new SipParseError(reason);
}

function clip(text: string): string {
  const safe = JSON.stringify(
    text.length > 40 ? text.slice(0, 40) + "…" : text,
  );
  return safe;
}

/**
 * Serializes a message with CRLF line ends and a Content-Length that
 * matches the body (any Content-Length header given is replaced).
 *
 * @param message The message.
 * @returns Its bytes.
 */
export function serializeSipMessage(message: SipMessage): Uint8Array {
  let text = message.kind === "request"
    ? `${message.method} ${message.uri} SIP/2.0\r\n`
    : `SIP/2.0 ${message.status} ${message.reason}\r\n`;
  for (const [name, value] of message.headers) {
    if (name !== "Content-Length") text += `${name}: ${value}\r\n`;
  }
  text += `Content-Length: ${message.body.length}\r\n\r\n`;
  const head = encoder.encode(text);
  if (message.body.length === 0) return head;
  const out = new Uint8Array(head.length + message.body.length);
  out.set(head);
  out.set(message.body, head.length);
  return out;
}

/** The first value of a header (any spelling or compact form), if any. */
export function getHeader(
  message: SipMessage,
  name: string,
): string | undefined {
  const wanted = canonicalName(name);
  for (const header of message.headers) {
    if (header[0] === wanted) return header[1];
  }
  return undefined;
}

/** Every value of a header, in order. */
export function getHeaders(message: SipMessage, name: string): string[] {
  const wanted = canonicalName(name);
  return message.headers.filter((h) => h[0] === wanted).map((h) => h[1]);
}

/** CSeq's sequence number and method, or undefined if malformed. */
export function parseCSeq(
  value: string,
): { seq: number; method: string } | undefined {
  const match = /^([0-9]{1,10})\s+([A-Za-z0-9\-.!%*_+`'~]+)$/.exec(value);
  if (!match) return undefined;
  return { seq: Number(match[1]), method: match[2] };
}

/** The `tag` parameter of a From or To value, if any. */
export function getTag(value: string | undefined): string | undefined {
  return value === undefined
    ? undefined
    : /;\s*tag=([^;>\s]+)/i.exec(value)?.[1];
}

/** The `branch` parameter of the top Via, if any. */
export function getBranch(message: SipMessage): string | undefined {
  return /;\s*branch=([^;,\s]+)/i.exec(getHeader(message, "Via") ?? "")?.[1];
}

/** Options for {@linkcode createResponse}. */
export interface CreateResponseOptions {
  /** A To-tag to add (when the request's To has none). */
  toTag?: string;
  /** Extra headers, after the copied ones. */
  headers?: SipHeader[];
  /** The body. */
  body?: Uint8Array | string;
}

/**
 * A response to `request`: Via, From, To, Call-ID and CSeq copied as
 * RFC 3261 §8.2.6.2 says, a To-tag added if asked and absent.
 *
 * @param request The request answered.
 * @param status The status code.
 * @param reason The reason phrase.
 * @param options To-tag, extra headers, body.
 * @returns The response.
 */
export function createResponse(
  request: SipRequest,
  status: number,
  reason: string,
  options: CreateResponseOptions = {},
): SipResponse {
  const headers: SipHeader[] = [];
  for (const [name, value] of request.headers) {
    if (name === "To" && options.toTag && getTag(value) === undefined) {
      headers.push([name, `${value};tag=${options.toTag}`]);
    } else if (
      name === "Via" || name === "From" || name === "To" ||
      name === "Call-ID" || name === "CSeq"
    ) headers.push([name, value]);
  }
  if (options.headers) headers.push(...options.headers);
  const body = typeof options.body === "string"
    ? encoder.encode(options.body)
    : options.body ?? EMPTY;
  return { kind: "response", status, reason, headers, body };
}

/**
 * For a message that failed to parse: a `400 Bad Request` built from what
 * headers can be found in it, or undefined if it cannot be answered (not
 * a request, or no Via/Call-ID/CSeq to address the reply with).
 *
 * @param input The raw bytes.
 * @param why The parse error's reason, put in the reason phrase.
 * @returns The response's bytes, or undefined.
 */
export function badRequestFor(
  input: Uint8Array,
  why: string,
): Uint8Array | undefined {
  const text = decoder.decode(input.subarray(0, SIP_LIMITS.maxMessageSize));
  const lines = text.split(/\r?\n/);
  if (lines[0] === undefined || lines[0].startsWith("SIP/")) return undefined;
  const copied: SipHeader[] = [];
  for (const line of lines.slice(1, SIP_LIMITS.maxHeaders)) {
    if (line === "") break;
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = canonicalName(line.slice(0, colon).trim());
    if (["Via", "From", "To", "Call-ID", "CSeq"].includes(name)) {
      copied.push([name, line.slice(colon + 1).trim().replace(/[\r\n]/g, "")]);
    }
  }
  const has = (name: string) => copied.some((h) => h[0] === name);
  if (!has("Via") || !has("Call-ID") || !has("CSeq")) return undefined;
  const reason = `Bad Request (${
    why.replace(/[^\x20-\x7e]/g, "?").slice(0, 80)
  })`;
  return serializeSipMessage({
    kind: "response",
    status: 400,
    reason,
    headers: copied,
    body: EMPTY,
  });
}
