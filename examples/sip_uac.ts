/**
 * A SIP client: places calls over UDP, each a conversation coroutine —
 * INVITE (retransmitted on Timer A, given up at Timer B), ACK, hold, BYE —
 * and prints how each went.
 *
 *     deno run --allow-net --unstable-net examples/sip_uac.ts --target 127.0.0.1:5060
 *       [--calls 10] [--rate 10] [--hold 0] [--t1 500] [--t2 4000]
 *       [--port 0] [--hostname 127.0.0.1]
 *
 * Prints `listening on HOST:PORT` (its own socket) first, one line per
 * call, then `calls: N completed: C failed: F`; exits 0 only if every call
 * completed.
 *
 * @module
 */

import {
  type Clock,
  delay,
  Inbox,
  run,
  serveDatagram,
  type Task,
} from "@corio/corio";
import {
  getHeader,
  parseSipMessage,
  serializeSipMessage,
  type SipMessage,
} from "./sip/message.ts";
import { type Incoming, randomToken } from "./sip/transaction.ts";
import { type CallResult, uacCall } from "./sip/uac_call.ts";
import { parseFlags } from "./_flags.ts";
import { describeFailure } from "./_main.ts";

/** Options for {@linkcode placeCalls}. */
export interface PlaceCallsOptions {
  /** The server, `host:port`. */
  target: string;
  /** @default {1} */
  calls?: number;
  /** New calls per second. @default {10} */
  rate?: number;
  /** ms between ACK and BYE. @default {0} */
  holdTime?: number;
  /** @default {500} */
  t1?: number;
  /** @default {4000} */
  t2?: number;
  /** Our port. @default {0} */
  port?: number;
  /** Our address. @default {"127.0.0.1"} */
  hostname?: string;
  /** The clock the calls' timers run on (virtual in tests). @default {systemClock} */
  clock?: Clock;
  /** Told once the socket is bound. */
  onListening?: (addr: Deno.NetAddr) => void;
  /** Told of each call's result as soon as it is known. */
  onResult?: (index: number, result: CallResult) => void;
}

/**
 * Places the calls, `rate` per second, and returns their results in order
 * once all are known; a call that still waits out Timer D (after a non-2xx
 * answer) is cancelled then, as the socket closes.
 */
export async function placeCalls(
  options: PlaceCallsOptions,
): Promise<CallResult[]> {
  const [host, portText] = options.target.split(/:(?=\d+$)/);
  const targetAddr: Deno.NetAddr = {
    transport: "udp",
    hostname: host,
    port: Number(portText ?? 5060),
  };
  const count = options.calls ?? 1;
  const rate = options.rate ?? 10;
  if (!(count >= 1) || !(rate > 0)) {
    throw new RangeError("Cannot place calls: need calls >= 1 and rate > 0");
  }
  const socket = serveDatagram<Incoming, string>({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
    maxConversations: count,
    // Each call's own timers end it (Timer B or C, the hold, Timer F, Timer
    // D); an idle timeout would cut a call held longer than it.
    idleTimeout: Infinity,
    clock: options.clock,
    parse: (datagram) => ({
      message: parseSipMessage(datagram.data),
      reply: (message: SipMessage) =>
        void socket.send(serializeSipMessage(message), datagram.remoteAddr),
    }),
    key: (incoming) => getHeader(incoming.message, "Call-ID")!,
  }); // no handler: messages of unknown calls are dropped
  options.onListening?.(socket.addr);
  const hostport = `${socket.addr.hostname}:${socket.addr.port}`;
  const send = (message: SipMessage) =>
    void socket.send(serializeSipMessage(message), targetAddr);
  try {
    return await run(
      (async function* () {
        const tasks: Task<unknown>[] = [];
        const results: CallResult[] = [];
        // Each call's index, once its result is known or it ended without
        // one (it threw, or was cancelled).
        const decided = new Inbox<number>({ capacity: count });
        for (let index = 0; index < count; index++) {
          if (index > 0) yield* delay(1000 / rate);
          const callId = `${randomToken()}@${hostport}`;
          const onResult = (result: CallResult) => {
            results[index] = result;
            options.onResult?.(index, result);
            decided.push(index);
          };
          const task = socket.conversations.start(
            callId,
            (inbox) =>
              (async function* () {
                try {
                  return yield* uacCall(inbox, {
                    callId,
                    send,
                    target: options.target,
                    hostport,
                    holdTime: options.holdTime,
                    t1: options.t1,
                    t2: options.t2,
                    clock: socket.conversations.scheduler.clock,
                    onResult,
                  });
                } finally {
                  if (results[index] === undefined) decided.push(index);
                }
              })(),
          );
          tasks.push(task);
        }
        for (let known = 0; known < count; known++) {
          const index = yield* decided.recv();
          if (results[index] === undefined) yield* tasks[index].join(); // throws why
        }
        return results;
      })(),
      { scheduler: socket.conversations.scheduler },
    );
  } finally {
    await socket.shutdown();
  }
}

if (import.meta.main) {
  const flags = parseFlags({
    target: "127.0.0.1:5060",
    calls: 10,
    rate: 10,
    hold: 0,
    t1: 500,
    t2: 4000,
    port: 0,
    hostname: "127.0.0.1",
  }, {
    calls: { integer: true, min: 1 },
    rate: { above: 0, orInfinity: true }, // Infinity: all at once
    hold: { min: 0 },
    t1: { above: 0 }, // resolveTimers() takes 0 < t1 <= t2
    t2: { min: "t1" },
  }, {
    about: `Seed 000's SIP client: places --calls calls to --target over UDP,
--rate per second, each INVITE, ACK, a --hold of ms, BYE, with RFC 3261's
retransmission timers (--t1, --t2 in ms).

Prints "listening on HOST:PORT" (its own socket) first, a line per call,
then a summary; exits 0 only if every call completed.`,
  });
  const placing = placeCalls({
    target: flags.target,
    calls: flags.calls,
    rate: flags.rate,
    holdTime: flags.hold,
    t1: flags.t1,
    t2: flags.t2,
    port: flags.port,
    hostname: flags.hostname,
    onListening: (addr) =>
      console.log(`listening on ${addr.hostname}:${addr.port}`),
    onResult: (index, result) =>
      console.log(
        `call ${index + 1} ${result.callId}: ${result.outcome}; setup ${
          result.setupTime.toFixed(1)
        } ms, INVITE sent ${result.inviteSends}x`,
      ),
  });
  // Its socket not bound (a port in use), say so as a command does.
  const results = await placing.catch((error) => {
    console.error(describeFailure("place calls", error));
    return Deno.exit(1);
  });
  const completed = results.filter((result) => result.isCompleted).length;
  console.log(
    `calls: ${results.length} completed: ${completed} failed: ${
      results.length - completed
    }`,
  );
  Deno.exit(completed === results.length ? 0 : 1);
}
