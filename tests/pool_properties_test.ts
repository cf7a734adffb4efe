// Properties of a Pool under random schedules, on a virtual clock.
//
// One to six client coroutines, `function*` and `async function*` mixed,
// each run a random list of steps: a pause; an acquire() with a random
// timeout, absolute deadline, abort signal, or only the pool's
// acquireTimeout; a hold; maybe a request the server echoes after a delay
// (which may outlast the receive's timeout, or be 0: it times out before it
// waits); then release(), discard(), dispose, or the coroutine ends without
// giving the lease back. Some clients are cancelled at a random moment
// (waiting, dialling, holding or mid-request); one that ends its leases by
// dispose then disposes in its `finally`, as `using` would. The pool's max,
// maxWaiting, idleTimeout and acquireTimeout, each dial's latency and
// failure, each server connection's lifetime (it hangs up after it), and a
// close() at a random moment are random too. Checked:
//
// - never more than `max` connections open and being dialled together;
// - stats: open, idle, leased, created and discarded equal what the test
//   counts (from the dial function, the transports and the leases);
//   nobody waits while a connection is idle or a slot is free;
//   `waiting` stays within maxWaiting;
// - an acquire is served at once when the pool has an idle connection or
//   a free slot, and fails at once with PoolExhaustedError when maxWaiting
//   coroutines wait (checked exactly for `function*` clients: for an
//   `async function*` one, others may run between the call and the pool);
// - first come, first served: no acquire is served while one that began
//   earlier still waits;
// - a TimeoutError (op "acquire") comes exactly at the deadline, an abort
//   exactly when it fires, a PoolClosedError at once or at the close; a
//   dial's outcome (its connection, ConnectError, timeout, abort) fits its
//   latency and the deadline;
// - a connection is lent to one borrower at a time: each request's reply
//   is its own, never one meant for an earlier borrower;
// - a released healthy connection is reused: idle connections are lent
//   most recently used first, and no dial starts while one sits idle; one
//   whose receive failed or timed out, a discarded one, and any after
//   close() is closed on return and never lent again; an undisposed lease
//   is closed when its coroutine ends (cancelled or not);
// - an idle connection is closed exactly at its idleTimeout, or as soon as
//   its server hangs up, or at close(), and not otherwise;
// - close() fails the waiters and closes the idle connections at once;
//   then every connection is closed and acquire() fails with
//   PoolClosedError.
//
// The test sees when a connection enters and leaves the idle list through
// its transport's ref() and unref(), as a Deno.Conn has them: the pool
// unrefs an idle socket and refs it again when it lends it, or closes it in
// close() (src/pool.ts).

import assert from "node:assert/strict";
import fc from "fast-check";
import { runs } from "./_property.ts";
import {
  CancelledError,
  ConnectError,
  Connection,
  delay,
  type Effect,
  type Lease,
  type OperationOptions,
  Pool,
  PoolClosedError,
  PoolExhaustedError,
  run,
  Scheduler,
  spawn,
  type Task,
  TimeoutError,
  type Transport,
} from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";

/** Virtual ms after which a run that has not ended counts as stalled. */
const STALL = 10_000;
/**
 * Real ms after which a run counts as hung: nothing left to do, not even
 * time to wait on (a run takes a few ms).
 */
const HUNG = 2_000;

/** `promise`, or a failure saying what hung if it takes `HUNG` ms. */
async function within<T>(promise: Promise<T>, what: () => string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what())), HUNG);
  });
  try {
    return await Promise.race([promise, hung]);
  } finally {
    clearTimeout(timer);
  }
}

type Limit =
  | { timeout: number }
  | { deadlineIn: number }
  | { abortIn: number }
  | null;
type End = "release" | "discard" | "dispose" | "abandon";

interface Step {
  /** ms before the acquire. */
  gap: number;
  /** What bounds the acquire; null: the pool's acquireTimeout only. */
  limit: Limit;
  /** ms the lease is held before its request, if any. */
  hold: number;
  /** Send a request and receive its echo. */
  use: boolean;
  /** The receive's timeout. */
  replyTimeout: number;
  /** How the lease ends; "abandon" ends the coroutine with it. */
  end: End;
}

interface DialPlan {
  latency: number;
  fails: boolean;
  /** ms after the dial that its server hangs up (Infinity: never). */
  lifetime: number;
  /** ms the server takes to echo a request. */
  echoDelay: number;
}

const stepOf: fc.Arbitrary<Step> = fc.record({
  gap: fc.nat({ max: 15 }),
  limit: fc.oneof(
    fc.constant(null),
    fc.record({ timeout: fc.nat({ max: 40 }) }),
    fc.record({ deadlineIn: fc.nat({ max: 40 }) }),
    fc.record({ abortIn: fc.nat({ max: 40 }) }),
  ),
  hold: fc.nat({ max: 30 }),
  use: fc.boolean(),
  // 0: the receive times out before it waits.
  replyTimeout: fc.oneof(
    { arbitrary: fc.constant(0), weight: 1 },
    { arbitrary: fc.integer({ min: 1, max: 10 }), weight: 3 },
  ),
  end: fc.oneof(
    { arbitrary: fc.constant<End>("release"), weight: 4 },
    { arbitrary: fc.constant<End>("discard"), weight: 1 },
    { arbitrary: fc.constant<End>("dispose"), weight: 2 },
    { arbitrary: fc.constant<End>("abandon"), weight: 1 },
  ),
});

