/**
 * `serve`: a TCP, TLS or Unix socket server whose connection handlers are
 * coroutines. The accept loop enforces the connection cap before `accept()`, survives
 * descriptor exhaustion, and shuts down gracefully, then firmly.
 *
 * @module
 */

import { AcceptFailures, checkServeOptions, type Listener } from "./_accept.ts";
import { checkListenOptions, listen } from "./_listen.ts";
import { addressOf } from "./_address.ts";
import { Slot, Slots } from "./_slots.ts";
import { Connection } from "./connection.ts";
import {
  checkConnectionOptions,
  type ConnectionOptions,
  type Transport,
} from "./connection_options.ts";
import {
  CancelledError,
  ConnectionClosedError,
  ConnectionResetError,
  IncompleteReadError,
  LineTooLongError,
  TimeoutError,
} from "./errors.ts";
import { Scheduler } from "./scheduler.ts";
import { RUNNING } from "./_coroutine.ts";
import {
  type ConnectionInfo,
  DEFAULTS,
  type Handler,
  type ServeOptions,
  type ServerAddr,
  type ServerStats,
  type ShutdownOptions,
  type TcpServeOptions,
  type TlsServeOptions,
  type UnixServeOptions,
} from "./_serve_options.ts";

export type {
  ConnectionInfo,
  Handler,
  ServeCommonOptions,
  ServeOptions,
  ServerAddr,
  ServerStats,
  ShutdownOptions,
  TcpServeOptions,
  TlsServeOptions,
  UnixPeerAddr,
  UnixServeOptions,
} from "./_serve_options.ts";
import { callOnError } from "./_on_error.ts";

let injectedListener: Listener | null = null;

/**
 * @internal Serves on `listener` instead of `Deno.listen` (the reliability
 * tests run the real accept loop over memory connections).
 */
export function serveOn(
  listener: Listener,
  options: ServeOptions,
  handler: Handler,
): Server {
  injectedListener = listener;
  try {
    return new Server(options, handler);
  } finally {
    injectedListener = null;
  }
}

/**
 * True when `accept()` failed because the client gave up while it waited
 * in the backlog: Deno 2.9.6 reports a client that reset there as
 * NotConnected (ENOTCONN), measured with SO_LINGER 0 clients, and other
 * systems as ConnectionAborted or ConnectionReset. Backing off for it would
 * let anyone who connects and resets stall the accept loop.
 */
function isPeerGone(error: unknown): boolean {
  return error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.ConnectionReset;
}

/**
 * True when a handler the server cancelled (shutdown, eviction) failed on
 * the connection the server then closed under it: a goodbye sent in its
 * `finally`, say. It ended by the server's cancel, not by a fault of its
 * own, as its children's errors of that close do (see `Slots`).
 */
function isServersClose(slot: Slot, error: unknown): boolean {
  return error instanceof ConnectionClosedError &&
    slot.task !== null && slot.task.isCancelled;
}

/**
 * A `TimeoutError`, or the `ConnectionClosedError` of a connection a send
 * timeout closed (met by another coroutine of the handler's first).
 */
function isTimeout(error: unknown): boolean {
  return error instanceof TimeoutError ||
    (error instanceof ConnectionClosedError &&
      error.cause instanceof TimeoutError);
}

function defaultOnError(error: unknown): void {
  // A peer that goes quiet, resets, hangs up mid-message or sends a line
  // over the limit is routine.
  if (
    isTimeout(error) || error instanceof ConnectionResetError ||
    error instanceof IncompleteReadError || error instanceof LineTooLongError
  ) return;
  console.error(error);
}

/**
 * A running server. `await server.finished` to serve until shutdown.
 * `Addr` is its address type: `Deno.NetAddr` for TCP and TLS,
 * `Deno.UnixAddr` for a Unix socket.
 *
 * @example
 * ```ts
 * import { serve } from "@corio/corio";
 *
 * await using server = serve({ hostname: "127.0.0.1" }, function* (conn) {
 *   yield* conn.send("hello\n");
 * });
 * console.log(server.addr.port > 0); // true
 * ```
 */
