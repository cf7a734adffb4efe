/**
 * `serveDatagram`: a UDP server whose conversations are coroutines. One
 * socket, one reader loop: each datagram is parsed and routed by key to its
 * conversation (see {@linkcode Conversations}); replies go out through one
 * ordered send queue.
 *
 * `Deno.listenDatagram` is unstable: run with `--unstable-net`, or put
 * `"unstable": ["net"]` in `deno.json`.
 *
 * @module
 */

import { type ConversationHandler, Conversations } from "./conversations.ts";
import type { Clock } from "./timers.ts";
import { callOnError } from "./_on_error.ts";
import { checkPort } from "./_connect_options.ts";
import { addressOf } from "./_address.ts";
import { withPath } from "./_listen.ts";
import {
  type Datagram,
  type DatagramHandler,
  type DatagramShutdownOptions,
  type DatagramStats,
  DEFAULTS,
  type ServeDatagramOptions,
} from "./_datagram_options.ts";

export type {
  Datagram,
  DatagramHandler,
  DatagramShutdownOptions,
  DatagramStats,
  ServeDatagramOptions,
} from "./_datagram_options.ts";

/**
 * A running UDP server. `await server.finished` to serve until shutdown.
 *
 * @example
 * ```ts
 * import { serveDatagram } from "@corio/corio";
 *
 * await using server = serveDatagram({
 *   hostname: "127.0.0.1",
 *   key: (datagram) => `${datagram.remoteAddr.hostname}:${datagram.remoteAddr.port}`,
 * }, function* (inbox, first, server) {
 *   server.send(first!.data, first!.remoteAddr); // echo the first datagram
 * });
 * console.log(server.addr.port > 0); // true
 * ```
 */
