/**
 * `serve`: a TCP server whose connection handlers are coroutines. The
 * accept loop enforces the connection cap before `accept()`, survives
 * descriptor exhaustion, and shuts down gracefully, then firmly.
 *
 * @module
 */

import { Connection } from "./connection.ts";
import type { Coroutine } from "./effects.ts";
import {
  AcceptError,
  CancelledError,
  ConnectionResetError,
  TimeoutError,
} from "./errors.ts";
import { Scheduler, type Task } from "./scheduler.ts";
import type { Clock } from "./timers.ts";

/** What the server knows about a connection when it admits it. */
export interface ConnectionInfo {
  /** A number unique within this server, counting from 1. */
  readonly id: number;
  /** The client's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** The address it connected to. */
  readonly localAddr: Deno.NetAddr;
}

/** A connection handler: a coroutine function that gets the connection. */
export type Handler = (
  conn: Connection,
  info: ConnectionInfo,
) => Coroutine<unknown>;

/** Options for {@linkcode serve}. */
export interface ServeOptions {
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
   * Kernel accept queue length. Deno's 511 made a burst of 10k connects
   * take 10.5 s instead of 1.5 s (measured), hence the larger default.
   * @default {4096}
   */
  tcpBacklog?: number;
  /**
   * Handlers running at once. At the cap the server stops calling
   * `accept()`; further clients wait in the kernel backlog.
   * @default {10000}
   */
  maxConnections?: number;
  /**
   * Default timeout of every receive, in ms.
   * @default {Infinity}
   */
  recvTimeout?: number;
  /**
   * Default timeout of every send, in ms (a send timeout closes).
   * @default {Infinity}
   */
  sendTimeout?: number;
  /**
   * Longest line `recvLine` accepts, in bytes.
   * @default {65536}
   */
  maxLineLength?: number;
  /**
   * Decides on each accepted connection: `false` refuses it (closed at
   * once), a function serves it with that handler instead, anything else
   * serves it with the default handler.
   */
  onAccept?: (info: ConnectionInfo) => boolean | Handler | void;
  /**
   * Receives handler errors (with the connection) and accept-loop errors.
   * @default {console.error, except for TimeoutError and ConnectionResetError, which are only counted}
   */
  onError?: (error: unknown, info?: ConnectionInfo) => void;
  /** Aborting it shuts the server down with `shutdownGrace`. */
  signal?: AbortSignal;
  /**
   * Grace for shutdowns by `signal` or `Symbol.asyncDispose`, in ms.
   * @default {0}
   */
  shutdownGrace?: number;
  /**
   * Back-off after an accept failure such as EMFILE, in ms (Trio's 100 ms).
   * @default {100}
   */
  acceptBackoff?: number;
  /**
   * The scheduler's clock.
   * @default {systemClock}
   */
  clock?: Clock;
}

/** Counters of a {@linkcode Server}; a live view. */
export interface ServerStats {
  /** Handlers running now. */
  active: number;
  /** Connections accepted (refused ones included). */
  accepted: number;
  /** Connections refused by `onAccept`. */
  refused: number;
  /** Handlers that returned. */
  completed: number;
  /** Handlers that threw (timeouts included). */
  failed: number;
  /** Handlers that ended with an uncaught `TimeoutError`. */
  timeouts: number;
  /** Handlers cancelled by shutdown. */
  cancelled: number;
  /** Accept failures survived (EMFILE and kin). */
  acceptErrors: number;
}

/** Options for {@linkcode Server.shutdown}. */
export interface ShutdownOptions {
  /**
   * How long running handlers may go on before they are cancelled, in ms.
   * @default {0}
   */
  grace?: number;
}

const DEFAULTS = {
  port: 0,
  hostname: "0.0.0.0",
  tcpBacklog: 4096,
  maxConnections: 10_000,
  shutdownGrace: 0,
  acceptBackoff: 100,
} as const;

// Deno's listener throws these when the process or system is out of
// descriptors or memory; the connection stays in the backlog for later.
const EXHAUSTION = /EMFILE|ENFILE|ENOBUFS|ENOMEM|os error (24|23|105|12)\b/;

function defaultOnError(error: unknown): void {
  if (error instanceof TimeoutError || error instanceof ConnectionResetError) {
    return;
  }
  console.error(error);
}

