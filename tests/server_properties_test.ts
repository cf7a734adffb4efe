// Properties of `serve` under random schedules, on a virtual clock.
//
// A random server (cap, per-peer cap, recvTimeout/sendTimeout defaults,
// eviction on or off, a default handler) on the in-memory listener path,
// up to 8 clients from 3 peers connecting at random moments, and a stop at
// a random moment: `shutdown({ grace })`, `Symbol.asyncDispose` or the
// `signal` (with `shutdownGrace`), called again later. `onAccept` refuses a
// client, lets the default handler serve it, or picks one of four handlers
// in either form (`function*`, `async function*`): an echo of lines, a
// duplex one (a reader child echoes while the parent sends ticks, then
// joins it), a sleeper and a flood. A client sends lines ("boom" makes the
// line's reader throw), reads or never reads, then half-closes, resets or
// holds. Every receive, send, delay and join is logged with its virtual
// time, and the log is checked against what the docs promise (where two
// events fall on one instant, either order is accepted):
//
// - running handlers never exceed `maxConnections`, nor one peer's
//   `maxConnectionsPerPeer`; `onAccept` picks the handler that runs;
// - the stats add up and match the handlers: accepted, refused, peerLimited,
//   completed, failed, timeouts, cancelled, evicted, active;
// - every handler that started runs `finally` exactly once, and so does its
//   child; a handler that ends by itself closes its connection only once it
//   and its child are done; every connection is closed exactly once;
// - every handler error reaches `onError` exactly once, with the error
//   thrown and the connection's info (a child's error that the parent's
//   join delivered is the parent's error); nothing else reaches it;
// - bytes a client sends reach the handler as the same lines in order, and
//   the handler's sends reach the client whole and in call order (a send
//   cut by a timeout or a cancel ends the stream), unless the client reset;
// - a delay ends exactly on time; a receive times out exactly `recvTimeout`
//   after it began and only if its line (or the end) had not come before; a
//   send times out exactly `sendTimeout` after it began and only to a client
//   that does not read; a reset or a closed connection shows only after one;
// - the stop stops accepting at once (no handler starts, no `onAccept` runs
//   later), lets handlers run until exactly the grace deadline, then
//   cancels the rest (their `finally` runs at that instant); it resolves
//   (with `finished`) when the last handler is done, by then every socket
//   is closed; a second call returns the same promise; afterwards no handler
//   runs and no timer is left.

import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./_property.ts";
import {
  type Connection,
  ConnectionClosedError,
  type ConnectionInfo,
  type ConnectionOptions,
  ConnectionResetError,
  delay,
  type Handler,
  run,
  type ServeOptions,
  type Server,
  spawn,
  TimeoutError,
} from "@corio/corio";
import {
  memoryConnPair,
  type MemoryConnPairOptions,
  VirtualClock,
} from "@corio/corio/testing";
import { serveOn } from "../src/server.ts";
import { MemoryListener } from "../src/testing/memory_server.ts";

const RUNS = 200;

/** The driver's last wait: far past anything a run does. */
const HORIZON = 1_000_000;
const decoder = new TextDecoder();

// ---- scenarios

type Kind = "echo" | "duplex" | "sleep" | "flood";
type Form = "sync" | "async";

interface ClientPlan {
  /** ms after the previous step. */
  gap: number;
  peer: number;
  /** What `onAccept` answers for it. */
  admit: "default" | "true" | "refuse" | { kind: Kind; form: Form };
  lines: { gap: number; text: string }[];
  reads: boolean;
  /** After its lines and `endGap`: half-close, reset, or nothing. */
  end: "closeWrite" | "reset" | "hold";
  endGap: number;
  /** The sleeper's delay; the duplex handler's ticks and their period. */
  sleep: number;
  ticks: number;
  period: number;
}

interface Scenario {
  cap: number;
  perPeer: number;
  recvTimeout: number;
  sendTimeout: number;
  evictAfter: number;
  /** Bytes each direction of a connection holds. */
  capacity: number;
  handler: { kind: Kind; form: Form };
  stop: {
    how: "shutdown" | "dispose" | "signal";
    grace: number;
    /** Before the connect of this client (or after the last). */
    index: number;
    gap: number;
    /** ms after the stop, a second call. */
    again: number;
  };
  clients: ClientPlan[];
}

const kindOf = fc.constantFrom<Kind>("echo", "duplex", "sleep", "flood");
const formOf = fc.constantFrom<Form>("sync", "async");
const timeoutOf = fc.oneof(
  fc.constant(Infinity),
  fc.integer({ min: 5, max: 80 }),
);

const clientOf: fc.Arbitrary<ClientPlan> = fc.record({
  gap: fc.nat({ max: 25 }),
  peer: fc.nat({ max: 2 }),
  admit: fc.oneof(
    fc.constant("default" as const),
    fc.constant("true" as const),
    fc.constant("refuse" as const),
    {
      weight: 3,
      arbitrary: fc.record({ kind: kindOf, form: formOf }),
    },
  ),
  lines: fc.array(
    fc.record({
      gap: fc.nat({ max: 30 }),
      text: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom("a", "bb", "ccc") },
        fc.constant("boom"),
      ),
    }),
    { maxLength: 4 },
  ),
  reads: fc.oneof(
    { weight: 3, arbitrary: fc.constant(true) },
    fc.constant(false),
  ),
  end: fc.constantFrom(
    "closeWrite" as const,
    "reset" as const,
    "hold" as const,
  ),
  endGap: fc.nat({ max: 60 }),
  sleep: fc.nat({ max: 60 }),
  ticks: fc.nat({ max: 3 }),
  period: fc.integer({ min: 1, max: 20 }),
});