export class DatagramServer<M = Datagram, K = string>
  implements AsyncDisposable {
  /** The address the socket is bound to (the real port when 0 was asked). */
  readonly addr: Deno.NetAddr;
  /** The conversations the datagrams are routed to. */
  readonly conversations: Conversations<M, K>;
  /** Live counters. */
  readonly stats: DatagramStats = {
    received: 0,
    malformed: 0,
    sent: 0,
    sendDropped: 0,
    socketErrors: 0,
  };
  /** Resolves once the server has shut down and the socket is closed. */
  readonly finished: Promise<void>;

  #socket: Deno.DatagramConn;
  #options: ServeDatagramOptions<M, K>;
  #onError: (error: unknown, key?: K) => void;
  #maxSendQueue: number;
  #queue: [Uint8Array, Deno.NetAddr][] = [];
  #queueHead = 0;
  #isSending = false;
  #drained: (() => void) | null = null;
  #isStopping = false;
  #isClosed = false;
  #reader: Promise<void>;
  #shutdown: Promise<void> | null = null;
  #resolveFinished!: () => void;

  /** @internal Use {@linkcode serveDatagram}. */
  constructor(
    options: ServeDatagramOptions<M, K>,
    handler?: DatagramHandler<M, K>,
  ) {
    if (handler !== undefined && typeof handler !== "function") {
      throw new TypeError(
        "Cannot serve datagrams: handler must be a function* or async function*",
      );
    }
    if (options.port !== undefined) {
      checkPort(options.port, "serve datagrams");
    }
    const maxSendQueue = options.maxSendQueue ?? DEFAULTS.maxSendQueue;
    if (!Number.isInteger(maxSendQueue) || maxSendQueue < 1) {
      throw new RangeError(
        `Cannot serve datagrams: maxSendQueue must be an integer >= 1, got ${maxSendQueue}`,
      );
    }
    const grace = options.shutdownGrace;
    if (grace !== undefined && !(grace >= 0)) {
      throw new RangeError(
        `Cannot serve datagrams: shutdownGrace must be >= 0, got ${grace}`,
      );
    }
    this.#options = options;
    this.#maxSendQueue = maxSendQueue;
    this.#onError = options.onError ?? ((error) => console.error(error));
    const conversationHandler: ConversationHandler<M, K> | undefined = handler
      ? (inbox, first) => handler(inbox, first, this)
      : undefined;
    this.conversations = new Conversations<M, K>({
      key: options.key,
      handler: conversationHandler,
      maxConversations: options.maxConversations,
      idleTimeout: options.idleTimeout,
      inboxCapacity: options.inboxCapacity,
      onRefuse: options.onRefuse,
      onError: options.onError,
      clock: options.clock as Clock | undefined,
    });
    // A virtual clock then holds still while a conversation waits for a
    // datagram, as it does for a TCP handler's receive.
    this.conversations._isFedExternally = true;
    this.#socket = Deno.listenDatagram({
      port: options.port ?? DEFAULTS.port,
      hostname: options.hostname ?? DEFAULTS.hostname,
      transport: "udp",
    });
    this.addr = this.#socket.addr as Deno.NetAddr;
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#reader = this.#read();
    const signal = options.signal;
    if (signal) {
      const stop = () => this.shutdown({ grace: options.shutdownGrace });
      if (signal.aborted) stop();
      else {
        signal.addEventListener("abort", stop, { once: true });
        // A shutdown by other means lets go of a longer-lived signal: its
        // listener would keep the stopped server reachable.
        this.finished.then(() => signal.removeEventListener("abort", stop));
      }
    }
  }

  /**
   * Queues a datagram to `to`. Never blocks: queued datagrams go out in
   * call order, up to 64 at a time (the runtime may reorder a batch that
   * had to wait for a full send buffer; UDP promises no order anyway). A
   * send error is counted and reported to `onError`.
   *
   * @param data The bytes, or text sent as UTF-8.
   * @param to The destination, usually a message's `remoteAddr`.
   * @returns False if dropped (queue full, or the socket is closed).
   */
  send(data: Uint8Array | string, to: Deno.NetAddr): boolean {
    const queued = this.#queue.length - this.#queueHead;
    if (this.#isClosed || queued >= this.#maxSendQueue) {
      this.stats.sendDropped++;
      return false;
    }
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    this.#queue.push([bytes, { ...to, transport: "udp" }]);
    if (!this.#isSending) this.#pump();
    return true;
  }

  /**
   * Refuses new conversations at once, lets running ones finish for up to
   * `grace` ms (they still receive their datagrams and can send), then
   * cancels the rest, flushes the send queue and closes the socket.
   * `conversations.signal` aborts as it begins: a conversation waiting with
   * it can say goodbye and return at once. Idempotent: later calls return
   * the same promise.
   *
   * @param options The grace period: by default the server's
   *   `shutdownGrace` (0 unless set).
   * @returns Resolves when everything is closed.
   */
  shutdown(options: DatagramShutdownOptions = {}): Promise<void> {
    const grace = options.grace ?? this.#options.shutdownGrace ??
      DEFAULTS.shutdownGrace;
    if (!(grace >= 0)) {
      throw new RangeError(
        `Cannot shut down: grace must be >= 0, got ${grace}`,
      );
    }
    return this.#shutdown ??= this.#stop(grace);
  }

  /** Shuts down with the `shutdownGrace` option. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown({ grace: this.#options.shutdownGrace });
  }

  // One reader loop, never two receive() calls in flight: two pending
  // receives on one socket deliver in reverse order (measured, Deno 2.9.6).
  async #read(): Promise<void> {
    const parse = this.#options.parse ?? ((datagram) => datagram as M);
    const onParseError = this.#options.onParseError;
    const conversations = this.conversations;
    const stats = this.stats;
    // One buffer for every receive (only one is ever in flight); each
    // datagram is copied out at its own size. Without a buffer Deno
    // allocates 64 KiB per datagram, and a message that keeps a view of it
    // pins all of it (measured: ~180 KiB RSS per lingering SIP call).
    const buffer = new Uint8Array(MAX_DATAGRAM);
    for (;;) {
      let data: Uint8Array<ArrayBuffer>;
      let remoteAddr: Deno.Addr;
      try {
        [data, remoteAddr] = await this.#socket.receive(buffer);
        data = data.slice();
      } catch (error) {
        if (this.#isClosed || error instanceof Deno.errors.BadResource) break;
        // ICMP errors (ECONNREFUSED) can surface here; the socket lives on.
        stats.socketErrors++;
        this.#report(error);
        continue;
      }
      stats.received++;
      const datagram = { data, remoteAddr: remoteAddr as Deno.NetAddr };
      let message: M;
      try {
        message = parse(datagram);
      } catch (error) {
        stats.malformed++;
        if (onParseError) this.#guard(() => onParseError(error, datagram));
        continue;
      }
      this.#guard(() => conversations.dispatch(message));
    }
  }

  // Deno performs a UDP send inside the call when the socket can take it,
  // and its promise settles in a microtask, behind whatever the reader loop
  // queued meanwhile; the reader also goes on in microtasks while datagrams
  // wait at the socket. Awaiting each send, the pump sent about one
  // datagram per datagram received (a flood with two replies each: 1.19,
  // and 42,279 of them dropped at a full queue; B13's SIP replies outnumber
  // requests). So it sends a batch of what is queued, back to back in call
  // order, and awaits them together. Sends that have to wait for the socket
  // (fresh in this turn, or a full send buffer) finish in another order: a
  // burst on a socket fresh in this turn arrives reversed (measured). The
  // first send() starts the pump at once, so a fresh socket's first batch
  // is one datagram.
  async #pump(): Promise<void> {
    this.#isSending = true;
    const queue = this.#queue;
    const batch: Promise<void>[] = [];
    while (this.#queueHead < queue.length) {
      while (this.#queueHead < queue.length && batch.length < MAX_SEND_BATCH) {
        const [bytes, to] = queue[this.#queueHead];
        queue[this.#queueHead++] = undefined as never;
        batch.push(this.#sendOne(bytes, to));
      }
      await Promise.all(batch);
      batch.length = 0;
      // Sends may keep the queue from ever emptying: drop the slots sent
      // once they are half of it, or it grows by one per datagram sent.
      const head = this.#queueHead;
      if (head >= 1024 && head * 2 >= queue.length) {
        queue.splice(0, head);
        this.#queueHead = 0;
      }
    }
    queue.length = 0;
    this.#queueHead = 0;
    this.#isSending = false;
    const drained = this.#drained;
    this.#drained = null;
    drained?.();
  }

  async #sendOne(bytes: Uint8Array, to: Deno.NetAddr): Promise<void> {
    try {
      await this.#socket.send(bytes, to);
      this.stats.sent++;
    } catch (error) {
      this.stats.socketErrors++;
      // Deno's error names no destination ("Invalid argument (os error
      // 22)" for port 0, EAFNOSUPPORT for an IPv6 one on an IPv4 socket).
      if (!this.#isClosed) {
        this.#report(withPath(error, `Cannot send to ${addressOf(to)}`));
      }
    }
  }

  async #stop(grace: number): Promise<void> {
    this.#isStopping = true;
    await this.conversations.shutdown({ grace });
    if (this.#isSending) {
      await new Promise<void>((resolve) => this.#drained = resolve);
    }
    this.#isClosed = true;
    try {
      this.#socket.close();
    } catch {
      // Already closed.
    }
    await this.#reader;
    this.#resolveFinished();
  }

  #guard(action: () => unknown): void {
    try {
      action();
    } catch (error) {
      this.#report(error);
    }
  }

  #report(error: unknown): void {
    callOnError(this.#onError, error);
  }

  /** True once `shutdown()` was called. */
  get isStopping(): boolean {
    return this.#isStopping;
  }
}

