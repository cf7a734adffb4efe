// What src/server.ts's accept loop leans on: the listener it accepts from,
// the validation of serve()'s numbers, and the classification and
// rate-limited reporting of accept failures (EMFILE, ENFILE, ENOBUFS,
// ENOMEM: Deno's listener throws them and leaves the connection queued).

import type { Transport } from "./connection_options.ts";
import { checkPort } from "./_connect_options.ts";
import { AcceptError } from "./errors.ts";
import type { ServeOptions, ServerAddr } from "./_serve_options.ts";

/**
 * What the accept loop needs of a listener; `Deno.TcpListener`,
 * `Deno.TlsListener` and `Deno.UnixListener` fit.
 */
export interface Listener {
  readonly addr: ServerAddr;
  /**
   * True for in-memory connections (the test kit's): a wait on one is
   * internal, and a virtual clock may jump past it.
   */
  readonly isInMemory?: boolean;
  accept(): Promise<Transport>;
  close(): void;
}

/** Throws RangeError for nonsense numbers in `options`. */
export function checkServeOptions(
  options: ServeOptions,
  maxConnections: number,
  maxPerPeer: number,
): void {
  for (
    const [name, value] of [
      ["maxConnections", maxConnections],
      ["maxConnectionsPerPeer", maxPerPeer],
    ] as const
  ) {
    if (!(value >= 1)) {
      throw new RangeError(`Cannot serve: ${name} must be >= 1, got ${value}`);
    }
  }
  if (options.port !== undefined) checkPort(options.port, "serve");
  const queues = options.acceptQueues;
  if (queues !== undefined && !(Number.isInteger(queues) && queues >= 1)) {
    throw new RangeError(
      `Cannot serve: acceptQueues must be an integer >= 1, got ${queues}`,
    );
  }
  const names = [
    "shutdownGrace",
    "acceptBackoff",
    "tcpBacklog",
    "evictAfter",
  ] as const;
  for (const name of names) {
    const value = options[name];
    if (value !== undefined && !(value >= 0)) {
      throw new RangeError(`Cannot serve: ${name} must be >= 0, got ${value}`);
    }
  }
}

/**
 * Counts accept failures and turns them into at most one report per
 * back-off (Trio logs once per EMFILE episode; we also say how many).
 */
export class AcceptFailures {
  #unreported = 0;
  #lastReport = -Infinity;
  constructor(readonly where: string, readonly backoff: number) {}

  /**
   * Records a failure at `now` (the scheduler's clock, so a virtual clock
   * paces reports as it paces the back-off). Returns what to report now, or
   * null while within the back-off of the last report.
   */
  record(error: unknown, now: number): AcceptError | null {
    this.#unreported++;
    if (now - this.#lastReport < this.backoff) return null;
    this.#lastReport = now;
    const failures = this.#unreported;
    this.#unreported = 0;
    // Neither error keeps a stack to format (the accept loop's frames and
    // the runtime's tell nothing): Deno 2.9.6 panics when it formats a
    // stack through a file it has not source-mapped yet while no
    // descriptor is free, which is when this is reported (`console.error`
    // of it, as serve()'s default onError does, ended the process).
    const cause = error instanceof Error
      ? withoutStack(error)
      : stackless(() => new Error(String(error)));
    return stackless(() =>
      new AcceptError(this.where, this.backoff, failures, { cause })
    );
  }
}

/** Makes an error with no stack frames. */
function stackless<T>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** Replaces `error`'s stack, not yet formatted, with its first line. */
function withoutStack(error: Error): Error {
  try {
    Object.defineProperty(error, "stack", {
      value: `${error.name}: ${error.message}`,
      writable: true,
      configurable: true,
    });
  } catch {
    // A frozen error keeps its stack.
  }
  return error;
}
