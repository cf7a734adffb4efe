// The options, counters and defaults of `serveDatagram`: the public types
// live here so that src/datagram.ts holds the behaviour. Re-exported by
// src/datagram.ts.

import type { ConversationsOptions } from "./conversations.ts";
import type { DatagramServer } from "./datagram.ts";
import type { Coroutine } from "./effects.ts";
import type { Inbox } from "./inbox.ts";

/**
 * One received datagram.
 *
 * @example What parse receives
 * ```ts
 * import type { Datagram } from "@corio/corio";
 *
 * function parse(datagram: Datagram) {
 *   const [method, callId] = new TextDecoder().decode(datagram.data).split(" ");
 *   return { method, callId, from: datagram.remoteAddr };
 * }
 * const datagram: Datagram = {
 *   data: new TextEncoder().encode("INVITE 42"),
 *   remoteAddr: { transport: "udp", hostname: "127.0.0.1", port: 5060 },
 * };
 * console.log(parse(datagram).callId); // 42
 * ```
 */
export interface Datagram {
  /** Its bytes: a copy of its own, at its size (WebCrypto takes it as is). */
  readonly data: Uint8Array<ArrayBuffer>;
  /** The sender's address: where replies go. */
  readonly remoteAddr: Deno.NetAddr;
}

/**
 * A datagram conversation handler: it also gets the server, to send.
 *
 * @example A handler declared on its own, then served
 * ```ts
 * import { type Datagram, type DatagramHandler, serveDatagram } from "@corio/corio";
 *
 * const answer: DatagramHandler<Datagram, string> = function* (_inbox, first, server) {
 *   server.send(`got ${first!.data.length} bytes`, first!.remoteAddr);
 * };
 * await using server = serveDatagram({
 *   hostname: "127.0.0.1",
 *   key: (datagram) => `${datagram.remoteAddr.hostname}:${datagram.remoteAddr.port}`,
 * }, answer);
 * console.log(server.addr.port > 0); // true
 * ```
 */
export type DatagramHandler<M, K> = (
  inbox: Inbox<M>,
  first: M | undefined,
  server: DatagramServer<M, K>,
) => Coroutine<unknown>;

/**
 * Options for {@linkcode serveDatagram}.
 *
 * @example Parse, key, limits, and a signal that shuts it down
 * ```ts
 * import { serveDatagram, type ServeDatagramOptions } from "@corio/corio";
 *
 * type Message = { callId: string; text: string; from: Deno.NetAddr };
 * const controller = new AbortController();
 * const options: ServeDatagramOptions<Message, string> = {
 *   hostname: "127.0.0.1",
 *   parse: (datagram) => {
 *     const text = new TextDecoder().decode(datagram.data);
 *     return { callId: text.split(" ")[1], text, from: datagram.remoteAddr };
 *   },
 *   key: (message) => message.callId,
 *   maxConversations: 1000,
 *   signal: controller.signal,
 * };
 * const server = serveDatagram(options, function* (_inbox, first, server) {
 *   server.send(`OK ${first!.callId}`, first!.from);
 * });
 * controller.abort();
 * await server.finished;
 * ```
 */
export interface ServeDatagramOptions<M, K> extends
  Pick<
    ConversationsOptions<M, K>,
    | "maxConversations"
    | "idleTimeout"
    | "inboxCapacity"
    | "onRefuse"
    | "clock"
  > {
  /**
   * Port to listen on; 0 picks a free one (see `server.addr`).
   * @default {0}
   */
  port?: number;
  /**
   * Address to listen on.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * Turns a datagram into a message. If it throws, the datagram is dropped
   * and `onParseError` is told.
   * @default {the datagram itself}
   */
  parse?: (datagram: Datagram) => M;
  /** The conversation a message belongs to (a SIP Call-ID). */
  key: (message: M) => K;
  /**
   * Told about each datagram `parse` rejected (to answer it, say with a
   * SIP 400, use `server.send`).
   * @default {count it in `stats.malformed`, nothing else}
   */
  onParseError?: (error: unknown, datagram: Datagram) => void;
  /**
   * Receives conversation errors (with the key) and socket errors.
   * @default {console.error, except TimeoutError}
   */
  onError?: (error: unknown, key?: K) => void;
  /**
   * Datagrams queued for sending at most, besides the batch of up to 64
   * already handed to the socket; beyond it `send` drops and returns false
   * (UDP may drop anyway; memory stays bounded).
   * @default {4096}
   */
  maxSendQueue?: number;
  /** Aborting it shuts the server down with `shutdownGrace`. */
  signal?: AbortSignal;
  /**
   * Grace for shutdowns by `signal`, `Symbol.asyncDispose`, and
   * `shutdown()` called without one, in ms.
   * @default {0}
   */
  shutdownGrace?: number;
}

/**
 * Counters of a {@linkcode DatagramServer}; a live view.
 *
 * @example Read the counters from server.stats
 * ```ts
 * import { serveDatagram } from "@corio/corio";
 *
 * const { promise: received, resolve } = Promise.withResolvers<void>();
 * const server = serveDatagram({ hostname: "127.0.0.1", key: () => "self" }, function* () {
 *   resolve();
 * });
 * server.send("ping", server.addr); // to itself
 * await received;
 * await server.shutdown(); // flushes the send queue
 * const { sent, received: count, malformed } = server.stats;
 * console.log(sent, count, malformed); // 1 1 0
 * ```
 */
export interface DatagramStats {
  /** Datagrams received. */
  received: number;
  /** Datagrams `parse` rejected. */
  malformed: number;
  /** Datagrams sent. */
  sent: number;
  /** Sends dropped because the queue was full or the socket closed. */
  sendDropped: number;
  /** Sends or receives the socket failed. */
  socketErrors: number;
}

/**
 * Options for {@linkcode DatagramServer.shutdown}.
 *
 * @example Give running conversations 5 s to finish
 * ```ts
 * import { serveDatagram } from "@corio/corio";
 *
 * const server = serveDatagram({ hostname: "127.0.0.1", key: () => "all" }, function* () {});
 * await server.shutdown({ grace: 5000 }); // at once here: no conversation is running
 * ```
 */
export interface DatagramShutdownOptions {
  /**
   * How long running conversations may go on (still receiving their
   * messages) before they are cancelled, in ms.
   * @default {the server's `shutdownGrace`}
   */
  grace?: number;
}

export const DEFAULTS = {
  port: 0,
  hostname: "0.0.0.0",
  maxSendQueue: 4096,
  shutdownGrace: 0,
} as const;