const encoder = new TextEncoder();
// Sends issued together at most (see #pump).
const MAX_SEND_BATCH = 64;
// The largest UDP payload: 65,527 B over IPv6 (without jumbograms), 65,507
// over IPv4. A receive buffer any smaller cuts a datagram short, silently.
const MAX_DATAGRAM = 65_527;

/**
 * Serves UDP: one `Deno.listenDatagram` socket and one reader loop. Each
 * datagram is parsed and dispatched by `key` to its conversation — a
 * coroutine `handler(inbox, first, server)` started for each new key —
 * and replies are sent with `server.send(data, message.remoteAddr)`.
 * Needs `--unstable-net` (or `"unstable": ["net"]` in `deno.json`).
 *
 * Under load, the kernel drops what arrives while the socket's receive
 * buffer is full, before the server sees it. Deno has no option for that
 * buffer's size (SO_RCVBUF), so it is the system's default,
 * `net.core.rmem_default` on Linux (208 KiB: a few ms of SIP traffic at
 * thousands of calls/s); a collection pause longer than that loses
 * datagrams, and the peers must retransmit them (`bench/sip_bench.ts`
 * counts the drops).
 *
 * @param options Address, parse and key, limits, hooks.
 * @param handler Started for each new key; without one, conversations
 * begin only with `server.conversations.start()` (a client).
 * @returns The running {@linkcode DatagramServer}.
 * @throws {RangeError} For nonsense options.
 * @throws {Deno.errors.AddrInUse} If the port is taken.
 *
 * @example Answer each sender's first datagram, then wait 1 s for a second
 * ```ts
 * import { serveDatagram } from "@corio/corio";
 *
 * const server = serveDatagram({
 *   hostname: "127.0.0.1",
 *   parse: (datagram) => ({ text: new TextDecoder().decode(datagram.data), from: datagram.remoteAddr }),
 *   key: (message) => `${message.from.hostname}:${message.from.port}`,
 * }, async function* (inbox, first, server) {
 *   server.send(`hello ${first!.text}`, first!.from);
 *   const second = yield* inbox.poll({ timeout: 1000 });
 *   if (second) server.send(`again ${second.text}`, second.from);
 * });
 * console.log(`listening on ${server.addr.hostname}:${server.addr.port}`);
 * await server.shutdown();
 * ```
 */
export function serveDatagram<M = Datagram, K = string>(
  options: ServeDatagramOptions<M, K>,
  handler?: DatagramHandler<M, K>,
): DatagramServer<M, K> {
  return new DatagramServer(options, handler);
}
