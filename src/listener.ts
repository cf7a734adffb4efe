/**
 * `listen()`: a listener a coroutine owns, whose `accept()` is an operation
 * with a deadline, a signal and cancellation, for the one-off server inside
 * a handler (an FTP session's data connection, a callback port). To serve
 * many clients, use `serve()`: its cap, per-peer limit, eviction and
 * shutdown are what an accept loop needs.
 *
 * @module
 */

import { Connection } from "./connection.ts";
import {
  checkConnectionOptions,
  type ConnectionOptions,
  type Transport,
} from "./connection_options.ts";
import { Op, type OperationOptions, PENDING } from "./effects.ts";
import type { Operation } from "./effects.ts";
import { BusyError, ConnectionClosedError, TimeoutError } from "./errors.ts";
import { addressOf } from "./_address.ts";
import { checkPort } from "./_connect_options.ts";
import type { Listener as RuntimeListener } from "./_accept.ts";
import { checkListenOptions, listen as open, withPath } from "./_listen.ts";
import type { ServeOptions } from "./_serve_options.ts";
import type { Coroutine as CoroutineRecord } from "./scheduler.ts";

/**
 * Options for {@linkcode listen}: where, and the defaults of the
 * connections it accepts.
 *
 * @example A listener on a free loopback port whose connections time out
 * ```ts
 * import { listen, type ListenOptions, run } from "@corio/corio";
 *
 * const options: ListenOptions = { hostname: "127.0.0.1", recvTimeout: 5000 };
 * const port = await run((function* () {
 *   const listener = yield* listen(options);
 *   return listener.addr.port; // closed as the coroutine ends
 * })());
 * console.log(port > 0); // true
 * ```
 */
export interface ListenOptions extends ConnectionOptions {
  /**
   * The port; 0 picks a free one (see `addr`).
   * @default {0}
   */
  port?: number;
  /**
   * The address to listen on.
   * @default {"0.0.0.0"}
   */
  hostname?: string;
  /**
   * The kernel's queue of connections not yet accepted.
   * @default {4096}
   */
  tcpBacklog?: number;
  /**
   * TCP_NODELAY on accepted connections (TCP only: Deno 2.9.6's TLS
   * connections have no `setNoDelay`).
   * @default {true}
   */
  noDelay?: boolean;
  /** TLS: the certificate chain, PEM (with `key`). */
  cert?: string;
  /** TLS: the private key, PEM (with `cert`). */
  key?: string;
}

/**
 * A TCP (or TLS) listener from {@linkcode listen}, owned by the coroutine
 * that opened it: closed when that coroutine ends, however it ends. One
 * coroutine accepts at a time.
 *
 * An accept that times out, is aborted or cancelled leaves the runtime's
 * accept in flight, as a receive leaves its read: the next `accept()` gets
 * the client it brings, so none is lost in the kernel's queue. Closing the
 * listener closes a client accepted that no `accept()` took.
 *
 * @example A one-off data port: the first client, within 5 s
 * ```ts
 * import { connect, listen, run, spawn } from "@corio/corio";
 *
 * const line = await run((async function* () {
 *   const listener = yield* listen({ hostname: "127.0.0.1" });
 *   const client = yield* spawn((async function* () {
 *     const conn = yield* connect({ port: listener.addr.port, timeout: 1000 });
 *     yield* conn.send("hello\n");
 *   })());
 *   const conn = yield* listener.accept({ timeout: 5000 });
 *   listener.close(); // no second client
 *   yield* client.join();
 *   return yield* conn.recvLine({ timeout: 1000 });
 * })());
 * console.log(line); // hello
 * ```
 */
export class Listener implements Disposable {
  /** Where it listens: the port it got for port 0. */
  readonly addr: Deno.NetAddr;
  /** @internal */ readonly where: string;
  readonly #listener: RuntimeListener;
  readonly #options: ListenOptions;
  // The runtime's accept in flight (it handles both outcomes): at most one.
  #accepting: Promise<void> | null = null;
  // A client the accept in flight brought that no accept() took yet.
  #ready: Transport | null = null;
  #error: unknown = null;
  #isClosed = false;
  /** @internal The coroutine waiting in accept(), if any. */
  waiter: CoroutineRecord | null = null;
  /** @internal The accept() operation that waits, if any. */
  taker: AcceptOp | null = null;

  /**
   * @internal Use {@linkcode listen}.
   * @param listener The runtime's listener.
   * @param options Its options.
   */
  constructor(listener: RuntimeListener, options: ListenOptions) {
    this.#listener = listener;
    this.#options = options;
    this.addr = listener.addr as Deno.NetAddr;
    this.where = `on ${addressOf(this.addr)}`;
  }