const scenarioOf: fc.Arbitrary<Scenario> = fc.record({
  cap: fc.integer({ min: 1, max: 4 }),
  perPeer: fc.oneof(fc.constant(Infinity), fc.integer({ min: 1, max: 2 })),
  recvTimeout: timeoutOf,
  sendTimeout: timeoutOf,
  evictAfter: fc.oneof(
    { weight: 3, arbitrary: fc.constant(Infinity) },
    fc.integer({ min: 5, max: 60 }),
  ),
  capacity: fc.integer({ min: 8, max: 32 }),
  handler: fc.record({ kind: kindOf, form: formOf }),
  stop: fc.record({
    how: fc.constantFrom(
      "shutdown" as const,
      "dispose" as const,
      "signal" as const,
    ),
    grace: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 100 })),
    // Mostly after the last connect, while handlers run; else among them.
    index: fc.oneof(
      { weight: 2, arbitrary: fc.constant(8) },
      fc.nat({ max: 7 }),
    ),
    gap: fc.nat({ max: 100 }),
    again: fc.nat({ max: 150 }),
  }),
  clients: fc.array(clientOf, { minLength: 1, maxLength: 8 }),
});

// ---- the log

interface OpRecord {
  kind: "recv" | "send" | "delay" | "join" | "idle";
  by: Actor;
  seq: number;
  begin: number;
  /** A send's text; a delay's ms. */
  text: string;
  ms: number;
  /** When it returned or threw; null while it has not. */
  end: number | null;
  value?: unknown;
  error?: unknown;
}

/** One coroutine of a handler (the handler itself or its child). */
class Actor {
  pending: OpRecord | null = null;
  outcome: "returned" | "threw" | null = null;
  error: unknown = undefined;
  finallies = 0;
  finallyAt = NaN;
  finallySeq = 0;
  readonly startAt: number;
  constructor(readonly served: Served, readonly name: "handler" | "child") {
    this.startAt = served.world.now();
    served.world.tick();
  }
  begin(kind: OpRecord["kind"], text = "", ms = 0): void {
    const world = this.served.world;
    const op: OpRecord = {
      kind,
      by: this,
      seq: world.tick(),
      begin: world.now(),
      text,
      ms,
      end: null,
    };
    this.served.ops.push(op);
    this.pending = op;
  }
  ok<T>(value: T): T {
    const op = this.pending!;
    op.end = this.served.world.now();
    op.value = value;
    this.pending = null;
    return value;
  }
  boom(): Error {
    return new Error(`boom in the ${this.name} of ${this.served.id}`);
  }
  threw(error: unknown): void {
    const op = this.pending;
    if (op !== null) {
      op.end = this.served.world.now();
      op.error = error;
      this.pending = null;
    }
    this.outcome = "threw";
    this.error = error;
  }
  returned(): void {
    this.outcome = "returned";
  }
  fin(): void {
    this.finallies++;
    this.finallyAt = this.served.world.now();
    this.finallySeq = this.served.world.tick();
  }
}

/** A handler the server started (called the handler function for). */
class Served {
  handler: Actor | null = null;
  child: Actor | null = null;
  ops: OpRecord[] = [];
  #sends = 0;
  readonly createdAt: number;
  readonly createdSeq: number;
  constructor(
    readonly world: World,
    readonly client: ClientRecord,
    readonly id: number,
    readonly kind: Kind,
    readonly form: Form,
    readonly conn: Connection,
  ) {
    this.createdAt = world.now();
    this.createdSeq = world.tick();
  }
  enter(name: "handler" | "child"): Actor {
    const actor = new Actor(this, name);
    if (name === "handler") this.handler = actor;
    else this.child = actor;
    return actor;
  }
  /** A unique line to send: a partial one is told apart from the next. */
  text(payload: string): string {
    return `<${this.#sends++}|${payload}>\n`;
  }
  get isEnded(): boolean {
    return this.handler !== null && this.handler.finallies > 0;
  }
}

interface ClientRecord {
  index: number;
  plan: ClientPlan;
  conn: Connection;
  connectAt: number;
  connectSeq: number;
  /** The server end, as the listener hands it out. */
  closes: number;
  closeAt: number;
  closeSeq: number;
  handedOut: boolean;
  screenedAt: number | null;
  verdict: "refuse" | "default" | { kind: Kind; form: Form } | null;
  served: Served | null;
  sent: { text: string; at: number }[];
  endAt: number | null;
  received: string;
  readEnd: "eof" | "error" | null;
  eofAt: number;
}

// ---- handlers, in both forms
//
// The two forms differ only in where `yield*` runs an operation: inside an
// `async function*` it waits in place, inside a `function*` it yields to
// the scheduler. Each form writes its operations out itself for that.

function* echoSync(conn: Connection, me: Actor) {
  for (;;) {
    me.begin("recv");
    const line = me.ok(yield* conn.recvLine());
    if (line === null) return;
    if (line === "boom") throw me.boom();
    const text = me.served.text(`echo ${line}`);
    me.begin("send", text);
    me.ok(yield* conn.send(text));
    if (line === "a") {
      // Between requests, as a keep-alive server is: evictable again.
      me.begin("idle");
      me.ok(conn.markIdle());
    }
  }
}

