/**
 * Seed 000's SIP server: each call is a conversation coroutine keyed by
 * Call-ID — INVITE → 100 Trying → 180 Ringing → 200 OK, retransmitted per
 * Timer G until the ACK (or a BYE at Timer H), then BYE → 200 OK. OPTIONS
 * → 200 OK; malformed requests → 400 Bad Request. Over UDP (one socket,
 * one reader loop) or TCP (messages framed by Content-Length).
 *
 *     deno run --allow-net --unstable-net examples/sip_uas.ts [--port 5060]
 *       [--hostname 0.0.0.0] [--transport udp|tcp] [--t1 500] [--t2 4000]
 *       [--no-ringing] [--max-calls 10000] [--idle-timeout 3600000]
 *
 * (`--unstable-net` is for `Deno.listenDatagram`; this repository's
 * deno.json turns it on.) Prints `listening on HOST:PORT` first;
 * SIGINT/SIGTERM stop it with a 1 s grace and print its counters.
 *
 * A call that receives nothing for `--idle-timeout` ms is dropped (as
 * "cancelled"): between ACK and BYE a call receives nothing, so this is how
 * long a call may last whose caller never hangs up.
 *
 * @module
 */

import {
  type Connection,
  type ConversationHandler,
  Conversations,
  type ConversationStats,
  type Coroutine,
  Inbox,
  serve,
  serveDatagram,
  spawn,
  TimeoutError,
} from "@corio/corio";
import {
  badRequestFor,
  getHeader,
  parseSipMessage,
  serializeSipMessage,
  type SipMessage,
  SipParseError,
} from "./sip/message.ts";
import { recvSipMessage, SipFramingError } from "./sip/tcp.ts";
import type { Incoming } from "./sip/transaction.ts";
import { uas, type UasHandler, type UasOptions } from "./sip/uas_call.ts";
import { parseFlags } from "./_flags.ts";
import { orExit } from "./_main.ts";

/** Options for {@linkcode startUas}. */
export interface StartUasOptions
  extends Omit<UasOptions, "hostport" | "isReliable"> {
  /** @default {5060} */
  port?: number;
  /** @default {"0.0.0.0"} */
  hostname?: string;
  /** @default {"udp"} */
  transport?: "udp" | "tcp";
  /** Calls at once (`maxConversations`); beyond it: 503. @default {10000} */
  maxCalls?: number;
  /**
   * A call that receives no message for this long is dropped, in ms
   * (`idleTimeout`): the longest call whose caller never sends its BYE.
   * @default {3600000}
   */
  idleTimeout?: number;
}

/** A running UAS. */
export interface RunningUas {
  /** Where it listens. */
  addr: Deno.NetAddr;
  /**
   * Its counters, for the shutdown report: `calls` by outcome, the
   * transport's counters (over TCP `active`, `refused` and `failed` count
   * connections), and the calls' under names of their own: `activeCalls`,
   * `refusedCalls` (503 at the cap), `failedCalls`, `started`, `expired`, ...
   */
  stats(): Record<string, unknown>;
  /**
   * Stops it: new calls get 503 at once, running calls (and over TCP
   * their connections) get `grace` ms.
   */
  shutdown(grace: number): Promise<void>;
}

const callId = (incoming: Incoming) => getHeader(incoming.message, "Call-ID")!;

/** Starts the UAS over UDP or TCP. */
export function startUas(options: StartUasOptions = {}): RunningUas {
  const hostname = options.hostname ?? "0.0.0.0";
  const port = options.port ?? 5060;
  const calls: Record<string, number> = {};
  const onCallEnd = (_: string, outcome: string) =>
    void (calls[outcome] = (calls[outcome] ?? 0) + 1);
  const contactHost = hostname === "0.0.0.0" ? "127.0.0.1" : hostname;
  const idleTimeout = options.idleTimeout ?? 3_600_000;
  // The handler's Contact needs the bound port, known once listening; no
  // message can arrive before then.
  let handler: UasHandler;
  // At the call cap or shutting down: the UAS's answer (see its refuse).
  const refuse = (
    incoming: Incoming,
    _: string,
    reason: "refused" | "overflow" | "closed",
  ) => handler.refuse(incoming, reason);
  const route: ConversationHandler<Incoming, string> = (inbox, first, key) =>
    handler(inbox, first, key);

  if (options.transport !== "tcp") {
    const server = serveDatagram<Incoming, string>({
      hostname,
      port,
      maxConversations: options.maxCalls,
      idleTimeout,
      clock: options.clock,
      parse: (datagram) => {
        const message = parseSipMessage(datagram.data);
        // The reply keeps only the address: the datagram's bytes can go
        // once parsed, though a call keeps its first message's reply.
        const to = datagram.remoteAddr;
        return {
          message,
          reply: (reply: SipMessage) =>
            void server.send(serializeSipMessage(reply), to),
        };
      },
      key: callId,
      onParseError: (error, datagram) => {
        if (!(error instanceof SipParseError)) return console.error(error);
        const response = badRequestFor(datagram.data, error.reason);
        if (response) server.send(response, datagram.remoteAddr);
      },
      onRefuse: refuse,
    }, (inbox, first) => route(inbox, first, ""));
    handler = uas({
      ...options,
      hostport: `${contactHost}:${server.addr.port}`,
      onCallEnd,
    });
    return {
      addr: server.addr,
      stats: () => ({
        calls,
        ...server.stats,
        ...callStats(server.conversations.stats),
      }),
      shutdown: (grace) => server.shutdown({ grace }),
    };
  }

  const conversations = new Conversations<Incoming, string>({
    key: callId,
    handler: route,
    maxConversations: options.maxCalls,
    idleTimeout,
    onRefuse: refuse,
    clock: options.clock,
  });
  const server = serve(
    { hostname, port, onError: reportUnexpected, clock: options.clock },
    (conn) => sipConnection(conn, conversations),
  );
  handler = uas({
    ...options,
    isReliable: true,
    hostport: `${contactHost}:${server.addr.port}`,
    onCallEnd,
  });
  return {
    addr: server.addr,
    stats: () => ({
      calls,
      ...server.stats,
      ...callStats(conversations.stats),
    }),
    // Together: new calls are refused at once, while the connections stay
    // up for the calls' grace (their replies go out on them).
    shutdown: async (grace) => {
      await Promise.all([
        conversations.shutdown({ grace }),
        server.shutdown({ grace }),
      ]);
    },
  };
}