export class Server<Addr extends ServerAddr = Deno.NetAddr>
  implements AsyncDisposable {
  /**
   * The address the server listens on (the real port when 0 was asked;
   * `{ transport: "unix", path }` for a Unix socket).
   */
  readonly addr: Addr;
  /** Live counters. */
  readonly stats: ServerStats = {
    active: 0,
    accepted: 0,
    refused: 0,
    peerLimited: 0,
    evicted: 0,
    completed: 0,
    failed: 0,
    timeouts: 0,
    cancelled: 0,
    acceptErrors: 0,
  };
  /**
   * Resolves once the server has shut down and closed every socket (a TLS
   * socket whose handshake never completed stays open in Deno 2.9.6 until
   * its client leaves: see the README).
   */
  readonly finished: Promise<void>;

  #listener: Listener;
  /** Deno's own sockets, whose reads go through the read pacer. */
  readonly #isRealListener: boolean;
  #handler: Handler;
  #options: TcpServeOptions;
  /** What each connection is made with: the options, or in memory. */
  #connectionOptions: ConnectionOptions;
  #onError: (error: unknown, info?: ConnectionInfo) => void;
  #scheduler: Scheduler;
  #maxConnections: number;
  #maxPerPeer: number;
  #evictAfter: number;
  #slots = new Slots(
    (slot, isOk, result) => this.#ended(slot, isOk, result),
    (slot, error) => {
      // The server closed the connection under its cancelled handler; a
      // child that saw the close before its own cancel has nothing to say.
      if (!(error instanceof ConnectionClosedError)) {
        this.#report(error, slot.info);
      }
    },
    (slot) => {
      const since = Math.ceil(this.#scheduler.now());
      // A wait for the oldest idle connection saw none: this one is it.
      const isOnlyIdle = this.#slots.requeue(slot, since);
      if (isOnlyIdle && this.#isMakingRoom) this.#wake?.();
    },
  );
  #nextId = 1;
  #isStopping = false;
  // Aborted as shutdown begins: every ConnectionInfo's `signal`.
  #stopping = new AbortController();
  #wake: (() => void) | null = null;
  // `#makeRoom` is waiting (not the accept back-off, nor the grace).
  #isMakingRoom = false;
  #acceptLoop: Promise<void>;
  #shutdown: Promise<void> | null = null;
  #resolveFinished!: () => void;
  #compactor: ReturnType<typeof setInterval> | undefined = undefined;

  /** @internal Use {@linkcode serve}. */
  constructor(options: ServeOptions, handler: Handler<Addr>) {
    if (typeof handler !== "function") {
      throw new TypeError(
        "Cannot serve: handler must be a function* or async function*",
      );
    }
    const maxConnections = options.maxConnections ?? DEFAULTS.maxConnections;
    const maxPerPeer = options.maxConnectionsPerPeer ??
      DEFAULTS.maxConnectionsPerPeer;
    checkListenOptions(options);
    checkServeOptions(options, maxConnections, maxPerPeer);
    // Validate connection defaults now, not on the first connection.
    checkConnectionOptions(options);
    // Inside, one shape for all three kinds: the kinds differ only in the
    // address type their hooks see.
    this.#options = options as TcpServeOptions;
    this.#handler = handler as unknown as Handler;
    this.#maxConnections = maxConnections;
    this.#maxPerPeer = maxPerPeer;
    this.#evictAfter = options.evictAfter ?? DEFAULTS.evictAfter;
    this.#onError = this.#options.onError ?? defaultOnError;
    this.#scheduler = new Scheduler({
      clock: options.clock,
      onError: (error) => this.#onError(error),
    });
    this.#isRealListener = injectedListener === null;
    this.#listener = injectedListener ?? listen(options);
    this.#connectionOptions = this.#listener.isInMemory
      ? { ...options, isExternal: false }
      : options;
    this.addr = this.#listener.addr as Addr;
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#acceptLoop = this.#accept();
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) this.shutdown({ grace: options.shutdownGrace });
      else {
        const stop = () => this.shutdown({ grace: options.shutdownGrace });
        signal.addEventListener("abort", stop, { once: true });
        // A shutdown by other means lets go of a longer-lived signal: its
        // listener would keep the stopped server reachable.
        this.finished.then(() => signal.removeEventListener("abort", stop));
      }
    }
  }

  /**
   * Stops accepting at once, lets running handlers finish for up to
   * `grace` ms, then cancels the rest (their `finally` blocks run) and
   * closes every socket. Idempotent: later calls return the same promise.
   *
   * @param options The grace period: by default the server's
   *   `shutdownGrace` (0 unless set); `{ grace: 0 }` cancels at once.
   * @returns Resolves when every handler has ended and every socket is
   *   closed. A cancelled handler's `finally` that waits off the network
   *   (a `delay`, a `wait()`) holds it that long: give such a wait a
   *   timeout. Network waits cannot: the connections are closed. The
   *   cancel meets a handler at its current wait, wherever that is: one
   *   already in a `finally` it entered on an error (the abort of
   *   `info.signal`, say) ends that wait, and the rest of the block is
   *   skipped. Cleanup that waits after `info.signal` fired has the grace
   *   to finish in: give it a grace that covers it.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    const grace = options.grace ?? this.#options.shutdownGrace ??
      DEFAULTS.shutdownGrace;
    if (!(grace >= 0)) {
      throw new RangeError(
        `Cannot shut down: grace must be >= 0, got ${grace}`,
      );
    }
    return this.#shutdown ??= this.#stop(grace);
  }

  /**
   * True once shutdown has begun (`shutdown()`, the `signal` option, `await
   * using`): a handler in its grace can wrap up instead of starting more.
   */
  get isStopping(): boolean {
    return this.#isStopping;
  }

  /** Shuts down with the `shutdownGrace` option. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown({ grace: this.#options.shutdownGrace });
  }

  async #accept(): Promise<void> {
    const backoff = this.#options.acceptBackoff ?? DEFAULTS.acceptBackoff;
    const mayEvict = this.#evictAfter !== Infinity;
    const failures = new AcceptFailures(this.#where(), backoff);
    while (!this.#isStopping) {
      if (!mayEvict && this.stats.active >= this.#maxConnections) {
        // Pre-accept cap: leave further clients in the kernel backlog.
        await this.#pause(Infinity);
        continue;
      }
      let conn: Transport;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#isStopping || error instanceof Deno.errors.BadResource) break;
        // The peer gave up while queued (a reset in the backlog: Deno 2.9.6
        // says NotConnected, ENOTCONN, for it): nothing to back off from.
        if (isPeerGone(error)) continue;
        // EMFILE and kin (or anything unforeseen): back off, report at most
        // once per back-off, and never let the loop die.
        this.stats.acceptErrors++;
        const report = failures.record(error, this.#scheduler.now());
        if (report !== null) this.#report(report);
        // A handler that ends frees a descriptor: retry then, or after the
        // back-off, whichever comes first.
        await this.#pause(this.#scheduler.now() + backoff);
        continue;
      }
      const admitted = this.#screen(conn);
      if (admitted === null) continue;
      if (
        this.stats.active >= this.#maxConnections && !await this.#makeRoom()
      ) {
        // Admitted (`onAccept` said yes, it has an id), and the shutdown
        // came before a place did: its handler is cancelled before it ran.
        this.stats.accepted++;
        this.stats.cancelled++;
        conn.close();
        break;
      }
      this.#start(conn, ...admitted);
    }
  }

  /** Per-peer cap and `onAccept`: the handler to run, or null if refused. */
  #screen(conn: Transport): [ConnectionInfo, Handler] | null {
    const info: ConnectionInfo = {
      id: this.#nextId++,
      remoteAddr: conn.remoteAddr as Deno.NetAddr,
      localAddr: conn.localAddr as Deno.NetAddr,
      signal: this.#stopping.signal,
    };
    let verdict: boolean | Handler | void = true;
    const stats = this.stats;
    if (this.#slots.countOf(info.remoteAddr.hostname) >= this.#maxPerPeer) {
      stats.peerLimited++;
      verdict = false;
    } else if (this.#options.onAccept) {
      try {
        verdict = this.#options.onAccept(info);
      } catch (error) {
        this.#report(error, info);
        verdict = false;
      }
    }
    if (verdict === false) {
      stats.accepted++;
      stats.refused++;
      conn.close();
      return null;
    }
    return [info, typeof verdict === "function" ? verdict : this.#handler];
  }

  /**
   * At the cap, with a connection accepted and waiting: evicts the
   * connection idle longest, if for `evictAfter` ms (it has received
   * nothing since it was accepted or marked idle), and waits for a slot. False if the server stopped meanwhile.
   */
  async #makeRoom(): Promise<boolean> {
    while (this.stats.active >= this.#maxConnections && !this.#isStopping) {
      const victim = this.#slots.oldestIdle();
      const eligibleAt = victim ? victim.since + this.#evictAfter : Infinity;
      if (victim && eligibleAt <= this.#scheduler.now()) {
        victim.isEvicted = true;
        await this.#cancelThenClose([victim]);
        // Until its handler has ended, unless one has already (its wake-up
        // then found no pause to end).
        if (this.stats.active >= this.#maxConnections) {
          await this.#pause(Infinity);
        }
      } else {
        this.#isMakingRoom = true;
        try {
          await this.#pause(eligibleAt);
        } finally {
          this.#isMakingRoom = false;
        }
      }
    }
    return !this.#isStopping;
  }

  #start(conn: Transport, info: ConnectionInfo, handler: Handler): void {
    const stats = this.stats;
    stats.accepted++;
    if (this.#options.noDelay ?? DEFAULTS.noDelay) {
      (conn as Partial<Deno.TcpConn>).setNoDelay?.(true);
    }
    const connection = new Connection(conn, this.#connectionOptions);
    connection.isPaced = this.#isRealListener;
    const slot = new Slot(
      this.#slots,
      info,
      Math.ceil(this.#scheduler.now()),
      connection,
    );
    if (this.#evictAfter !== Infinity) connection.slot = slot;
    stats.active++;
    this.#slots.add(slot);
    if (this.#compactor === undefined) {
      const compactor = setInterval(this.#compact, COMPACT_INTERVAL);
      Deno.unrefTimer(compactor);
      this.#compactor = compactor;
    }
    try {
      slot.task = this.#scheduler._spawnSettled(
        handler(connection, info),
        connection,
        slot,
      );
    } catch (error) {
      connection.close();
      this.#ended(slot, false, error);
    }
  }

  #ended(slot: Slot, isOk: boolean, error: unknown): void {
    const stats = this.stats;
    this.#slots.remove(slot);
    if (this.#slots.size === 0 && this.#compactor !== undefined) {
      clearInterval(this.#compactor);
      this.#compactor = undefined;
    }
    stats.active--;
    if (isOk) stats.completed++;
    else if (
      error instanceof CancelledError || isServersClose(slot, error) ||
      // A wait given `info.signal` that the shutdown ended, not caught.
      (this.#stopping.signal.aborted && error === this.#stopping.signal.reason)
    ) {
      if (slot.isEvicted) stats.evicted++;
      else stats.cancelled++;
    } else {
      stats.failed++;
      if (isTimeout(error)) stats.timeouts++;
      this.#report(error, slot.info);
    }
    this.#wake?.();
  }

  /**
   * Handlers waiting on a receive since before the last run have their
   * connections forget what they keep for reuse, and those waiting in place
   * move to the compact way of waiting (`Scheduler._compact`): an idle
   * connection then holds less JS heap (B8); one whose waits stay under
   * 0.25 s is never touched.
   */
  #compact = (): void => {
    const scheduler = this.#scheduler;
    this.#slots.each((slot) => {
      if (slot.task !== null && scheduler._compact(slot.task)) {
        slot.connection.compact();
      }
    });
    scheduler._nextEpoch();
  };

  #report(error: unknown, info?: ConnectionInfo): void {
    callOnError(this.#onError, error, info);
  }

  /** Waits until a slot frees, the server stops, or the clock reaches `at`. */
  #pause(at: number): Promise<void> {
    return new Promise((resolve) => {
      const clock = this.#scheduler.clock;
      const timer = at === Infinity ? undefined : clock.setTimer(at, () => {
        this.#wake = null;
        resolve();
      });
      this.#wake = () => {
        this.#wake = null;
        if (timer !== undefined) clock.clearTimer(timer);
        resolve();
      };
    });
  }

  async #stop(grace: number): Promise<void> {
    this.#isStopping = true;
    this.#stopping.abort(
      new DOMException("the server is shutting down", "AbortError"),
    );
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    this.#wake?.();
    await this.#acceptLoop;
    // The grace runs on the scheduler's clock, like the accept back-off; each
    // handler that ends wakes the pause, so an emptied server stops at once.
    const graceEnd = this.#scheduler.now() + grace;
    while (this.stats.active > 0 && this.#scheduler.now() < graceEnd) {
      await this.#pause(graceEnd);
    }
    const scheduler = this.#scheduler;
    const slots = this.#slots.list();
    const finishing = slots.map((slot) =>
      slot.task && scheduler._promise(slot.task).catch(() => {})
    );
    // Cancel first (finally blocks run), then close what is left, so a
    // cleanup that waits on the network cannot hold the shutdown up.
    await this.#cancelThenClose(slots);
    await Promise.all(finishing);
    this.#resolveFinished();
  }

  /**
   * Cancels the slots' handlers, then closes their connections. An `async
   * function*` acts on its cancel some microtask turns later (its wait's
   * promise settles, its generator returns): closed at once, its connection
   * would reach it, or a child of its waiting on the connection, as a
   * `ConnectionClosedError` before the cancel. So the close waits until no
   * cancelled handler is still on its way to its `finally`'s first wait or
   * its end, for a few turns at most: one that stays running (in a plain
   * `await`) meets the cancel at its next operation all the same.
   */
  async #cancelThenClose(slots: Slot[]): Promise<void> {
    const scheduler = this.#scheduler;
    for (const slot of slots) {
      if (slot.task !== null) scheduler._cancel(slot.task);
    }
    const isRunning = (slot: Slot) => slot.task?.state === RUNNING;
    for (let turn = 0; turn < CANCEL_TURNS && slots.some(isRunning); turn++) {
      await undefined;
    }
    for (const slot of slots) slot.connection.close();
  }

  #where(): string {
    return addressOf(this.addr as ServerAddr);
  }
}