function* readerSync(conn: Connection, s: Served) {
  const me = s.enter("child");
  try {
    yield* echoSync(conn, me);
    me.returned();
  } catch (error) {
    me.threw(error);
    throw error;
  } finally {
    me.fin();
  }
}

function* handlerSync(conn: Connection, s: Served) {
  const me = s.enter("handler");
  const plan = s.client.plan;
  try {
    if (s.kind === "echo") {
      yield* echoSync(conn, me);
    } else if (s.kind === "duplex") {
      const reader = yield* spawn(readerSync(conn, s));
      for (let k = 0; k < plan.ticks; k++) {
        me.begin("delay", "", plan.period);
        me.ok(yield* delay(plan.period));
        const text = s.text(`tick ${k}`);
        me.begin("send", text);
        me.ok(yield* conn.send(text));
      }
      me.begin("join");
      me.ok(yield* reader.join());
    } else if (s.kind === "sleep") {
      me.begin("delay", "", plan.sleep);
      me.ok(yield* delay(plan.sleep));
      const text = s.text("done");
      me.begin("send", text);
      me.ok(yield* conn.send(text));
    } else {
      const text = s.text("z".repeat(2 * s.world.sc.capacity));
      me.begin("send", text);
      me.ok(yield* conn.send(text));
    }
    me.returned();
  } catch (error) {
    me.threw(error);
    throw error;
  } finally {
    me.fin();
  }
}

async function* echoAsync(conn: Connection, me: Actor) {
  for (;;) {
    me.begin("recv");
    const line = me.ok(yield* conn.recvLine());
    if (line === null) return;
    if (line === "boom") throw me.boom();
    const text = me.served.text(`echo ${line}`);
    me.begin("send", text);
    me.ok(yield* conn.send(text));
    if (line === "a") {
      // Between requests, as a keep-alive server is: evictable again.
      me.begin("idle");
      me.ok(conn.markIdle());
    }
  }
}

async function* readerAsync(conn: Connection, s: Served) {
  const me = s.enter("child");
  try {
    yield* echoAsync(conn, me);
    me.returned();
  } catch (error) {
    me.threw(error);
    throw error;
  } finally {
    me.fin();
  }
}

async function* handlerAsync(conn: Connection, s: Served) {
  const me = s.enter("handler");
  const plan = s.client.plan;
  try {
    if (s.kind === "echo") {
      yield* echoAsync(conn, me);
    } else if (s.kind === "duplex") {
      const reader = yield* spawn(readerAsync(conn, s));
      for (let k = 0; k < plan.ticks; k++) {
        me.begin("delay", "", plan.period);
        me.ok(yield* delay(plan.period));
        const text = s.text(`tick ${k}`);
        me.begin("send", text);
        me.ok(yield* conn.send(text));
      }
      me.begin("join");
      me.ok(yield* reader.join());
    } else if (s.kind === "sleep") {
      me.begin("delay", "", plan.sleep);
      me.ok(yield* delay(plan.sleep));
      const text = s.text("done");
      me.begin("send", text);
      me.ok(yield* conn.send(text));
    } else {
      const text = s.text("z".repeat(2 * s.world.sc.capacity));
      me.begin("send", text);
      me.ok(yield* conn.send(text));
    }
    me.returned();
  } catch (error) {
    me.threw(error);
    throw error;
  } finally {
    me.fin();
  }
}

// ---- clients, the listener and the driver

function* readAll(c: ClientRecord, clock: VirtualClock) {
  try {
    for (let chunk; (chunk = yield* c.conn.recv()) !== null;) {
      c.received += decoder.decode(chunk);
    }
    c.readEnd = "eof";
    c.eofAt = clock.now();
  } catch (error) {
    if (
      !(error instanceof ConnectionClosedError) &&
      !(error instanceof ConnectionResetError)
    ) throw error;
    c.readEnd = "error";
  }
}

function* client(c: ClientRecord, clock: VirtualClock) {
  const { conn, plan } = c;
  try {
    const reader = plan.reads ? yield* spawn(readAll(c, clock)) : null;
    for (const { gap, text } of plan.lines) {
      yield* delay(gap);
      try {
        yield* conn.send(text + "\n");
      } catch (error) {
        // The server closed its end: refused, or its handler ended.
        if (!(error instanceof ConnectionResetError)) throw error;
        break;
      }
      c.sent.push({ text, at: clock.now() });
    }
    yield* delay(plan.endGap);
    if (plan.end !== "hold") c.endAt = clock.now();
    if (plan.end === "reset") return conn.close();
    if (plan.end === "closeWrite") {
      try {
        yield* conn.closeWrite();
      } catch (error) {
        if (!(error instanceof ConnectionResetError)) throw error;
      }
    }
    // Until the server closes (seen by reading), or the driver ends.
    if (reader !== null) yield* reader.join();
    else yield* delay(Infinity);
  } finally {
    conn.close();
  }
}