/**
 * The calls' counters, renamed where the TCP server's own (connections)
 * have the same names.
 */
function callStats(
  { active, refused, failed, ...rest }: ConversationStats,
): Record<string, number> {
  return {
    ...rest,
    activeCalls: active,
    refusedCalls: refused,
    failedCalls: failed,
  };
}

// What a client can cause on its own connection (gone mid-message, reset,
// silent) is no server fault worth a stack trace.
/** The writer's last entry in a connection's outbox. */
const END = Symbol("end of replies");

function reportUnexpected(error: unknown): void {
  if (
    error instanceof Error &&
    /Timeout|Reset|Closed|IncompleteRead/.test(error.name)
  ) return;
  console.error(error);
}

/**
 * One TCP connection: read framed messages and dispatch them by Call-ID;
 * replies go through an outbox that a child coroutine writes out, so a
 * conversation never waits on this socket.
 */
async function* sipConnection(
  conn: Connection,
  conversations: Conversations<Incoming, string>,
): Coroutine<void> {
  const outbox = new Inbox<Uint8Array | typeof END>({ capacity: 1024 });
  const writer = yield* spawn((async function* writer() {
    for (let bytes; (bytes = yield* outbox.recv()) !== END;) {
      yield* conn.send(bytes);
    }
  })());
  // A client that lets 1024 replies pile up unread loses its connection,
  // not replies one by one without a word.
  const reply = (message: SipMessage) => {
    if (!outbox.push(serializeSipMessage(message))) conn.close();
  };
  yield* readRequests(conn, conversations, reply);
  // The client's end of stream (or lost framing) ends the reading, not the
  // replies already queued: they go out before the connection closes (for
  // at most 5 s, to a client that reads no more).
  if (!conn.isClosed && outbox.push(END)) {
    try {
      yield* writer.join({ timeout: 5000 });
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
    }
  }
}

/** Reads requests until the client's end of stream or lost framing. */
async function* readRequests(
  conn: Connection,
  conversations: Conversations<Incoming, string>,
  reply: (message: SipMessage) => void,
): Coroutine<void> {
  for (;;) {
    let message: SipMessage | null;
    try {
      message = yield* recvSipMessage(conn);
    } catch (error) {
      if (!(error instanceof SipParseError)) throw error;
      // Addressed as over UDP: a response without the request's Via is
      // discarded by the client (RFC 3261 §18.1.2), so none is sent then.
      // (A line over the limit has closed the connection already.)
      const response = error.input && badRequestFor(error.input, error.reason);
      if (response && !conn.isClosed) yield* conn.send(response);
      if (error instanceof SipFramingError) return; // the stream cannot be resynchronised
      continue;
    }
    if (message === null) return;
    const incoming = { message, reply };
    conversations.dispatch(incoming); // shutting down, onRefuse answers
  }
}

if (import.meta.main) {
  const flags = parseFlags({
    port: 5060,
    hostname: "0.0.0.0",
    transport: "udp",
    t1: 500,
    t2: 4000,
    "no-ringing": false,
    "max-calls": 10000,
    "idle-timeout": 3_600_000,
  }, {
    t1: { above: 0 }, // resolveTimers() takes 0 < t1 <= t2
    t2: { min: "t1" },
    "max-calls": { integer: true, min: 1 },
    "idle-timeout": { above: 0, orInfinity: true },
  }, {
    about: `Seed 000's SIP server: one conversation coroutine per call, over UDP
or TCP (--transport). Answers INVITE with 100, 180 (unless --no-ringing)
and 200, retransmitted until the ACK (--t1, --t2 in ms), then waits for
the BYE; at most --max-calls calls at once (then 503). A call silent for
--idle-timeout ms is dropped.

Prints "listening on HOST:PORT" first; SIGINT/SIGTERM stop it with a 1 s
grace and print its counters.`,
  });
  if (flags.transport !== "udp" && flags.transport !== "tcp") {
    console.error(`--transport must be udp or tcp, got ${flags.transport}`);
    Deno.exit(2);
  }
  const uasServer = orExit(
    `listen on ${flags.transport} ${flags.hostname}:${flags.port}`,
    () =>
      startUas({
        port: flags.port,
        hostname: flags.hostname,
        transport: flags.transport as "udp" | "tcp",
        t1: flags.t1,
        t2: flags.t2,
        ringing: !flags["no-ringing"],
        maxCalls: flags["max-calls"],
        idleTimeout: flags["idle-timeout"],
      }),
  );
  console.log(`listening on ${uasServer.addr.hostname}:${uasServer.addr.port}`);
  const stopped = Promise.withResolvers<void>();
  const onSignal = () => stopped.resolve();
  const signals = ["SIGINT", "SIGTERM"] as const;
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);
  await stopped.promise;
  for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  await uasServer.shutdown(1000);
  console.log(`stopped: ${JSON.stringify(uasServer.stats())}`);
}