  /** True once `close()` was called, or its owner ended. */
  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** @internal Closed, and its accept in flight, if any, has ended. */
  get isReleased(): boolean {
    return this.#isClosed && this.#accepting === null;
  }

  /**
   * Settles once the runtime holds nothing of it: after `close()`, when the
   * accept in flight has ended (`undefined` while none is).
   */
  get settled(): Promise<void> | undefined {
    return this.#accepting ?? undefined;
  }

  /**
   * Accepts the next client, as a {@linkcode Connection} that belongs to
   * the coroutine that accepted it (closed when it ends) and has the
   * listener's connection defaults.
   *
   * Deadline: `timeout`/`deadline`/`signal` for the wait (none by
   * default); `timeout: 0` takes a client already accepted, else times out
   * at the next timer turn. Errors: `TimeoutError`; `ConnectionClosedError`
   * once the listener is closed; `BusyError` if another coroutine is
   * accepting; an aborted signal's reason (an already aborted one refuses
   * the accept, even with a client at hand: that client waits for the
   * next); the runtime's error for a failed accept, as it is (no descriptor
   * free: on Deno 2.9.6 a plain `Error`, "Too many open files (os error
   * 24)"), after which the listener still works. State after failure: a
   * client the accept in flight brings goes to the next `accept()`.
   *
   * The connection belongs to the coroutine that accepted it: one handed
   * out of a child (its `join()` result) is closed as that child ends, so
   * accept in the coroutine that uses the connection.
   *
   * @param options Deadline and signal.
   * @returns An operation that gives the connection.
   *
   * @example Give up after 100 ms with no client
   * ```ts
   * import { listen, run, TimeoutError } from "@corio/corio";
   *
   * const error = await run((function* () {
   *   const listener = yield* listen({ hostname: "127.0.0.1" });
   *   try {
   *     yield* listener.accept({ timeout: 100 });
   *   } catch (error) {
   *     return error;
   *   }
   * })());
   * console.log(error instanceof TimeoutError); // true
   * ```
   */
  accept(options?: OperationOptions): Operation<Connection> {
    return new AcceptOp(this, options);
  }

  /** Stops listening; closes a client accepted and not taken. Idempotent. */
  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    try {
      this.#listener.close();
    } catch {
      // Closed already by the runtime: nothing to do.
    }
    if (this.#ready !== null) closeTransport(this.#ready);
    this.#ready = null;
    this.#wake();
  }

  /** Same as {@linkcode Listener.close}: what `using` calls. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * @internal For `op`'s poll: throws what ends it (closed, another
   * coroutine accepting, the last accept's error), else starts an accept
   * if none is in flight and no client waits.
   */
  check(op: AcceptOp): void {
    if (this.#isClosed) {
      throw new ConnectionClosedError("accept", this.where, {
        what: "listener",
      });
    }
    if (this.taker !== null && this.taker !== op) {
      throw new BusyError("accept", this.where, "listener");
    }
    const error = this.#error;
    if (error !== null) {
      this.#error = null;
      throw error;
    }
    if (this.#ready === null && this.#accepting === null) this.#accept();
  }

  /** @internal The client at hand, taken; or null. */
  takeReady(): Transport | null {
    const ready = this.#ready;
    this.#ready = null;
    return ready;
  }

  /** @internal True when `check()` would throw. */
  get hasNews(): boolean {
    return this.#isClosed || this.#error !== null;
  }

  /** @internal A connection of this listener's, with its defaults. */
  wrap(conn: Transport): Connection {
    if (this.#options.noDelay !== false) {
      (conn as Partial<Deno.TcpConn>).setNoDelay?.(true);
    }
    const connection = new Connection(conn, this.#options);
    connection.isPaced = true;
    return connection;
  }

  #accept(): void {
    this.#accepting = this.#listener.accept().then((conn) => {
      this.#accepting = null;
      if (this.#isClosed) return closeTransport(conn);
      this.#ready = conn;
      this.#wake();
    }, (error) => {
      this.#accepting = null;
      // Closing ends the accept in flight with an error: nothing to say.
      if (this.#isClosed) return;
      this.#error = error;
      this.#wake();
    });
  }

  #wake(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.wake();
  }
}

/** Closes an accepted socket nobody took; closed already is fine. */
function closeTransport(conn: Transport): void {
  try {
    conn.close();
  } catch {
    // Closed already.
  }
}