class World {
  seq = 0;
  readonly clients: ClientRecord[] = [];
  readonly served: Served[] = [];
  readonly reports: { error: unknown; info?: ConnectionInfo }[] = [];
  readonly violations: string[] = [];
  readonly listener = new MemoryListener();
  readonly controller = new AbortController();
  server!: Server;
  stopAt = Infinity;
  stopSeq = Infinity;
  graceEnd = Infinity;
  stopping: Promise<void> | null = null;
  resolvedAt = NaN;
  resolveSeq = Infinity;
  finishedAt = NaN;
  /** Handlers running and server ends open when the stop resolved. */
  leftAtResolve: string[] = [];
  againSame: boolean[] = [];
  constructor(readonly clock: VirtualClock, readonly sc: Scenario) {}
  tick(): number {
    return ++this.seq;
  }
  now(): number {
    return this.clock.now();
  }
  violation(what: string): void {
    this.violations.push(`at ${this.now()}: ${what}`);
  }

  handler(kind: Kind, form: Form): Handler {
    return (conn, info) => {
      const c = this.clients[info.remoteAddr.port - 1];
      if (c.served !== null) this.violation(`client ${c.index} served twice`);
      const s = new Served(this, c, info.id, kind, form, conn);
      c.served = s;
      this.served.push(s);
      if (this.now() > this.stopAt) {
        this.violation(`client ${c.index} served after the stop`);
      }
      const expected = c.verdict === "default" ? this.sc.handler : c.verdict;
      if (
        expected === null || expected === "refuse" ||
        expected.kind !== kind || expected.form !== form
      ) {
        this.violation(`client ${c.index} got ${kind}/${form}`);
      }
      const running = this.served.filter((x) => !x.isEnded);
      const fromPeer = running.filter((x) =>
        x.client.plan.peer === c.plan.peer
      );
      if (running.length > this.sc.cap) {
        this.violation(`${running.length} handlers, cap ${this.sc.cap}`);
      }
      if (fromPeer.length > this.sc.perPeer) {
        this.violation(`${fromPeer.length} handlers of peer ${c.plan.peer}`);
      }
      if (this.server.stats.active > this.sc.cap) {
        this.violation(`stats.active ${this.server.stats.active}`);
      }
      return form === "sync" ? handlerSync(conn, s) : handlerAsync(conn, s);
    };
  }

  onAccept = (info: ConnectionInfo): boolean | Handler | void => {
    const c = this.clients[info.remoteAddr.port - 1];
    c.screenedAt = this.now();
    if (this.now() > this.stopAt) {
      this.violation(`onAccept for client ${c.index} after the stop`);
    }
    const admit = c.plan.admit;
    if (admit === "refuse") {
      c.verdict = "refuse";
      return false;
    }
    if (admit === "default" || admit === "true") {
      c.verdict = "default";
      return admit === "true" ? true : undefined;
    }
    c.verdict = admit;
    return this.handler(admit.kind, admit.form);
  };

  connect(index: number): ClientRecord {
    const [serverEnd, clientEnd] = memoryConnPair({
      capacity: this.sc.capacity,
    });
    const c: ClientRecord = {
      index,
      plan: this.sc.clients[index],
      conn: clientEnd,
      connectAt: this.now(),
      connectSeq: this.tick(),
      closes: 0,
      closeAt: NaN,
      closeSeq: 0,
      handedOut: false,
      screenedAt: null,
      verdict: null,
      served: null,
      sent: [],
      endAt: null,
      received: "",
      readEnd: null,
      eofAt: NaN,
    };
    this.clients.push(c);
    const t = serverEnd.transport;
    this.listener.push({
      read: (buffer) => t.read(buffer),
      write: (bytes) => t.write(bytes),
      closeWrite: () => t.closeWrite(),
      close: () => {
        c.closes++;
        c.closeAt = this.now();
        c.closeSeq = this.tick();
        t.close();
      },
      localAddr: t.localAddr,
      remoteAddr: {
        transport: "tcp",
        hostname: `10.0.0.${c.plan.peer}`,
        port: index + 1,
      },
    }, () => c.handedOut = true);
    return c;
  }

  stop(): void {
    const { how, grace } = this.sc.stop;
    const server = this.server;
    this.stopAt = this.now();
    this.stopSeq = this.tick();
    this.graceEnd = this.stopAt + grace;
    let stopping: Promise<void>;
    if (how === "shutdown") stopping = server.shutdown({ grace });
    else if (how === "dispose") stopping = server[Symbol.asyncDispose]();
    else {
      this.controller.abort();
      // The signal's shutdown came first: its grace counts, not this one.
      stopping = server.shutdown({ grace: grace + 1000 });
    }
    this.stopping = stopping;
    this.againSame.push(server.shutdown() === stopping);
    stopping.then(() => {
      this.resolvedAt = this.now();
      this.resolveSeq = this.tick();
      for (const s of this.served) {
        const open = [s.handler, s.child].filter((a) =>
          a !== null && a.finallies === 0
        );
        if (open.length > 0) this.leftAtResolve.push(`${s.id} running`);
      }
      for (const c of this.clients) {
        if (c.connectSeq < this.stopSeq && c.closes === 0) {
          this.leftAtResolve.push(`client ${c.index}'s server end open`);
        }
      }
    });
    server.finished.then(() => this.finishedAt = this.now());
  }
}