/**
 * Microtask turns `#cancelThenClose` waits at most: an `async function*`
 * cancelled in place reaches its `finally` in about 6.
 */
const CANCEL_TURNS = 32;

/** Real-time ms between two passes of `#compact`: idle 0.25–0.5 s. */
const COMPACT_INTERVAL = 250;

/**
 * Serves TCP connections, or TLS ones with `cert` and `key`: each is
 * handled by a coroutine, `handler(conn, info)`, which owns the connection
 * (closed when the handler ends, however it ends). A handler's error is
 * reported to `onError` and ends only its own connection.
 *
 * TLS: `Deno.listenTls` with the PEM `cert` and `key`. A connection's
 * handshake runs at its handler's first receive or send: one that fails (a
 * client that is no TLS client, or rejects the certificate) throws
 * `ConnectionResetError` there, saying so, and touches neither the accept
 * loop nor the other clients.
 *
 * @param options Address (and TLS certificate), cap, timeouts, hooks.
 * @param handler A `function*` or `async function*`.
 * @returns The running {@linkcode Server}.
 * @throws {RangeError} For nonsense options (cap 0, negative timeouts).
 * @throws {TypeError} For options that mix kinds (`cert` without `key`).
 * @throws {Deno.errors.AddrInUse} If the port is taken.
 *
 * @example Seed 002: echo with 3 s timeouts, at most 100 connections
 * ```ts
 * import { serve } from "@corio/corio";
 *
 * const server = serve(
 *   { hostname: "127.0.0.1", port: 0, maxConnections: 100, recvTimeout: 3000, sendTimeout: 3000 },
 *   async function* echo(conn) {
 *     for (let chunk; (chunk = yield* conn.recv()) !== null;) yield* conn.send(chunk);
 *   },
 * );
 * console.log(`listening on ${server.addr.hostname}:${server.addr.port}`);
 * await server.shutdown();
 * ```
 *
 * @example A TLS echo server
 * ```ts ignore
 * import { serve } from "@corio/corio";
 *
 * const server = serve({
 *   port: 8443,
 *   cert: await Deno.readTextFile("cert.pem"),
 *   key: await Deno.readTextFile("key.pem"),
 * }, async function* echo(conn) {
 *   for (let chunk; (chunk = yield* conn.recv()) !== null;) yield* conn.send(chunk);
 * });
 * await server.finished;
 * ```
 */
