// How connect() reaches a server: TCP, TLS over TCP, or a Unix domain
// socket, each failure a typed error naming the address. The connect
// operation (src/client.ts) owns the deadline; `signal` is how it stops a
// dial in flight. Internal to src/client.ts.

import {
  ConnectError,
  type ConnectFailure,
  TlsHandshakeError,
} from "./errors.ts";
import type { ClientTlsOptions } from "./_connect_options.ts";

/** What `dial` reads of connect()'s options (every kind of them). */
export interface DialOptions {
  port?: number;
  hostname?: string;
  noDelay?: boolean;
  tls?: boolean | ClientTlsOptions;
  path?: string;
}

/**
 * Opens the connection `options` describe. Once `signal` is aborted the
 * result no longer matters: the caller closes a connection that still
 * arrives (Deno's connect does not close it when aborted after the TCP
 * handshake, measured) and ignores a rejection.
 */
export async function dial(
  options: DialOptions,
  signal: AbortSignal,
): Promise<Deno.Conn> {
  if (options.path !== undefined) {
    const path = options.path;
    // Deno's Unix connect takes no signal; a local connect ends at once
    // (refused or not found) unless the server's backlog is full.
    try {
      return await Deno.connect({ transport: "unix", path });
    } catch (error) {
      throw connectError(error, "", 0, path);
    }
  }
  const { hostname = "127.0.0.1", port = 0, tls } = options;
  signal.throwIfAborted();
  let tcp: Deno.TcpConn;
  try {
    tcp = await Deno.connect({
      hostname,
      port,
      transport: "tcp",
      signal: withoutThrowIfAborted(signal),
    });
  } catch (error) {
    throw connectError(error, hostname, port);
  }
  // Before any TLS: Deno 2.9.6's TlsConn has no setNoDelay (measured), but
  // the socket keeps the option.
  if (options.noDelay !== false) tcp.setNoDelay(true);
  if (tls === undefined || tls === false) return tcp;
  if (signal.aborted) return tcp;
  return await handshake(tcp, tls === true ? {} : tls, hostname, port, signal);
}

/**
 * TLS over `tcp`. `Deno.connectTls` takes no signal, so the TCP connect
 * (which does) and the handshake run apart: `Deno.startTls`, then
 * `handshake()`, which a close ends at once with Interrupted (measured on
 * 2.9.6), so the deadline covers both. But Deno finishes a handshake
 * before it shuts TLS down (denoland/deno#14547): after that close the
 * socket stays open until the server answers or closes (measured: still
 * open after 120 s with a server that never reads). Nothing here can close
 * it sooner: `startTls` took the TCP socket.
 */
async function handshake(
  tcp: Deno.TcpConn,
  tls: ClientTlsOptions,
  hostname: string,
  port: number,
  signal: AbortSignal,
): Promise<Deno.TlsConn> {
  let conn: Deno.TlsConn;
  try {
    conn = await Deno.startTls(tcp, {
      hostname: tls.serverName ?? hostname,
      caCerts: tls.caCerts && [...tls.caCerts],
      alpnProtocols: tls.alpnProtocols && [...tls.alpnProtocols],
    });
  } catch (error) {
    closeQuietly(tcp);
    throw new TlsHandshakeError(hostname, port, messageOf(error), {
      cause: error,
    });
  }
  const onAbort = () => closeQuietly(conn);
  if (signal.aborted) return conn;
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    await conn.handshake();
    return conn;
  } catch (error) {
    if (signal.aborted) throw error; // closed by the abort: nobody listens
    closeQuietly(conn);
    throw new TlsHandshakeError(hostname, port, messageOf(error), {
      cause: error,
    });
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/**
 * A signal that aborts when `signal` does, for `Deno.connect`. Deno 2.9.6's
 * connect ends, in a `finally`, with `signal.throwIfAborted()`, also after
 * its op has given a connection: aborted between the handshake's end and
 * connect's own continuation (a deadline's timer in the same turn), it
 * throws `AbortError`, and the connection is left open with no one to
 * close it (raw Deno, 2,000 connects aborted at random within 200 ms: 20-28
 * sockets left open per run; a pool under a server SIGSTOPped and resumed
 * leaked its connections so). This one's `throwIfAborted` does nothing, so
 * such a connection is returned, and the caller closes it as it closes any
 * that arrives after an abort. A connect the abort did stop rejects still.
 */
function withoutThrowIfAborted(signal: AbortSignal): AbortSignal {
  const controller = new AbortController();
  if (signal.aborted) controller.abort(signal.reason);
  else {
    signal.addEventListener("abort", () => controller.abort(signal.reason), {
      once: true,
    });
  }
  Object.defineProperty(controller.signal, "throwIfAborted", {
    value: noop,
  });
  return controller.signal;
}

function noop(): void {}

/** Closes `conn` unless it is closed already. */
export function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // Already closed (by an abort that raced the dial).
  }
}

/**
 * The error for a failed dial. No network access granted is no network
 * failure: retrying it (as a ConnectError invites) cannot help, so Deno's
 * NotCapable stays as it is.
 */
function connectError(
  error: unknown,
  hostname: string,
  port: number,
  path?: string,
): unknown {
  // PermissionDenied is the system's refusal (EACCES: a socket file this
  // user may not open), a failure to connect like any other.
  if (error instanceof Deno.errors.NotCapable) return error;
  const reason = reasonOf(error, path);
  return new ConnectError(hostname, port, describe(error, reason, path), {
    cause: error,
    path,
    reason,
  });
}

/**
 * The reason for a failed dial, by the system's error code (Deno 2.9.6 puts
 * it on its errors as `code`). A name the resolver could not turn into an
 * address carries no code, only getaddrinfo's message (measured: "failed to
 * lookup address information: ..." for an unknown name and for no resolver).
 */
function reasonOf(error: unknown, path?: string): ConnectFailure {
  const code = (error as { code?: unknown } | null)?.code;
  switch (code) {
    case "ECONNREFUSED":
      // Linux refuses a connect to a file that is no socket as well: a
      // leftover-socket check that removes what was refused must not take
      // it for a dead server's socket.
      return path === undefined || isSocket(path)
        ? "refused"
        : "no-socket-file";
    case "ENETUNREACH":
      return "network-unreachable";
    case "EHOSTUNREACH":
      return "host-unreachable";
    case "ETIMEDOUT":
      return "timed-out";
    case "EADDRNOTAVAIL":
      return "address-unavailable";
    case "EACCES":
    case "EPERM":
      return "denied";
    case "ENOENT":
      if (path !== undefined) return "no-socket-file";
  }
  if (/failed to lookup address/i.test(messageOf(error))) return "unresolved";
  return "other";
}

function describe(
  error: unknown,
  reason: ConnectFailure,
  path?: string,
): string {
  if (error instanceof Deno.errors.ConnectionRefused) {
    if (path === undefined) return "connection refused";
    return reason === "refused"
      ? "connection refused (no server listens on the socket)"
      : "connection refused: the path is not a socket";
  }
  if (error instanceof Deno.errors.NotFound && path !== undefined) {
    return "no such socket file";
  }
  if (error instanceof Deno.errors.TimedOut) return "timed out in the kernel";
  if (error instanceof Deno.errors.PermissionDenied) {
    return "permission denied by the system";
  }
  return messageOf(error);
}

/** True unless `path` is known to be something other than a socket. */
function isSocket(path: string): boolean {
  try {
    return Deno.lstatSync(path).isSocket !== false;
  } catch {
    return true; // gone meanwhile, or not ours to look at: as connect said
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