function* driver(world: World) {
  const { clients, stop } = world.sc;
  const stopIndex = Math.min(stop.index, clients.length);
  for (let i = 0; i <= clients.length; i++) {
    if (i === stopIndex) {
      yield* delay(stop.gap);
      world.stop();
      yield* spawn((function* () {
        yield* delay(stop.again);
        world.againSame.push(
          world.server.shutdown({ grace: 0 }) === world.stopping,
        );
      })());
    }
    if (i === clients.length) break;
    yield* delay(clients[i].gap);
    yield* spawn(client(world.connect(i), world.clock));
  }
  // Keeps a timer armed, so that the virtual clock jumps to the server's
  // own timers (the grace deadline) while everyone waits; the clients
  // still running (holding, or not reading) are cancelled at the end.
  yield* delay(HORIZON);
}

// ---- checks

/**
 * Checks the bytes a client read against the handler's sends in call
 * order: each whole; one that failed wrote nothing, or some or all of it
 * and then nothing more follows (or, cut short by a cancel once written
 * whole, all of it and then more). `isComplete`: the client read to the end.
 */
function checkStream(
  received: string,
  sends: OpRecord[],
  isComplete: boolean,
): string | null {
  let pos = 0;
  for (const send of sends) {
    const rest = received.slice(pos);
    if (send.end !== null && send.error === undefined) {
      if (rest.startsWith(send.text)) {
        pos += send.text.length;
        continue;
      }
      if (!isComplete && send.text.startsWith(rest)) return null;
      return `expected ${JSON.stringify(send.text)} at ${pos} of ${
        JSON.stringify(received)
      }`;
    }
    // Cut short by a cancel after its write was done: whole, and the
    // connection stays open (a child of an evicted handler may send on
    // before its own cancel).
    if (send.end === null && rest.startsWith(send.text)) {
      pos += send.text.length;
      continue;
    }
    if (rest.length > 0 && send.text.startsWith(rest)) pos = received.length;
  }
  if (pos !== received.length) {
    return `bytes of no send: ${JSON.stringify(received.slice(pos))}`;
  }
  return null;
}

/** Checks one handler's operations; returns what is wrong. */
function checkOps(world: World, s: Served): string[] {
  const wrong: string[] = [];
  const { sc } = world;
  const c = s.client;
  const where = (op: OpRecord) =>
    `${s.kind}/${s.form} ${s.id} (client ${c.index}) ${op.by.name} ${op.kind} ${
      JSON.stringify(op.text)
    } from ${op.begin} to ${op.end}`;
  let consumed = 0;
  for (const op of s.ops) {
    if (op.end === null) continue; // cut short by a cancel
    const error = op.error;
    const end = op.end;
    if (
      op.kind === "delay" && error === undefined && end !== op.begin + op.ms
    ) {
      wrong.push(`${where(op)}: a delay of ${op.ms}`);
    }
    if (op.kind === "recv" && error === undefined) {
      const line = op.value as string | null;
      if (line === null) {
        if (c.endAt === null || c.endAt > end) {
          wrong.push(`${where(op)}: EOF before the client ended`);
        }
        if (consumed !== c.sent.length) {
          wrong.push(`${where(op)}: EOF after ${consumed} lines`);
        }
      } else {
        const sent = c.sent[consumed];
        if (sent === undefined || sent.text !== line || sent.at > end) {
          wrong.push(`${where(op)}: got ${line}, line ${consumed} unsent`);
        }
        consumed++;
      }
    }
    if (op.kind === "join" && error !== undefined) {
      if (s.child === null || error !== s.child.error) {
        wrong.push(`${where(op)}: the join threw what the child did not`);
      }
    } else if (error instanceof TimeoutError) {
      const limit = op.kind === "recv" ? sc.recvTimeout : sc.sendTimeout;
      if (end !== op.begin + limit) {
        wrong.push(`${where(op)}: timed out, limit ${limit}`);
      }
      if (op.kind === "recv") {
        // Its line (or the end) there strictly before: it must not time out.
        const ready = c.sent.filter((line) => line.at < end).length;
        if (ready > consumed) wrong.push(`${where(op)}: with a line there`);
        if (c.endAt !== null && c.endAt < end) {
          wrong.push(`${where(op)}: after the client's end`);
        }
      } else if (op.kind === "send" && c.plan.reads) {
        wrong.push(`${where(op)}: timed out to a reading client`);
      } else if (op.kind !== "send") {
        wrong.push(`${where(op)}: ${error.message}`);
      }
    } else if (error instanceof ConnectionResetError) {
      if (op.kind !== "send" || c.plan.end !== "reset" || !(c.endAt! <= end)) {
        wrong.push(`${where(op)}: reset, the client did not`);
      }
    } else if (error instanceof ConnectionClosedError) {
      // Closed on this side: by a send's timeout, or by a send cut short
      // by a cancel (the documented close of a cancelled write), which can
      // reach a child on the same connection before its own cancel does.
      const bySendTimeout = s.ops.some((o) =>
        o.kind === "send" && o.error instanceof TimeoutError && o.end! <= end
      );
      const byCutSend = c.closeAt <= end &&
        s.ops.some((o) =>
          o.kind === "send" && o.end === null && o.begin <= end
        );
      if (!bySendTimeout && !byCutSend) {
        wrong.push(
          `${
            where(op)
          }: ConnectionClosedError (closed at ${c.closeAt}), not cancelled`,
        );
      }
    } else if (error !== undefined) {
      wrong.push(`${where(op)}: ${String(error)}`);
    }
  }
  return wrong;
}