/**
 * A running server. `await server.finished` to serve until shutdown.
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
export class Server implements AsyncDisposable {
  /** The address the server listens on (the real port when 0 was asked). */
  readonly addr: Deno.NetAddr;
  /** Live counters. */
  readonly stats: ServerStats = {
    active: 0,
    accepted: 0,
    refused: 0,
    completed: 0,
    failed: 0,
    timeouts: 0,
    cancelled: 0,
    acceptErrors: 0,
  };
  /** Resolves once the server has shut down and every socket is closed. */
  readonly finished: Promise<void>;

  #listener: Deno.TcpListener;
  #handler: Handler;
  #options: ServeOptions;
  #onError: (error: unknown, info?: ConnectionInfo) => void;
  #scheduler: Scheduler;
  #maxConnections: number;
  #connections = new Map<Task<unknown>, Connection>();
  #nextId = 1;
  #isStopping = false;
  #slotFreed: (() => void) | null = null;
  #backoffTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #backoffDone: (() => void) | null = null;
  #acceptLoop: Promise<void>;
  #shutdown: Promise<void> | null = null;
  #resolveFinished!: () => void;
  #idle: (() => void) | null = null;

  /** @internal Use {@linkcode serve}. */
  constructor(options: ServeOptions, handler: Handler) {
    if (typeof handler !== "function") {
      throw new TypeError(
        "Cannot serve: handler must be a function* or async function*",
      );
    }
    const maxConnections = options.maxConnections ?? DEFAULTS.maxConnections;
    if (!(maxConnections >= 1)) {
      throw new RangeError(
        `Cannot serve: maxConnections must be >= 1, got ${maxConnections}`,
      );
    }
    for (
      const name of ["shutdownGrace", "acceptBackoff", "tcpBacklog"] as const
    ) {
      const value = options[name];
      if (value !== undefined && !(value >= 0)) {
        throw new RangeError(
          `Cannot serve: ${name} must be >= 0, got ${value}`,
        );
      }
    }
    // Validate connection defaults now, not on the first connection.
    new Connection(NO_TRANSPORT, options);
    this.#options = options;
    this.#handler = handler;
    this.#maxConnections = maxConnections;
    this.#onError = options.onError ?? defaultOnError;
    this.#scheduler = new Scheduler({
      clock: options.clock,
      onError: (error) => this.#onError(error),
    });
    this.#listener = Deno.listen({
      port: options.port ?? DEFAULTS.port,
      hostname: options.hostname ?? DEFAULTS.hostname,
      tcpBacklog: options.tcpBacklog ?? DEFAULTS.tcpBacklog,
      transport: "tcp",
    });
    this.addr = this.#listener.addr;
    this.finished = new Promise((resolve) => this.#resolveFinished = resolve);
    this.#acceptLoop = this.#accept();
    const signal = options.signal;
    if (signal) {
      if (signal.aborted) this.shutdown({ grace: options.shutdownGrace });
      else {
        signal.addEventListener(
          "abort",
          () => this.shutdown({ grace: options.shutdownGrace }),
          { once: true },
        );
      }
    }
  }

  /**
   * Stops accepting at once, lets running handlers finish for up to
   * `grace` ms, then cancels the rest (their `finally` blocks run) and
   * closes every socket. Idempotent: later calls return the same promise.
   *
   * @param options The grace period.
   * @returns Resolves when everything is closed.
   */
  shutdown(options: ShutdownOptions = {}): Promise<void> {
    const grace = options.grace ?? DEFAULTS.shutdownGrace;
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

  async #accept(): Promise<void> {
    const backoff = this.#options.acceptBackoff ?? DEFAULTS.acceptBackoff;
    let unreported = 0;
    let lastReport = -Infinity;
    while (!this.#isStopping) {
      if (this.stats.active >= this.#maxConnections) {
        // Pre-accept cap: leave further clients in the kernel backlog.
        await new Promise<void>((resolve) => this.#slotFreed = resolve);
        continue;
      }
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#isStopping || error instanceof Deno.errors.BadResource) break;
        // The peer gave up while queued: nothing to back off from.
        if (error instanceof Deno.errors.ConnectionAborted) continue;
        // EMFILE and kin (or anything unforeseen): back off, report at most
        // once per back-off, and never let the loop die.
        this.stats.acceptErrors++;
        unreported++;
        const now = performance.now();
        if (now - lastReport >= backoff) {
          lastReport = now;
          const cause = error instanceof Error
            ? error
            : new Error(String(error));
          const report =
            EXHAUSTION.test(String(cause.message)) || unreported > 0
              ? new AcceptError(this.#where(), backoff, unreported, { cause })
              : cause;
          unreported = 0;
          this.#report(report);
        }
        await this.#sleep(backoff);
        continue;
      }
      this.#admit(conn);
    }
  }

  #admit(conn: Deno.TcpConn): void {
    const stats = this.stats;
    stats.accepted++;
    const info: ConnectionInfo = {
      id: this.#nextId++,
      remoteAddr: conn.remoteAddr,
      localAddr: conn.localAddr,
    };
    let handler = this.#handler;
    const onAccept = this.#options.onAccept;
    if (onAccept) {
      let verdict: boolean | Handler | void;
      try {
        verdict = onAccept(info);
      } catch (error) {
        this.#report(error, info);
        verdict = false;
      }
      if (verdict === false) {
        stats.refused++;
        conn.close();
        return;
      }
      if (typeof verdict === "function") handler = verdict;
    }
    const connection = new Connection(conn, this.#options);
    stats.active++;
    let task: Task<unknown>;
    try {
      task = this.#scheduler.spawn(handler(connection, info), {
        owns: [connection],
      });
    } catch (error) {
      connection.close();
      this.#ended(false, error, info);
      return;
    }
    this.#connections.set(task, connection);
    task.finished.then(
      () => this.#ended(true, undefined, info, task),
      (error) => this.#ended(false, error, info, task),
    );
  }

  #ended(
    isOk: boolean,
    error: unknown,
    info: ConnectionInfo,
    task?: Task<unknown>,
  ): void {
    const stats = this.stats;
    if (task) this.#connections.delete(task);
    stats.active--;
    if (isOk) stats.completed++;
    else if (error instanceof CancelledError) stats.cancelled++;
    else {
      stats.failed++;
      if (error instanceof TimeoutError) stats.timeouts++;
      this.#report(error, info);
    }
    const slotFreed = this.#slotFreed;
    this.#slotFreed = null;
    slotFreed?.();
    if (stats.active === 0) this.#idle?.();
  }

  #report(error: unknown, info?: ConnectionInfo): void {
    try {
      this.#onError(error, info);
    } catch (failure) {
      console.error("corio: onError threw", failure);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#backoffDone = resolve;
      this.#backoffTimer = setTimeout(() => {
        this.#backoffTimer = undefined;
        this.#backoffDone = null;
        resolve();
      }, ms);
    });
  }

  async #stop(grace: number): Promise<void> {
    this.#isStopping = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    clearTimeout(this.#backoffTimer);
    this.#backoffDone?.();
    this.#slotFreed?.();
    await this.#acceptLoop;
    if (this.stats.active > 0 && grace > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#idle = resolve),
        new Promise<void>((resolve) => timer = setTimeout(resolve, grace)),
      ]);
      clearTimeout(timer);
    }
    const finishing = [...this.#connections.keys()].map((task) =>
      task.finished.catch(() => {})
    );
    // Cancel first (finally blocks run), then close what is left, so a
    // cleanup that waits on the network cannot hold the shutdown up.
    for (const [task, connection] of this.#connections) {
      task.cancel();
      connection.close();
    }
    await Promise.all(finishing);
    this.#resolveFinished();
  }

  #where(): string {
    return `${this.addr.hostname}:${this.addr.port}`;
  }
}

const NO_TRANSPORT = {} as unknown as Deno.Conn;

/**
 * Serves TCP connections: each is handled by a coroutine, `handler(conn,
 * info)`, which owns the connection (closed when the handler ends, however
 * it ends). A handler's error is reported to `onError` and ends only its
 * own connection.
 *
 * @param options Address, cap, timeouts, hooks.
 * @param handler A `function*` or `async function*`.
 * @returns The running {@linkcode Server}.
 * @throws {RangeError} For nonsense options (cap 0, negative timeouts).
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
 */
export function serve(options: ServeOptions, handler: Handler): Server {
  return new Server(options, handler);
}