/** Each client's form, steps, and when it is cancelled, if it is. */
const clientsOf = fc.array(
  fc.record({
    isAsync: fc.boolean(),
    steps: fc.array(stepOf, { maxLength: 6 }),
    cancelAt: fc.oneof(
      { arbitrary: fc.constant(null), weight: 3 },
      { arbitrary: fc.nat({ max: 150 }), weight: 1 },
    ),
  }),
  { minLength: 1, maxLength: 6 },
);

type ClientPlan = typeof clientsOf extends fc.Arbitrary<(infer T)[]> ? T
  : never;

const poolOf = fc.record({
  max: fc.integer({ min: 1, max: 4 }),
  maxWaiting: fc.option(fc.nat({ max: 4 }), { nil: undefined }),
  idleTimeout: fc.option(fc.nat({ max: 60 }), { nil: undefined }),
  acquireTimeout: fc.option(fc.nat({ max: 60 }), { nil: undefined }),
});

type PoolPlan = typeof poolOf extends fc.Arbitrary<infer T> ? T : never;

/** The n-th dial follows plan n (modulo their number). */
const dialsOf: fc.Arbitrary<DialPlan[]> = fc.array(
  fc.record({
    latency: fc.nat({ max: 15 }),
    fails: fc.nat({ max: 4 }).map((n) => n === 0),
    lifetime: fc.option(fc.nat({ max: 100 }), { nil: Infinity, freq: 2 }),
    echoDelay: fc.nat({ max: 8 }),
  }),
  { minLength: 1, maxLength: 8 },
);

/** When close() is called during the run, if it is. */
const closeAtOf = fc.option(fc.nat({ max: 200 }), { nil: null, freq: 2 });

/** Where a connection is, as the test sees it. */
type ConnState =
  | "dialled" // returned by the dial, its acquirer not yet back
  | "taken" // lent from the idle list, its acquirer not yet back
  | "handed" // given back and handed to a waiter not yet back
  | "held" // lent; its borrower has it
  | "returning" // inside release() or discard()
  | "idle"
  | "abandoned" // its borrower ended without giving it back
  | "broken" // closed by a send cancelled mid-write, its lease not yet ended
  | "closed";

interface Pooled {
  readonly index: number;
  readonly plan: DialPlan;
  readonly dialledFor: Request;
  conn: Connection;
  state: ConnState;
  /** When it entered its state. */
  since: number;
  holder: Request | null;
  idleSince: number;
  /** Order of entering the idle list. */
  idleSeq: number;
  /** When its server end hung up. */
  deadAt: number | undefined;
  closedAt: number | undefined;
  abandonedAt: number | undefined;
  /** How many times it was lent. */
  lends: number;
  /** The lease it was last lent on. */
  lease: Lease | null;
  /** Its borrower is in send(). */
  isSending: boolean;
}

interface Request {
  readonly id: number;
  readonly client: number;
  readonly isAsync: boolean;
  readonly start: number;
  /** Infinity for none. */
  readonly deadline: number;
  readonly abortAt: number;
  /** What TimeoutError.timeout should say. */
  readonly reported: number | undefined;
  readonly options: OperationOptions;
  readonly controller: AbortController;
  /** close() had been called before the acquire. */
  readonly closedBefore: boolean;
  /** When it stopped waiting: lent a connection, or its dial began. */
  servedAt: number | undefined;
  dialAt: number | undefined;
  dial: DialPlan | undefined;
  end: number | undefined;
  outcome: string;
}

/** What a client is in the middle of, for when it is cancelled. */
interface Current {
  req: Request | null;
  lease: Pooled | null;
  /** The lease itself, when its step ends it by dispose (as `using` would). */
  disposable: Lease | null;
}

/** What a `function*` client saw of the pool just before it called acquire(). */
interface Before {
  waiting: number;
  /** An idle connection or a free slot, and nobody waiting. */
  free: boolean;
}

class Aborted extends Error {
  constructor() {
    super("aborted by the test");
    this.name = "Aborted";
  }
}

function nameOf(value: unknown): string {
  return value instanceof Error ? value.name : String(value);
}

/** What a dialled request may end with, by its dial's plan and timing. */
function dialOutcomes(req: Request, closedAt: number | undefined): string[] {
  const dialEnd = req.dialAt! + req.dial!.latency;
  const outcomes: string[] = [];
  if (req.abortAt <= Math.min(req.deadline, dialEnd)) outcomes.push("Aborted");
  if (req.deadline < dialEnd && req.deadline <= req.abortAt) {
    outcomes.push("TimeoutError");
  }
  if (dialEnd <= req.deadline && dialEnd <= req.abortAt) {
    if (req.dial!.fails) outcomes.push("ConnectError");
    else {
      if (closedAt === undefined || closedAt >= dialEnd) outcomes.push("lease");
      if (closedAt !== undefined && closedAt <= dialEnd) {
        outcomes.push("PoolClosedError");
      }
    }
  }
  return outcomes;
}

