/**
 * Mutation fuzzing of the SIP parser: valid seed messages mutated by bit
 * flips, inserts, deletes, truncation and splices. The parser must give a
 * message or a `SipParseError` — anything else is a bug.
 *
 * @module
 */

import { parseSipMessage, SipParseError } from "./message.ts";

const SEEDS = [
  "INVITE sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\r\nFrom: sipp <sip:sipp@127.0.0.1:5061>;tag=1\r\nTo: <sip:bob@127.0.0.1:5060>\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: 37\r\n\r\nv=0\r\no=user1 1 1 IN IP4 127.0.0.1\r\ns=-\r\n",
  "SIP/2.0 200 OK\nv: SIP/2.0/UDP h;branch=z9hG4bK2\nf: <sip:a@h>;tag=1\nt: <sip:b@h>;tag=2\ni: x\nCSeq: 1 INVITE\nl: 0\n\n",
  "BYE sip:a@h SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n ;branch=z9hG4bK3\r\nFrom: <sip:b@h>;tag=2\r\nTo: <sip:a@h>;tag=1\r\nCall-ID: y\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
].map((text) => new TextEncoder().encode(text));

/** A small, seedable PRNG (mulberry32), so a failure can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING = [
  "\r\n",
  "\n",
  ":",
  " ",
  "\t",
  "\r\n\r\n",
  ";",
  "Content-Length: 99999",
  "l: -1",
  "\u00ff",
  "\0",
]
  .map((text) => new TextEncoder().encode(text));

/** One mutant of a random seed: 1-4 of flip, insert, delete, truncate, splice. */
export function mutate(random: () => number): Uint8Array {
  const pick = (n: number) => Math.floor(random() * n);
  let bytes: Uint8Array = SEEDS[pick(SEEDS.length)].slice();
  for (let rounds = 1 + pick(4); rounds > 0; rounds--) {
    const at = pick(bytes.length + 1);
    switch (pick(5)) {
      case 0: // flip a bit
        if (bytes.length > 0) {
          bytes[Math.min(at, bytes.length - 1)] ^= 1 << pick(8);
        }
        break;
      case 1: { // insert random or interesting bytes
        const insert = random() < 0.5
          ? INTERESTING[pick(INTERESTING.length)]
          : Uint8Array.from({ length: 1 + pick(8) }, () => pick(256));
        bytes = concat(bytes.subarray(0, at), insert, bytes.subarray(at));
        break;
      }
      case 2: // delete a run
        bytes = concat(
          bytes.subarray(0, at),
          bytes.subarray(Math.min(bytes.length, at + 1 + pick(16))),
        );
        break;
      case 3: // truncate
        bytes = bytes.subarray(0, at);
        break;
      default: { // splice with another seed
        const other = SEEDS[pick(SEEDS.length)];
        bytes = concat(
          bytes.subarray(0, at),
          other.subarray(pick(other.length)),
        );
      }
    }
  }
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** What a fuzz run found. */
export interface FuzzReport {
  inputs: number;
  parsed: number;
  rejected: number;
  /** Inputs that threw something other than SipParseError. */
  unexpected: { input: Uint8Array; error: unknown }[];
  /** Parse times, ms, sorted. */
  times: number[];
}

/** Runs `inputs` mutants through the parser (UDP and TCP modes alternately). */
export function fuzz(inputs: number, seed = 1): FuzzReport {
  const random = prng(seed);
  const report: FuzzReport = {
    inputs,
    parsed: 0,
    rejected: 0,
    unexpected: [],
    times: new Array(inputs),
  };
  for (let i = 0; i < inputs; i++) {
    const input = mutate(random);
    const started = performance.now();
    try {
      parseSipMessage(input, { isStream: (i & 1) === 1 });
      report.parsed++;
    } catch (error) {
      if (error instanceof SipParseError) report.rejected++;
      else report.unexpected.push({ input, error });
    }
    report.times[i] = performance.now() - started;
  }
  report.times.sort((a, b) => a - b);
  return report;
}