async function runScenario(sc: Scenario, tally: Record<string, number>) {
  const clock = new VirtualClock();
  const world = new World(clock, sc);
  const { grace, how } = sc.stop;
  const options: ServeOptions & ConnectionOptions = {
    maxConnections: sc.cap,
    maxConnectionsPerPeer: sc.perPeer,
    recvTimeout: sc.recvTimeout,
    sendTimeout: sc.sendTimeout,
    evictAfter: sc.evictAfter,
    // Used by the dispose and the signal; never by shutdown({ grace }).
    shutdownGrace: how === "shutdown" ? grace + 7 : grace,
    signal: how === "signal" ? world.controller.signal : undefined,
    clock,
    onAccept: world.onAccept,
    onError: (error, info) => world.reports.push({ error, info }),
    // serve() hands its options to each connection: the memory transports
    // are no outside world, so the virtual clock may jump past their waits.
    isExternal: false,
  };
  world.server = serveOn(
    world.listener,
    options,
    world.handler(sc.handler.kind, sc.handler.form),
  );
  try {
    await run(driver(world), { clock });
  } finally {
    for (const c of world.clients) c.conn.close();
    if (world.stopping === null) await world.server.shutdown({ grace: 0 });
  }
  await world.stopping;

  const stats = world.server.stats;
  const s = (x: unknown) => JSON.stringify(x);
  assert.deepEqual(world.violations, []);
  assert.deepEqual(world.leftAtResolve, [], "left when the stop resolved");
  assert.ok(world.againSame.every((same) => same), "a second stop differs");
  assert.equal(world.againSame.length, 2);
  assert.equal(clock.pending, 0, "timers left");
  assert.equal(world.finishedAt, world.resolvedAt, "finished");

  // onError: each handler error once, with its info; nothing else.
  const reportsOf = new Map<number, unknown[]>();
  const seen = new Set<unknown>();
  for (const { error, info } of world.reports) {
    assert.ok(info !== undefined, `reported without info: ${error}`);
    assert.ok(!seen.has(error), `reported twice: ${error}`);
    seen.add(error);
    const list = reportsOf.get(info.id) ?? [];
    list.push(error);
    reportsOf.set(info.id, list);
  }
  const ids = new Set(world.served.map((x) => x.id));
  for (const id of reportsOf.keys()) assert.ok(ids.has(id), `report of ${id}`);

  let completed = 0, failed = 0, timeouts = 0, unwound = 0;
  let mustEvict = 0, mayEvict = 0;
  let lastEnd = world.stopAt;
  for (const x of world.served) {
    const c = x.client;
    const what = `${x.kind}/${x.form} ${x.id} (client ${c.index})`;
    const reported = reportsOf.get(x.id) ?? [];
    assert.ok(
      reported.length <= 1,
      `${what} reported ${reported.length}: ${reported}`,
    );
    assert.ok(x.conn.isClosed, `${what}: connection open`);
    assert.equal(c.closes, 1, `${what}: closed ${c.closes} times`);
    assert.deepEqual(checkOps(world, x), [], what);
    const h = x.handler;
    const child = x.child;
    if (child !== null) {
      assert.equal(child.finallies, 1, `${what}: child's finally`);
    }
    const joined = x.ops.some((op) =>
      op.kind === "join" && op.error !== undefined
    );
    const undelivered = child?.outcome === "threw" && !joined
      ? [child.error]
      : [];
    if (h === null) {
      // Cancelled before its first step: at a stop with no grace.
      assert.equal(x.createdAt, world.graceEnd, `${what} never ran`);
      assert.deepEqual(reported, [], what);
      unwound++;
      lastEnd = Math.max(lastEnd, world.graceEnd);
      continue;
    }
    assert.equal(h.finallies, 1, `${what}: finally ran ${h.finallies} times`);
    assert.ok(h.startAt <= world.stopAt, `${what} started after the stop`);
    assert.ok(h.finallyAt <= world.graceEnd, `${what} ran past the grace`);
    lastEnd = Math.max(lastEnd, h.finallyAt);
    // Lines in, in order: a prefix of what the client sent.
    const lines = x.ops.filter((op) =>
      op.kind === "recv" && typeof op.value === "string"
    ).map((op) => op.value);
    assert.deepEqual(lines, c.sent.slice(0, lines.length).map((l) => l.text));
    if (h.outcome === "threw") {
      assert.equal(reported.length, 1, `${what} threw ${h.error}, unreported`);
      assert.ok(
        reported[0] === h.error || undelivered.includes(reported[0]),
        `${what}: reported ${reported[0]}, threw ${h.error}`,
      );
    } else if (h.outcome === "returned" && undelivered.length === 0) {
      assert.deepEqual(reported, [], `${what} returned`);
    } else if (h.outcome === "returned") {
      assert.ok(
        reported.length === 1 && undelivered.includes(reported[0]),
        `${what}: ${h.outcome}, reported ${reported}, child ${child?.error}`,
      );
    } else {
      // Cancelled: at the grace deadline, or evicted (having received no
      // data before that instant: data arriving at the instant of the
      // eviction may be received first or not) at the cap. Its child's
      // error, if no join took it, is reported all the same, but for the
      // server's own close.
      assert.deepEqual(
        reported,
        undelivered.filter((e) => !(e instanceof ConnectionClosedError)),
        `${what}: cancelled, reported`,
      );
      // Idle since its start, or since its handler's last markIdle() (one
      // at the instant of the eviction, like data, may come after it).
      const marks = x.ops.filter((op) =>
        op.kind === "idle" && op.end! < h.finallyAt
      );
      const lastMark = marks.at(-1);
      const hasReceived = x.ops.some((op) =>
        op.kind === "recv" && typeof op.value === "string" &&
        op.end! < h.finallyAt &&
        (lastMark === undefined || op.seq > lastMark.seq)
      );
      const isEvictable = !hasReceived && sc.evictAfter !== Infinity;
      if (isEvictable) mayEvict++;
      if (h.finallyAt !== world.graceEnd) {
        assert.ok(isEvictable, `${what} cancelled off the grace deadline`);
        const idleSince = lastMark?.end ?? h.startAt;
        assert.ok(
          h.finallyAt >= idleSince + sc.evictAfter,
          `${what} evicted at ${h.finallyAt}, idle since ${idleSince}`,
        );
        mustEvict++;
      }
    }
    if (h.outcome !== null && reported.length > 0) {
      failed++;
      // A TimeoutError, or the close of a send timeout met by the other.
      const error = reported[0];
      if (
        error instanceof TimeoutError ||
        (error instanceof ConnectionClosedError &&
          error.cause instanceof TimeoutError)
      ) timeouts++;
    } else if (h.outcome === "returned") completed++;
    else unwound++;
    // Ended by itself: its connection closed once it and its child were
    // done (a send timeout closes it earlier; so may the stop, for one
    // ending at the grace deadline).
    const timedOutSend = x.ops.some((op) =>
      op.kind === "send" && op.error instanceof TimeoutError
    );
    const closedUnder = x.ops.some((op) =>
      op.kind === "send" && op.end === null
    );
    const atDeadline = h.finallyAt === world.graceEnd &&
      c.closeAt === world.graceEnd;
    if (h.outcome !== null && !timedOutSend && !closedUnder && !atDeadline) {
      assert.ok(c.closeSeq > h.finallySeq, `${what} closed before its end`);
      if (child !== null) {
        assert.ok(c.closeSeq > child.finallySeq, `${what}: child after close`);
      }
    }
  }

  // The clients: bytes in order, and each server end closed.
  for (const c of world.clients) {
    const what = `client ${c.index} ${s(c.plan)}`;
    const sends = c.served?.ops.filter((op) => op.kind === "send") ?? [];
    const isComplete = c.plan.reads && c.plan.end !== "reset";
    const wrong = checkStream(c.received, sends, isComplete);
    assert.equal(wrong, null, `${what}: ${wrong}`);
    assert.ok(c.conn.isClosed);
    if (!c.handedOut) {
      // Queued at the stop: closed then; connected after it: at once.
      assert.equal(c.closes, 1, `${what}: queued end closed`);
      const closeAt = c.connectSeq > world.stopSeq ? c.connectAt : world.stopAt;
      assert.equal(c.closeAt, closeAt, `${what}: queued end closed late`);
    }
    if (isComplete && c.connectSeq < world.stopSeq) {
      assert.equal(c.readEnd, "eof", `${what}: read to the end`);
      assert.ok(c.eofAt <= world.resolvedAt, `${what}: EOF after the stop`);
    }
  }

  // The stop: resolved when the last handler ended.
  assert.equal(world.resolvedAt, lastEnd, "the stop resolved off its end");
  for (const x of world.served) {
    for (const op of x.ops) {
      assert.ok(op.seq < world.resolveSeq, `${x.id} ran after the stop`);
    }
  }

  // The books.
  const handedOut = world.clients.filter((c) => c.handedOut);
  const screened = handedOut.filter((c) => c.screenedAt !== null);
  const refused = screened.filter((c) => c.verdict === "refuse");
  const admitted = screened.length - refused.length;
  const held = admitted - world.served.length;
  assert.ok(
    held === 0 || (held === 1 && sc.evictAfter !== Infinity),
    `${held} admitted, never served`,
  );
  assert.equal(stats.active, 0);
  assert.equal(stats.acceptErrors, 0);
  assert.equal(stats.peerLimited, handedOut.length - screened.length);
  assert.equal(stats.refused, stats.peerLimited + refused.length);
  // One admitted and held at the cap when the stop came counts as accepted
  // and cancelled, its handler never started.
  assert.equal(stats.accepted, world.served.length + held + stats.refused);
  assert.equal(stats.completed, completed, `completed ${s(stats)}`);
  assert.equal(stats.failed, failed, `failed ${s(stats)}`);
  assert.equal(stats.timeouts, timeouts, `timeouts ${s(stats)}`);
  assert.equal(
    stats.cancelled + stats.evicted,
    unwound + held,
    `cancelled ${s(stats)}`,
  );
  assert.ok(
    stats.evicted >= mustEvict && stats.evicted <= mayEvict,
    `evicted ${s(stats)}, ${mustEvict}..${mayEvict}`,
  );
  if (sc.perPeer === Infinity) assert.equal(stats.peerLimited, 0);

  tally.runs++;
  tally.served += world.served.length;
  tally.cancelledAtGrace += stats.cancelled;
  tally.evicted += stats.evicted;
  tally.failed += stats.failed;
  tally.timeouts += stats.timeouts;
  tally.peerLimited += stats.peerLimited;
  tally.refused += refused.length;
  tally.held += held;
  tally.neverRan += world.served.filter((x) => x.handler === null).length;
  tally.childFailed +=
    world.served.filter((x) => x.child?.outcome === "threw").length;
  tally.lateConnects +=
    world.clients.filter((c) => c.connectSeq > world.stopSeq).length;
}