export function serve(
  options: TcpServeOptions | TlsServeOptions,
  handler: Handler<Deno.NetAddr>,
): Server<Deno.NetAddr>;
/**
 * Serves connections on a Unix domain socket, `path`: each is handled by a
 * coroutine, as for TCP. The socket file is removed on shutdown; an
 * existing file at `path` (a live server's socket, or a crashed run's
 * leftover) is an `AddrInUse` error, and is left alone.
 *
 * @param options The socket's path, cap, timeouts, hooks.
 * @param handler A `function*` or `async function*`.
 * @returns The running {@linkcode Server}, its `addr` the socket's.
 * @throws {RangeError} For nonsense options (cap 0, negative timeouts).
 * @throws {TypeError} For `path` with a TCP option (`port`, `cert`...).
 * @throws {Deno.errors.AddrInUse} If a file is at `path` already.
 *
 * @example A Unix socket server
 * ```ts
 * import { serve } from "@corio/corio";
 *
 * const path = `${await Deno.makeTempDir()}/app.sock`;
 * await using server = serve({ path }, function* (conn) {
 *   yield* conn.send("hello\n");
 * });
 * console.log(server.addr.path === path); // true
 * ```
 */
export function serve(
  options: UnixServeOptions,
  handler: Handler<Deno.UnixAddr>,
): Server<Deno.UnixAddr>;
/**
 * Serves TCP, TLS or Unix socket connections, as the options say: for
 * options whose kind is known only at run time.
 *
 * @param options {@linkcode ServeOptions} of any kind.
 * @param handler A `function*` or `async function*`.
 * @returns The running {@linkcode Server}.
 * @throws {RangeError} For nonsense options (cap 0, negative timeouts).
 * @throws {TypeError} For options that mix kinds.
 * @throws {Deno.errors.AddrInUse} If the address is taken.
 *
 * @example Options chosen at run time
 * ```ts
 * import { serve, type ServeOptions } from "@corio/corio";
 *
 * const path = Deno.env.get("CORIO_EXAMPLE_SOCKET");
 * const options: ServeOptions = path ? { path } : { hostname: "127.0.0.1" };
 * await using server = serve(options, function* (conn) {
 *   yield* conn.send("hello\n");
 * });
 * console.log(server.addr.transport); // tcp
 * ```
 */
export function serve(
  options: ServeOptions,
  handler: Handler<ServerAddr>,
): Server<ServerAddr>;
export function serve(
  options: ServeOptions,
  handler:
    | Handler<Deno.NetAddr>
    | Handler<Deno.UnixAddr>
    | Handler<ServerAddr>,
): Server<ServerAddr> {
  return new Server(options, handler as Handler<ServerAddr>);
}