function* abortLater(
  ms: number,
  controller: AbortController,
): Generator<Effect, void, unknown> {
  yield* delay(ms);
  controller.abort(new Aborted());
}

/** One run: the pool, its server, and what the test has seen. */
class World {
  readonly clock = new VirtualClock();
  readonly pool: Pool;
  readonly max: number;
  readonly maxWaiting: number;
  readonly idleTimeout: number;
  readonly acquireTimeout: number;
  readonly conns: Pooled[] = [];
  readonly requests: Request[] = [];
  readonly violations: string[] = [];
  /** When close() was called, if it was. */
  closedAt: number | undefined = undefined;
  readonly #server = new Scheduler({ clock: this.clock });
  readonly #peers: Task<void>[] = [];
  readonly #byConn = new Map<Connection, Pooled>();
  readonly #bySignal = new Map<AbortSignal, Request>();
  #dials = 0;
  #dialling = 0;
  #idleSeq = 0;
  #isDone = false;
  readonly #cancelled = new Set<number>();

  constructor(plan: PoolPlan, readonly dials: DialPlan[]) {
    this.max = plan.max;
    this.maxWaiting = plan.maxWaiting ?? Infinity;
    this.idleTimeout = plan.idleTimeout ?? 30_000;
    this.acquireTimeout = plan.acquireTimeout ?? Infinity;
    this.pool = new Pool({ ...plan, dial: (options) => this.#dial(options) });
  }

  violate(message: string): void {
    if (this.#isDone || this.violations.length >= 10) return;
    this.violations.push(`at ${this.clock.now()}: ${message}`);
  }

  /** Fails the coroutine that calls it if anything was seen wrong. */
  raise(): void {
    if (this.violations.length > 0) {
      assert.fail(this.violations.join("\n"));
    }
  }

  // ---- the dial function, the server, the transports

  *#dial(options: OperationOptions): Generator<Effect, Connection, unknown> {
    const now = this.clock.now();
    const req = this.#bySignal.get(options.signal!);
    if (req === undefined) {
      this.violate("dial() called for no acquire() of the test");
      throw new Error("unexpected dial");
    }
    if (options.deadline !== req.deadline) {
      this.violate(
        `request ${req.id}'s dial got deadline ${options.deadline}, its acquire's is ${req.deadline}`,
      );
    }
    if (req.dialAt !== undefined) {
      this.violate(`request ${req.id} dialled twice`);
    }
    if (now > req.deadline) {
      this.violate(`request ${req.id} dials past its deadline`);
    }
    for (const p of this.conns) {
      // Idle since an earlier moment: the pool should have lent it.
      if (p.state === "idle" && p.idleSince < now) {
        this.violate(
          `request ${req.id} dials while conn ${p.index} sits idle since ${p.idleSince}`,
        );
      }
    }
    const index = this.#dials++;
    const plan = this.dials[index % this.dials.length];
    req.dialAt = now;
    req.servedAt = now;
    req.dial = plan;
    this.#dialling++;
    try {
      this.sample(`dial for request ${req.id}`);
      const wait = Math.min(plan.latency, req.deadline - now);
      if (wait > 0) yield* delay(wait, { signal: options.signal });
      if (wait < plan.latency) throw new TimeoutError("dial");
      if (plan.fails) {
        throw new ConnectError("memory", index, "connection refused");
      }
      return this.#connect(plan, req).conn;
    } finally {
      this.#dialling--;
    }
  }

  #connect(plan: DialPlan, req: Request): Pooled {
    const now = this.clock.now();
    const [inner, server] = memoryConnPair();
    const base = inner.transport;
    const p: Pooled = {
      index: this.conns.length,
      plan,
      dialledFor: req,
      conn: inner,
      state: "dialled",
      since: now,
      holder: null,
      idleSince: NaN,
      idleSeq: 0,
      deadAt: undefined,
      closedAt: undefined,
      abandonedAt: undefined,
      lends: 0,
      lease: null,
      isSending: false,
    };
    // A transport like a Deno.Conn, with ref() and unref().
    const transport: Transport & { ref(): void; unref(): void } = {
      read: (buffer) => base.read(buffer),
      write: (bytes) => base.write(bytes),
      closeWrite: () => base.closeWrite(),
      close: () => {
        this.#onClose(p);
        base.close();
      },
      localAddr: base.localAddr,
      remoteAddr: base.remoteAddr,
      ref: () => this.#onTaken(p),
      unref: () => this.#onIdle(p),
    };
    p.conn = new Connection(transport, { isExternal: false });
    this.conns.push(p);
    this.#byConn.set(p.conn, p);
    this.#peers.push(
      this.#server.spawn(this.#serve(server, p, now + plan.lifetime), {
        owns: [server],
      }),
    );
    return p;
  }

  /** The server end: echoes each line after echoDelay, until deathAt. */
  *#serve(
    conn: Connection,
    p: Pooled,
    deathAt: number,
  ): Generator<Effect, void, unknown> {
    try {
      for (;;) {
        const line = yield* conn.recvLine({ deadline: deathAt });
        if (line === null) break;
        const wait = Math.min(p.plan.echoDelay, deathAt - this.clock.now());
        if (wait > 0) yield* delay(wait);
        if (this.clock.now() >= deathAt) break;
        yield* conn.send(`${line}\n`);
      }
    } catch {
      // Its lifetime is up (TimeoutError), or the pool closed the other end.
    }
    p.deadAt = this.clock.now();
    conn.close();
  }

  #onIdle(p: Pooled): void {
    const now = this.clock.now();
    if (p.state !== "returning") {
      this.violate(`conn ${p.index} went idle while ${p.state}`);
    }
    if (this.closedAt !== undefined) {
      this.violate(`conn ${p.index} went idle after close()`);
    }
    p.state = "idle";
    p.since = p.idleSince = now;
    p.idleSeq = ++this.#idleSeq;
    queueMicrotask(() => this.sample(`after conn ${p.index} went idle`));
  }

  #onTaken(p: Pooled): void {
    const now = this.clock.now();
    // close() refs an idle connection as it closes it, so that the end of
    // its read keeps a process alive until close() settles: not a lend.
    if (p.state === "idle" && this.closedAt !== undefined) return;
    if (p.state !== "idle") {
      this.violate(`conn ${p.index} lent from the idle list while ${p.state}`);
    }
    for (const q of this.conns) {
      if (q.state === "idle" && q.idleSeq > p.idleSeq) {
        this.violate(
          `conn ${p.index} (idle since ${p.idleSince}) lent before conn ${q.index} (idle since ${q.idleSince}): not the most recently used`,
        );
      }
    }
    if (now > p.idleSince + this.idleTimeout) {
      this.violate(
        `conn ${p.index} lent at ${now}, idle since ${p.idleSince}: past its idleTimeout ${this.idleTimeout}`,
      );
    }
    if (p.deadAt !== undefined && Math.max(p.deadAt, p.idleSince) < now) {
      this.violate(
        `conn ${p.index} lent at ${now}, idle since ${p.idleSince}, its server hung up at ${p.deadAt}`,
      );
    }
    p.state = "taken";
    p.since = now;
  }

  #onClose(p: Pooled): void {
    const now = this.clock.now();
    switch (p.state) {
      case "idle": {
        // The earliest of: its idleTimeout, its server hanging up, close().
        const expires = p.idleSince + this.idleTimeout;
        const hungUp = p.deadAt === undefined
          ? Infinity
          : Math.max(p.deadAt, p.idleSince);
        const due = Math.min(expires, hungUp, this.closedAt ?? Infinity);
        if (now !== due) {
          this.violate(
            `idle conn ${p.index} closed at ${now}, due at ${due} (idle since ${p.idleSince}, idleTimeout ${this.idleTimeout}, server hung up at ${p.deadAt}, close() at ${this.closedAt})`,
          );
        }
        break;
      }
      case "dialled": {
        // The dial runs in a child of the acquirer: an acquirer cancelled,
        // or aborted, as its dial ends never takes the connection, and the
        // pool closes it.
        const req = p.dialledFor;
        const isGivenUp = this.#cancelled.has(req.client) ||
          now >= req.abortAt;
        if (this.closedAt === undefined && !isGivenUp) {
          this.violate(`conn ${p.index} closed before its acquirer got it`);
        }
        break;
      }
      case "handed":
      case "taken":
        // Given back a moment ago, it is looked at again, a turn later, by
        // whoever takes it: one whose server hung up is closed, and its
        // taker dials instead.
        if (p.deadAt === undefined || p.deadAt > now) {
          this.violate(`conn ${p.index} closed while ${p.state}, alive`);
        }
        break;
      case "returning":
      case "abandoned":
        break;
      case "held":
        // A send cancelled mid-write closes its connection (connection.ts);
        // the pool closes it when the lease ends, as the coroutine does.
        if (p.isSending && this.#cancelled.has(p.holder!.client)) {
          p.state = "broken";
          p.since = p.closedAt = now;
          return;
        }
      // falls through
      default:
        this.violate(
          `conn ${p.index} closed while ${p.state}${
            p.holder ? ` by request ${p.holder.id}` : ""
          }`,
        );
    }
    p.state = "closed";
    p.since = p.closedAt = now;
    p.holder = null;
    queueMicrotask(() => this.sample(`after conn ${p.index} closed`));
  }

  // ---- what every moment must satisfy

  sample(where: string): void {
    if (this.#isDone) return;
    const now = this.clock.now();
    const stats = this.pool.stats;
    let idle = 0;
    let leased = 0;
    let closed = 0;
    // Dialled, and its acquirer yet to tell this test: the dial runs in a
    // child of the acquirer, and the pool counts it as connecting until
    // the acquirer takes it.
    let dialled = 0;
    for (const p of this.conns) {
      if (
        p.state === "closed" || (p.state === "broken" && p.lease!.isEnded)
      ) {
        closed++;
      } else if (p.state === "idle") {
        idle++;
        if (now > p.idleSince + this.idleTimeout) {
          this.violate(
            `${where}: conn ${p.index}, idle since ${p.idleSince}, still open past its idleTimeout ${this.idleTimeout}`,
          );
        }
        if (p.deadAt !== undefined && Math.max(p.deadAt, p.idleSince) < now) {
          this.violate(
            `${where}: conn ${p.index}, idle since ${p.idleSince}, still open; its server hung up at ${p.deadAt}`,
          );
        }
      } else {
        if (p.state === "dialled") dialled++;
        else leased++;
        const isInTransit = p.state === "dialled" || p.state === "taken" ||
          p.state === "handed";
        if (isInTransit && p.since < now) {
          this.violate(
            `${where}: conn ${p.index} ${p.state} at ${p.since} never reached its borrower`,
          );
        }
      }
    }
    // Of those dialled, the pool counts as lent the ones whose acquirer
    // has taken them (it has yet to tell this test), the rest connecting.
    const taken = stats.created - (this.conns.length - dialled);
    if (taken < 0 || taken > dialled) {
      this.violate(
        `${where}: stats.created ${stats.created}, ${this.conns.length} dialled, ${dialled} not yet taken`,
      );
    }
    const expected = {
      open: idle + leased + taken,
      idle,
      leased: leased + taken,
      created: this.conns.length - dialled + taken,
      discarded: closed,
    };
    for (const [key, value] of Object.entries(expected)) {
      const actual = stats[key as keyof typeof expected];
      if (actual !== value) {
        this.violate(`${where}: stats.${key} is ${actual}, expected ${value}`);
      }
    }
    if (stats.connecting < this.#dialling + dialled - taken) {
      this.violate(
        `${where}: stats.connecting ${stats.connecting}, ${this.#dialling} dials run, ${dialled} dialled`,
      );
    }
    if (stats.open + stats.connecting > this.max) {
      this.violate(
        `${where}: ${stats.open} open + ${stats.connecting} connecting > max ${this.max}`,
      );
    }
    if (this.#dialling + idle + leased > this.max) {
      this.violate(
        `${where}: ${
          idle + leased
        } connections open, ${this.#dialling} dialling: more than max ${this.max}`,
      );
    }
    if (stats.waiting > this.maxWaiting) {
      this.violate(
        `${where}: ${stats.waiting} waiting > maxWaiting ${this.maxWaiting}`,
      );
    }
    if (
      stats.waiting > 0 &&
      (stats.idle > 0 || stats.open + stats.connecting < this.max)
    ) {
      this.violate(
        `${where}: ${stats.waiting} waiting while ${stats.idle} idle and ${
          stats.open + stats.connecting
        } of ${this.max} slots taken`,
      );
    }
  }

  // ---- the clients' steps

  begin(client: number, isAsync: boolean, step: Step): Request {
    const start = this.clock.now();
    const limit = step.limit;
    const controller = new AbortController();
    const options: OperationOptions = { signal: controller.signal };
    let deadline = Infinity;
    let abortAt = Infinity;
    let reported: number | undefined;
    if (limit !== null && "timeout" in limit) {
      options.timeout = limit.timeout;
      deadline = start + limit.timeout;
      reported = limit.timeout;
    } else if (limit !== null && "deadlineIn" in limit) {
      deadline = options.deadline = start + limit.deadlineIn;
    } else {
      if (this.acquireTimeout !== Infinity) {
        deadline = start + this.acquireTimeout;
        reported = this.acquireTimeout;
      }
      if (limit !== null) abortAt = start + limit.abortIn;
    }
    const req: Request = {
      id: this.requests.length + 1,
      client,
      isAsync,
      start,
      deadline,
      abortAt,
      reported,
      options,
      controller,
      closedBefore: this.closedAt !== undefined,
      servedAt: undefined,
      dialAt: undefined,
      dial: undefined,
      end: undefined,
      outcome: "pending",
    };
    this.requests.push(req);
    this.#bySignal.set(controller.signal, req);
    return req;
  }

  before(req: Request): Before | null {
    if (req.isAsync) return null;
    const stats = this.pool.stats;
    return {
      waiting: stats.waiting,
      free: this.closedAt === undefined && stats.waiting === 0 &&
        (stats.idle > 0 || stats.open + stats.connecting < this.max),
    };
  }

  /** Checks how an acquire ended; returns the connection lent. */
  acquired(
    req: Request,
    lease: Lease | null,
    error: unknown,
    before: Before | null,
  ): Pooled | null {
    const now = this.clock.now();
    req.end = now;
    req.outcome = lease !== null ? "lease" : nameOf(error);
    const what =
      `request ${req.id} (client ${req.client}, from ${req.start}, deadline ${req.deadline}, abort at ${req.abortAt}) -> ${req.outcome} at ${now}`;
    let p: Pooled | null = null;
    if (lease !== null) {
      p = this.#byConn.get(lease.conn) ?? null;
      if (p === null) {
        this.violate(`${what}: a connection the dial never made`);
      } else {
        if (now > req.deadline || now > req.abortAt) {
          this.violate(`${what}: past its deadline or abort`);
        }
        if (lease.isEnded) this.violate(`${what}: the lease is ended`);
        if (req.dialAt !== undefined) {
          if (p.dialledFor !== req || p.state !== "dialled") {
            this.violate(
              `${what}: got conn ${p.index} (${p.state}), not its own dial's`,
            );
          }
        } else {
          if (
            p.state !== "taken" && p.state !== "handed" &&
            p.state !== "returning"
          ) {
            this.violate(
              `${what}: got conn ${p.index}, which is ${p.state}${
                p.holder ? ` by request ${p.holder.id}` : ""
              }`,
            );
          }
          req.servedAt = now;
        }
        p.state = "held";
        p.holder = req;
        p.since = now;
        p.lends++;
        p.lease = lease;
      }
    } else if (error instanceof TimeoutError) {
      if (error.op !== "acquire") this.violate(`${what}: op ${error.op}`);
      if (now !== req.deadline) this.violate(`${what}: not at its deadline`);
      if (error.timeout !== req.reported) {
        this.violate(
          `${what}: error.timeout ${error.timeout}, not ${req.reported}`,
        );
      }
    } else if (error instanceof Aborted) {
      if (now !== req.abortAt) this.violate(`${what}: not when aborted`);
    } else if (error instanceof PoolExhaustedError) {
      if (now !== req.start) this.violate(`${what}: not at once`);
      if (error.maxWaiting !== this.maxWaiting) {
        this.violate(`${what}: error.maxWaiting ${error.maxWaiting}`);
      }
    } else if (error instanceof PoolClosedError) {
      const closedAt = this.closedAt;
      if (closedAt === undefined || now < closedAt) {
        this.violate(`${what}: the pool was not closed`);
      } else if (
        now !== req.start && now !== closedAt &&
        !(req.dialAt !== undefined && now === req.dialAt + req.dial!.latency)
      ) {
        this.violate(`${what}: not at once, nor at close() at ${closedAt}`);
      }
    } else if (!(error instanceof ConnectError)) {
      this.violate(
        `${what}: ${error instanceof Error ? error.stack : String(error)}`,
      );
    }
    if (
      req.closedBefore && this.closedAt! < req.start &&
      !(error instanceof PoolClosedError && now === req.start)
    ) {
      this.violate(`${what}: after close() at ${this.closedAt}`);
    }
    if (req.dialAt !== undefined) {
      const dialEnd = req.dialAt + req.dial!.latency;
      const outcomes = dialOutcomes(req, this.closedAt);
      if (!outcomes.includes(req.outcome)) {
        this.violate(
          `${what}: its dial began at ${req.dialAt}, ${
            req.dial!.fails ? "fails" : "connects"
          } at ${dialEnd}: expected ${outcomes.join(" or ")}`,
        );
      }
      const atDialEnd = ["lease", "ConnectError", "PoolClosedError"];
      if (atDialEnd.includes(req.outcome) && now !== dialEnd) {
        this.violate(`${what}: not when its dial ended, at ${dialEnd}`);
      }
    } else if (error instanceof ConnectError) {
      this.violate(`${what}: without a dial`);
    }
    if (before !== null && !req.closedBefore) {
      // A function* client: nothing ran between its look and the pool's.
      if (before.free && req.servedAt !== req.start) {
        this.violate(
          `${what}: the pool had an idle connection or a free slot and nobody waiting, yet it was not served at once`,
        );
      }
      if (!before.free && before.waiting >= this.maxWaiting) {
        if (!(error instanceof PoolExhaustedError)) {
          this.violate(
            `${what}: ${before.waiting} already waited (maxWaiting ${this.maxWaiting}), expected PoolExhaustedError`,
          );
        }
      } else if (error instanceof PoolExhaustedError) {
        this.violate(
          `${what}: ${before.waiting} waited (maxWaiting ${this.maxWaiting})${
            before.free ? ", and the pool could serve it" : ""
          }`,
        );
      }
    }
    this.sample(`after request ${req.id}`);
    this.raise();
    return p;
  }

  /** Checks a request's echo: its own, and always there from a live server. */
  used(req: Request, p: Pooled, step: Step, result: unknown): void {
    const token = `r${req.id}`;
    const what =
      `request ${req.id} on conn ${p.index} (echo after ${p.plan.echoDelay} ms, receive timeout ${step.replyTimeout} ms)`;
    if (typeof result === "string") {
      if (result !== token) {
        this.violate(`${what}: got "${result}", sent "${token}"`);
      }
    } else if (p.deadAt === undefined) {
      // Its server is up: only a reply slower than the timeout may fail.
      const isSlow = result instanceof TimeoutError &&
        p.plan.echoDelay >= step.replyTimeout;
      if (!isSlow) this.violate(`${what}: ${nameOf(result)}`);
    }
    this.raise();
  }

  /** Ends a lease by release(), discard() or dispose, and checks the effect. */
  end(p: Pooled, lease: Lease, how: End, used: unknown): void {
    const now = this.clock.now();
    const lends = p.lends;
    const what = `request ${p.holder?.id} ${how} conn ${p.index}`;
    p.state = "returning";
    p.holder = null;
    p.since = now;
    if (how === "discard") lease.discard();
    else if (how === "dispose") lease[Symbol.dispose]();
    else lease.release();
    if (!lease.isEnded) this.violate(`${what}: lease.isEnded is false`);
    // Still "returning": neither closed nor idle, nor lent in the call: it
    // went to a waiter that has not run yet.
    // (A function: TypeScript would keep p.state narrowed to "returning".)
    const stateOf = (): ConnState => p.state;
    if (stateOf() === "returning") p.state = "handed";
    const isClosedHere = stateOf() === "closed" && p.lends === lends;
    const isFailed = used !== undefined && typeof used !== "string";
    if (how === "discard" || isFailed || this.closedAt !== undefined) {
      if (!isClosedHere) {
        this.violate(
          `${what}: stayed open (${p.state})${
            isFailed ? ` after its receive ended with ${nameOf(used)}` : ""
          }${this.closedAt === undefined ? "" : " after close()"}`,
        );
      }
    } else if (p.deadAt === undefined && isClosedHere) {
      this.violate(`${what}: a healthy connection was closed`);
    }
    // Ending the lease again changes nothing.
    const [state, closedAt, lendsAfter] = [p.state, p.closedAt, p.lends];
    lease.release();
    lease.discard();
    if (
      p.state !== state || p.closedAt !== closedAt || p.lends !== lendsAfter
    ) {
      this.violate(`${what}: ending the lease again changed the connection`);
    }
    this.sample(`after ${what}`);
    this.raise();
  }

  /** The coroutine ends holding the lease: it must be closed then. */
  abandon(p: Pooled): void {
    p.state = "abandoned";
    p.holder = null;
    p.since = p.abandonedAt = this.clock.now();
  }

  /** A client's `finally`: if it was cancelled, what it was doing ends. */
  finish(client: number, current: Current): void {
    if (!this.#cancelled.has(client)) return;
    if (current.req !== null) {
      current.req.end = this.clock.now();
      current.req.outcome = "cancelled";
    }
    if (current.lease !== null && current.lease.state !== "broken") {
      this.abandon(current.lease);
      // `using` disposes it here: a cancelled borrower may have stopped
      // between its request and the reply, so the lease is closed all the
      // same, at once.
      current.disposable?.[Symbol.dispose]();
    }
  }

  // ---- the run

  *main(
    clients: ClientPlan[],
    closeAt: number | null,
  ): Generator<Effect, void, unknown> {
    const guard = yield* spawn(this.#guard());
    const closer = closeAt === null ? null : yield* spawn(this.#close(closeAt));
    const tasks = [];
    const cancellers = [];
    for (const [id, { isAsync, steps, cancelAt }] of clients.entries()) {
      const client = isAsync
        ? clientAsync(this, id, steps)
        : clientSync(this, id, steps);
      const task = yield* spawn(client);
      tasks.push(task);
      if (cancelAt !== null) {
        cancellers.push(yield* spawn(this.#cancel(id, task, cancelAt)));
      }
    }
    for (const [id, task] of tasks.entries()) {
      try {
        yield* task.join();
      } catch (error) {
        if (!(error instanceof CancelledError && this.#cancelled.has(id))) {
          throw error;
        }
      }
    }
    guard.cancel();
    closer?.cancel();
    for (const canceller of cancellers) canceller.cancel();
    this.#checkEnd();
    this.raise();
    yield* this.#close(0);
    const before = this.clock.now();
    try {
      yield* this.pool.acquire();
      this.violate("acquire() after close() succeeded");
    } catch (error) {
      if (!(error instanceof PoolClosedError)) {
        this.violate(`acquire() after close(): ${nameOf(error)}`);
      }
    }
    if (this.clock.now() !== before) {
      this.violate("acquire() after close() did not fail at once");
    }
    this.raise();
  }

  *#cancel(
    client: number,
    task: Task<void>,
    ms: number,
  ): Generator<Effect, void, unknown> {
    yield* delay(ms);
    if (task.isDone) return;
    this.#cancelled.add(client);
    task.cancel();
  }

  *#guard(): Generator<Effect, void, unknown> {
    yield* delay(STALL);
    this.violate(`stalled: ${JSON.stringify(this.pool.stats)}`);
    this.closedAt ??= this.clock.now();
    this.pool.close();
  }

  *#close(ms: number): Generator<Effect, void, unknown> {
    yield* delay(ms);
    this.closedAt ??= this.clock.now();
    this.pool.close();
    // close() fails the waiters and closes the idle connections at once.
    const stats = this.pool.stats;
    if (stats.idle !== 0 || stats.waiting !== 0) {
      this.violate(`after close(): ${JSON.stringify(stats)}`);
    }
    this.sample("after close()");
  }

  #checkEnd(): void {
    const stats = this.pool.stats;
    if (stats.waiting !== 0 || stats.connecting !== 0 || stats.leased !== 0) {
      this.violate(`every client ended: ${JSON.stringify(stats)}`);
    }
    for (const p of this.conns) {
      if (p.abandonedAt !== undefined && p.closedAt !== p.abandonedAt) {
        this.violate(
          `conn ${p.index}, whose coroutine ended holding it at ${p.abandonedAt}, closed at ${p.closedAt}`,
        );
      }
      const isEnded = p.state === "closed" ||
        (p.state === "broken" && p.lease!.isEnded);
      if (p.state !== "idle" && !isEnded) {
        this.violate(`conn ${p.index} is ${p.state} after every client ended`);
      }
    }
    // First come, first served.
    for (const b of this.requests) {
      if (b.servedAt === undefined) continue;
      for (const a of this.requests) {
        if (a.start >= b.start) continue;
        const left = a.servedAt ?? a.end ?? Infinity;
        if (left > b.servedAt) {
          this.violate(
            `request ${a.id} (from ${a.start}) waited until ${left}, yet request ${b.id} (from ${b.start}) was served at ${b.servedAt}`,
          );
        }
      }
    }
    this.sample("after every client ended");
  }

  /** After close() and the run: every connection closed, stats to match. */
  checkClosed(): void {
    const n = this.conns.length;
    assert.deepEqual(this.pool.stats, {
      open: 0,
      idle: 0,
      leased: 0,
      connecting: 0,
      waiting: 0,
      created: n,
      discarded: n,
    });
    for (const p of this.conns) {
      assert.ok(p.conn.isClosed, `conn ${p.index} open after close()`);
    }
  }

  /** Runs the clients, closes the pool, and checks the end state. */
  async run(clients: ClientPlan[], closeAt: number | null): Promise<void> {
    const hung = (what: string) => () =>
      `${what} hung at ${this.clock.now()}: ${
        JSON.stringify(this.pool.stats)
      }\n${this.violations.join("\n")}`;
    await within(
      run(this.main(clients, closeAt), { clock: this.clock }),
      hung("the run"),
    );
    await within(this.pool.close(), hung("close()"));
    this.raise();
    this.checkClosed();
  }

  async cleanup(): Promise<void> {
    this.#isDone = true;
    const closing = this.pool.close();
    for (const p of this.conns) p.conn.close();
    for (const peer of this.#peers) peer.cancel();
    await within(
      Promise.all([
        closing,
        ...this.#peers.map((peer) => peer.finished.catch(() => {})),
      ]),
      () => "cleanup",
    );
  }
}

// The two forms differ only in where `yield*` runs an operation: inside an
// `async function*` it waits in place, inside a `function*` it yields to
// the scheduler. Each writes its steps out itself for that.

function* clientSync(
  world: World,
  id: number,
  steps: Step[],
): Generator<Effect, void, unknown> {
  const current: Current = { req: null, lease: null, disposable: null };
  try {
    for (const step of steps) {
      yield* delay(step.gap);
      const req = current.req = world.begin(id, false, step);
      const aborter = req.abortAt === Infinity
        ? null
        : yield* spawn(abortLater(req.abortAt - req.start, req.controller));
      const before = world.before(req);
      let lease: Lease | null = null;
      let error: unknown = null;
      try {
        lease = yield* world.pool.acquire(req.options);
      } catch (caught) {
        error = caught;
      }
      aborter?.cancel();
      current.req = null;
      const p = current.lease = world.acquired(req, lease, error, before);
      if (lease === null || p === null) continue;
      current.disposable = step.end === "dispose" ? lease : null;
      yield* delay(step.hold);
      let used: unknown = undefined;
      if (step.use) {
        try {
          p.isSending = true;
          yield* lease.conn.send(`r${req.id}\n`);
          p.isSending = false;
          used = yield* lease.conn.recvLine({ timeout: step.replyTimeout });
        } catch (caught) {
          p.isSending = false;
          used = caught;
        }
        world.used(req, p, step, used);
      }
      current.lease = current.disposable = null;
      if (step.end === "abandon") return world.abandon(p);
      world.end(p, lease, step.end, used);
    }
  } finally {
    world.finish(id, current);
  }
}

async function* clientAsync(
  world: World,
  id: number,
  steps: Step[],
): AsyncGenerator<Effect, void, unknown> {
  const current: Current = { req: null, lease: null, disposable: null };
  try {
    for (const step of steps) {
      yield* delay(step.gap);
      const req = current.req = world.begin(id, true, step);
      const aborter = req.abortAt === Infinity
        ? null
        : yield* spawn(abortLater(req.abortAt - req.start, req.controller));
      let lease: Lease | null = null;
      let error: unknown = null;
      try {
        lease = yield* world.pool.acquire(req.options);
      } catch (caught) {
        error = caught;
      }
      aborter?.cancel();
      current.req = null;
      const p = current.lease = world.acquired(req, lease, error, null);
      if (lease === null || p === null) continue;
      current.disposable = step.end === "dispose" ? lease : null;
      yield* delay(step.hold);
      let used: unknown = undefined;
      if (step.use) {
        try {
          p.isSending = true;
          yield* lease.conn.send(`r${req.id}\n`);
          p.isSending = false;
          used = yield* lease.conn.recvLine({ timeout: step.replyTimeout });
        } catch (caught) {
          p.isSending = false;
          used = caught;
        }
        world.used(req, p, step, used);
      }
      current.lease = current.disposable = null;
      if (step.end === "abandon") return world.abandon(p);
      world.end(p, lease, step.end, used);
    }
  } finally {
    world.finish(id, current);
  }
}

Deno.test("Pool under random clients, dials, server hang-ups and close() keeps max, FIFO order, deadlines, reuse and idle expiry (200 runs)", async () => {
  await fc.assert(
    fc.asyncProperty(
      poolOf,
      dialsOf,
      clientsOf,
      closeAtOf,
      async (plan, dials, clients, closeAt) => {
        const world = new World(plan, dials);
        try {
          await world.run(clients, closeAt);
        } finally {
          await world.cleanup();
        }
      },
    ),
    runs(200),
  );
});