Deno.test(`serve under random schedules: caps, books, errors, bytes, and a graceful then firm stop at a random moment (${RUNS} runs)`, async () => {
  const tally: Record<string, number> = {
    runs: 0,
    served: 0,
    cancelledAtGrace: 0,
    evicted: 0,
    failed: 0,
    timeouts: 0,
    peerLimited: 0,
    refused: 0,
    held: 0,
    neverRan: 0,
    childFailed: 0,
    lateConnects: 0,
  };
  await fc.assert(
    fc.asyncProperty(scenarioOf, (sc) => runScenario(sc, tally)),
    runs(RUNS),
  );
  console.log("server properties:", JSON.stringify(tally));
  for (
    const key of [
      "cancelledAtGrace",
      "failed",
      "timeouts",
      "peerLimited",
      "refused",
      "childFailed",
      "lateConnects",
    ]
  ) assert.ok(tally[key] > 0, `no run reached ${key}`);
});

/** Lets every pending promise reaction run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await null;
}

/**
 * `handler` served on a memory listener that holds one client's
 * connection, on a clock moved by hand; `reports` collects what `onError`
 * is told.
 */
function serveOneClient(handler: Handler, pair?: MemoryConnPairOptions) {
  const clock = new VirtualClock({ autojump: false });
  const listener = new MemoryListener();
  const [serverEnd, clientEnd] = memoryConnPair(pair);
  listener.push(serverEnd.transport);
  const reports: unknown[] = [];
  const options: ServeOptions & ConnectionOptions = {
    clock,
    onError: (error) => reports.push(error),
    isExternal: false,
  };
  const server = serveOn(listener, options, handler);
  return { server, clock, clientEnd, reports };
}

