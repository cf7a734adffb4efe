/**
 * In-memory connections: a handler runs against them as against a socket,
 * with no socket and no real time.
 *
 * @module
 */

import { Connection } from "../connection.ts";
import type { ConnectionOptions, Transport } from "../connection_options.ts";

/**
 * Options for {@linkcode memoryConnPair}.
 *
 * @example A 4-byte pipe and a 1 s send timeout: backpressure, tested
 * ```ts
 * import { run, TimeoutError } from "@corio/corio";
 * import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
 *
 * const [conn, peer] = memoryConnPair({ capacity: 4, sendTimeout: 1000 });
 * const clock = new VirtualClock();
 * const error = await run((function* () {
 *   try {
 *     yield* conn.send("12345678"); // the peer never reads
 *   } catch (error) {
 *     return error;
 *   }
 * })(), { clock });
 * peer.close();
 * console.log(error instanceof TimeoutError, conn.isClosed, clock.now()); // true true 1000
 * ```
 */
export interface MemoryConnPairOptions extends ConnectionOptions {
  /**
   * Bytes each direction holds before a send must wait for the peer to
   * read: small values test backpressure and send timeouts.
   * @default {65536}
   */
  capacity?: number;
}

class Pipe {
  chunks: Uint8Array[] = [];
  size = 0;
  isClosed = false; // the writer ended (FIN) or closed
  isBroken = false; // the reader closed: writes fail
  // The reader closed with nothing unread: as over TCP (its FIN, then its
  // RST answering our next segment), one more write succeeds, its bytes lost.
  takesOneMore = false;
  reader: (() => void) | null = null;
  writer: (() => void) | null = null;
  constructor(readonly capacity: number) {}
  notifyReader(): void {
    const reader = this.reader;
    this.reader = null;
    reader?.();
  }
  notifyWriter(): void {
    const writer = this.writer;
    this.writer = null;
    writer?.();
  }
}

let nextPort = 1;

class MemoryTransport {
  #isClosed = false;
  constructor(
    readonly inbound: Pipe,
    readonly outbound: Pipe,
    readonly localAddr: Deno.NetAddr,
    readonly remoteAddr: Deno.NetAddr,
  ) {}

  read(buffer: Uint8Array): Promise<number | null> {
    return new Promise((resolve, reject) => {
      const attempt = (): void => {
        if (this.#isClosed) {
          return reject(new Deno.errors.Interrupted("operation canceled"));
        }
        const pipe = this.inbound;
        if (pipe.size > 0) {
          let n = 0;
          while (n < buffer.length && pipe.chunks.length > 0) {
            const chunk = pipe.chunks[0];
            const take = Math.min(chunk.length, buffer.length - n);
            buffer.set(chunk.subarray(0, take), n);
            n += take;
            if (take === chunk.length) pipe.chunks.shift();
            else pipe.chunks[0] = chunk.subarray(take);
          }
          pipe.size -= n;
          pipe.notifyWriter();
          return resolve(n);
        }
        if (pipe.isClosed) return resolve(null);
        pipe.reader = attempt;
      };
      attempt();
    });
  }

  write(bytes: Uint8Array): Promise<number> {
    return new Promise((resolve, reject) => {
      const attempt = (): void => {
        const pipe = this.outbound;
        if (this.#isClosed || pipe.isClosed) {
          return reject(new Deno.errors.BadResource("connection closed"));
        }
        if (pipe.isBroken) {
          if (pipe.takesOneMore) {
            pipe.takesOneMore = false;
            return resolve(bytes.length);
          }
          return reject(
            new Deno.errors.ConnectionReset("connection reset by peer"),
          );
        }
        const room = pipe.capacity - pipe.size;
        if (room <= 0) {
          pipe.writer = attempt;
          return;
        }
        const n = Math.min(room, bytes.length);
        pipe.chunks.push(bytes.slice(0, n));
        pipe.size += n;
        pipe.notifyReader();
        resolve(n);
      };
      attempt();
    });
  }

  closeWrite(): Promise<void> {
    this.outbound.isClosed = true;
    this.outbound.notifyReader();
    return Promise.resolve();
  }

  close(): void {
    if (this.#isClosed) throw new Deno.errors.BadResource("already closed");
    this.#isClosed = true;
    this.outbound.isClosed = true;
    this.outbound.notifyReader();
    // Closed with bytes unread, a TCP socket sends RST: the peer's writes
    // fail at once. Else FIN: its next write succeeds, and later ones fail.
    this.inbound.takesOneMore = this.inbound.size === 0 &&
      this.inbound.writer === null;
    this.inbound.isBroken = true;
    this.inbound.chunks = [];
    this.inbound.size = 0;
    this.inbound.notifyWriter();
    this.inbound.notifyReader();
    this.outbound.notifyWriter();
  }
}

/**
 * Two connected in-memory {@linkcode Connection}s: what one sends, the other
 * receives. `close()` on one is end of stream for the other. Sending to a
 * closed peer behaves as over TCP on Linux: the first send after the peer
 * closed succeeds and its bytes are lost (the peer's FIN, then its RST),
 * later ones fail with `ConnectionResetError`; if the peer closed with
 * bytes unread (an RST at once), every send fails.
 *
 * @param options `capacity` per direction, and the connections' defaults.
 * @returns `[a, b]`, a pair of connected ends.
 *
 * @example
 * ```ts
 * import { run } from "@corio/corio";
 * import { memoryConnPair } from "@corio/corio/testing";
 *
 * const [a, b] = memoryConnPair();
 * const line = await run((function* () {
 *   yield* a.send("hello\r\n");
 *   return yield* b.recvLine();
 * })());
 * a.close();
 * b.close();
 * console.log(line); // hello
 * ```
 */
export function memoryConnPair(
  options: MemoryConnPairOptions = {},
): [Connection, Connection] {
  const [a, b] = memoryTransports(options, memoryAddr(), memoryAddr());
  const { capacity: _, ...connOptions } = options;
  const config = { ...connOptions, isExternal: false };
  return [new Connection(a, config), new Connection(b, config)];
}

/** @internal A new address on the memory "network": a port of its own. */
export function memoryAddr(): Deno.NetAddr {
  return { transport: "tcp", hostname: "memory", port: nextPort++ };
}

/**
 * @internal Two connected transports, at `addrA` and `addrB` (a server's
 * end is at its listener's address, as over TCP).
 */
export function memoryTransports(
  options: MemoryConnPairOptions,
  addrA: Deno.NetAddr,
  addrB: Deno.NetAddr,
): [Transport, Transport] {
  const capacity = options.capacity ?? 64 * 1024;
  if (!(capacity >= 1)) {
    throw new RangeError(
      `Cannot create memory connections: capacity must be >= 1, got ${capacity}`,
    );
  }
  const aToB = new Pipe(capacity);
  const bToA = new Pipe(capacity);
  return [
    new MemoryTransport(bToA, aToB, addrA, addrB),
    new MemoryTransport(aToB, bToA, addrB, addrA),
  ];
}