/** @internal `Listener.accept()`. */
class AcceptOp extends Op<Connection> {
  get op(): string {
    return "accept";
  }
  #connection: Connection | null = null;
  constructor(readonly listener: Listener, options?: OperationOptions) {
    super(options);
    this.effect.external = true;
    // A client at hand is taken in park(): with a deadline already past
    // (`timeout: 0`) it must still get there, and not time out at once.
    this.effect.settlesLate = true;
  }
  override begin(): void {
    this.#connection = null;
  }
  poll(): Connection | typeof PENDING {
    const connection = this.#connection;
    if (connection !== null) {
      this.#connection = null;
      this.#release();
      return connection;
    }
    try {
      this.listener.check(this);
    } catch (error) {
      this.#release();
      throw error;
    }
    // A client at hand is taken in park(), which knows the coroutine that
    // adopts it.
    return PENDING;
  }
  park(co: CoroutineRecord): boolean {
    const listener = this.listener;
    const conn = listener.takeReady();
    if (conn !== null) {
      const connection = listener.wrap(conn);
      co.adopt(connection);
      this.#connection = connection;
      return true;
    }
    if (listener.hasNews) return true; // poll() throws it
    listener.waiter = co;
    listener.taker = this;
    return false;
  }
  unpark(): void {
    this.#release();
  }
  override cancelled(): void {
    this.#release();
  }
  timedOut(): Connection {
    this.#release();
    throw new TimeoutError(
      this.op,
      this.effect.timeoutThatFired,
      this.listener.where,
    );
  }
  #release(): void {
    const listener = this.listener;
    if (listener.taker === this) {
      listener.taker = null;
      listener.waiter = null;
    }
  }
}

/**
 * Listens for TCP connections (TLS with `cert` and `key`), as a
 * {@linkcode Listener} that belongs to the coroutine: closed when it ends.
 * For a server of many clients, {@linkcode serve} (cap, per-peer limit,
 * eviction, shutdown); this is for one-off listeners inside a coroutine,
 * such as an FTP session's data port.
 *
 * @param options Where, and the accepted connections' defaults.
 * @throws {RangeError} At the call, for a bad port, backlog or default.
 * @throws {TypeError} At the call, for a `cert` without its `key`.
 * @returns An operation that gives the listener. Binding fails there
 *   (`Deno.errors.AddrInUse`: the port is taken).
 *
 * @example
 * ```ts
 * import { connect, listen, run } from "@corio/corio";
 *
 * const reply = await run((async function* () {
 *   const listener = yield* listen({ hostname: "127.0.0.1" });
 *   const client = yield* connect({ port: listener.addr.port, timeout: 1000 });
 *   const server = yield* listener.accept({ timeout: 1000 });
 *   yield* server.send("hi\n");
 *   return yield* client.recvLine({ timeout: 1000 });
 * })());
 * console.log(reply); // hi
 * ```
 */
export function listen(options: ListenOptions = {}): Operation<Listener> {
  if (options.port !== undefined) checkPort(options.port, "listen");
  const backlog = options.tcpBacklog;
  if (backlog !== undefined && !(backlog >= 0)) {
    throw new RangeError(
      `Cannot listen: tcpBacklog must be >= 0, got ${backlog}`,
    );
  }
  for (const name of ["path", "acceptQueues"] as const) {
    if ((options as Record<string, unknown>)[name] !== undefined) {
      throw new TypeError(
        `Cannot listen: ${name} is for serve(); listen() takes TCP and TLS options`,
      );
    }
  }
  checkListenOptions(options as ServeOptions, "listen");
  checkConnectionOptions(options);
  return new ListenOp(options);
}

class ListenOp extends Op<Listener> {
  get op(): string {
    return "listen";
  }
  #listener: Listener | null = null;
  constructor(readonly options: ListenOptions) {
    super(undefined);
    this.effect.immediate = true;
  }
  override perform(co: CoroutineRecord): void {
    const options = this.options;
    let runtimeListener: RuntimeListener;
    try {
      runtimeListener = open(options as ServeOptions);
    } catch (error) {
      // Deno's AddrInUse names no address.
      throw withPath(
        error,
        `Cannot listen on ${
          addressOf({ hostname: options.hostname ?? "0.0.0.0", ...options })
        }`,
      );
    }
    const listener = new Listener(runtimeListener, options);
    co.adopt(listener);
    this.#listener = listener;
  }
  poll(): Listener | typeof PENDING {
    return this.#listener ?? PENDING;
  }
  park(): boolean {
    return true;
  }
  unpark(): void {}
  timedOut(): Listener {
    throw new TimeoutError("listen");
  }
}