Deno.test({
  name:
    "an async function* handler still working when the grace runs out is cancelled at its next wait, not failed by ConnectionClosedError",
}, async () => {
  let finishWork!: () => void;
  const work = new Promise<void>((resolve) => finishWork = resolve);
  const log: string[] = [];
  const { server, clock, clientEnd, reports } = serveOneClient(
    async function* (conn) {
      try {
        log.push("working");
        await work; // non-network work: no cancel reaches a plain await
        yield* conn.send("done\n"); // its next wait: cancelled here
        log.push("sent");
      } finally {
        log.push("finally");
      }
    },
  );
  try {
    await settle();
    const stopping = server.shutdown({ grace: 10 });
    await settle();
    clock.advance(10); // the grace runs out while the handler works
    await settle();
    finishWork();
    await stopping;
    assert.deepEqual(log, ["working", "finally"]);
    assert.deepEqual(reports, []);
    assert.equal(server.stats.cancelled, 1);
    assert.equal(server.stats.failed, 0);
  } finally {
    finishWork();
    clientEnd.close();
  }
});

Deno.test({
  name:
    "the reader child of an async function* handler cancelled at the grace deadline is cancelled, not failed by ConnectionClosedError",
}, async () => {
  const log: string[] = [];
  const { server, clientEnd } = serveOneClient(async function* (conn) {
    yield* spawn((async function* () {
      try {
        yield* conn.recvLine(); // the client never sends
      } catch (error) {
        log.push(`child caught ${(error as Error).name}`);
      } finally {
        log.push("child finally");
      }
    })());
    try {
      yield* delay(1000);
    } finally {
      log.push("parent finally");
    }
  });
  try {
    await settle();
    await server.shutdown({ grace: 0 });
    assert.deepEqual(log, ["parent finally", "child finally"]);
    assert.equal(server.stats.cancelled, 1);
  } finally {
    clientEnd.close();
  }
});

for (const form of ["async function*", "function*"] as const) {
  Deno.test({
    name:
      `a handler cancelled mid-write: its reader child (${form}) meets the server's close or its cancel, and no ConnectionClosedError is reported`,
  }, async () => {
    const log: string[] = [];
    const { server, clientEnd, reports } = serveOneClient(function* (conn) {
      async function* asyncReader() {
        try {
          yield* conn.recvLine(); // the client never sends
        } catch (error) {
          log.push(`child: ${(error as Error).name}`);
          throw error; // unjoined: its parent was cancelled
        }
      }
      function* syncReader() {
        try {
          yield* conn.recvLine();
        } catch (error) {
          log.push(`child: ${(error as Error).name}`);
          throw error;
        }
      }
      yield* spawn(form === "function*" ? syncReader() : asyncReader());
      yield* conn.send("more than four bytes\n");
    }, { capacity: 4 }); // a pipe of 4 bytes the client never reads: the send blocks
    try {
      await settle();
      await server.shutdown({ grace: 0 });
      // An async child settles its wait as the close wakes it, and sees
      // the close; a function* child, woken and cancelled before it runs,
      // meets the cancel at that wait instead.
      assert.deepEqual(
        log,
        form === "function*" ? [] : ["child: ConnectionClosedError"],
      );
      assert.deepEqual(reports, []);
      assert.equal(server.stats.cancelled, 1);
    } finally {
      clientEnd.close();
    }
  });
}
