// What serve() listens on: TCP (`Deno.listen`), TLS (`Deno.listenTls`),
// either with `acceptQueues`, or a Unix domain socket (`Deno.listen({
// transport: "unix" })`), and the run-time check that the options do not
// mix them. Internal to src/server.ts.

import type { Listener } from "./_accept.ts";
import { AcceptQueues } from "./_accept_queues.ts";
import { checkAlpnProtocols, checkSocketPath } from "./_connect_options.ts";
import { DEFAULTS, type ServeOptions } from "./_serve_options.ts";

/** The options that only a TCP or TLS server takes. */
const IP_ONLY = [
  "port",
  "hostname",
  "tcpBacklog",
  "acceptQueues",
  "noDelay",
  "maxConnectionsPerPeer",
  "cert",
  "key",
] as const;

/**
 * Throws a TypeError for options that mix kinds of server (a `path` with a
 * `port`, a `cert` without its `key`): the types forbid them, but plain
 * JavaScript and spread objects get past the types.
 */
export function checkListenOptions(
  options: ServeOptions,
  action = "serve",
): void {
  const { path, cert, key } = options as {
    path?: unknown;
    cert?: unknown;
    key?: unknown;
  };
  if (path !== undefined) {
    checkSocketPath(path, "serve");
    for (const name of IP_ONLY) {
      if ((options as Record<string, unknown>)[name] !== undefined) {
        throw new TypeError(
          `Cannot serve on unix:${path}: ${name} is for TCP and TLS servers, not with path`,
        );
      }
    }
    return;
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new TypeError(
      cert === undefined
        ? `Cannot ${action} TLS: key needs its cert (PEM)`
        : `Cannot ${action} TLS: cert needs its key (PEM)`,
    );
  }
  for (const [name, value] of [["cert", cert], ["key", key]] as const) {
    if (value !== undefined && (typeof value !== "string" || value === "")) {
      throw new TypeError(
        `Cannot ${action} TLS: ${name} must be a PEM string (the file's text, not its path)`,
      );
    }
  }
  const alpn = (options as { alpnProtocols?: unknown }).alpnProtocols;
  if (alpn !== undefined) {
    if (cert === undefined) {
      throw new TypeError(
        `Cannot ${action}: alpnProtocols is for TLS servers (with cert and key)`,
      );
    }
    checkAlpnProtocols(alpn, `Cannot ${action} TLS`);
  }
}

/** Opens the listener `options` ask for (checked by `checkListenOptions`). */
export function listen(options: ServeOptions): Listener {
  if (options.path !== undefined) return listenUnix(options.path);
  const { cert, key } = options;
  const alpnProtocols = options.alpnProtocols && [...options.alpnProtocols];
  const address = {
    port: options.port ?? DEFAULTS.port,
    hostname: options.hostname ?? DEFAULTS.hostname,
    tcpBacklog: options.tcpBacklog ?? DEFAULTS.tcpBacklog,
  };
  const queues = options.acceptQueues ?? DEFAULTS.acceptQueues;
  if (queues > 1) {
    // Deno.listenTls takes reusePort as Deno.listen does (with
    // --unstable-net, measured on 2.9.6), so TLS gets queues too.
    return new AcceptQueues(
      cert === undefined
        ? (port) =>
          Deno.listen(
            {
              ...address,
              port,
              reusePort: true,
              transport: "tcp",
            } as Deno.TcpListenOptions & { transport: "tcp" },
          )
        : (port) =>
          Deno.listenTls(
            {
              ...address,
              port,
              reusePort: true,
              cert,
              key: key!,
              alpnProtocols,
            } as
              & Deno.ListenTlsOptions
              & Deno.TlsCertifiedKeyPem,
          ),
      address.port,
      queues,
    );
  }
  return cert === undefined
    ? Deno.listen({ ...address, transport: "tcp" })
    : Deno.listenTls({ ...address, cert, key: key!, alpnProtocols });
}

/**
 * Listens on the Unix socket `path`. Binding fails with AddrInUse whenever
 * the file exists, a crashed run's leftover too. The file is never removed
 * here: telling a leftover from a live server's socket takes a connect,
 * which is asynchronous while `serve()` is not, and /proc/net/unix, which
 * would tell, needs --allow-all in Deno 2.9.6 (measured: NotCapable with
 * --allow-read). Removing a live server's socket would leave that server
 * running, unreachable. So the error says what is there, as Go's and
 * Node's do, and the caller decides (connect, then remove).
 */
function listenUnix(given: string): Listener {
  // Deno's close removes the file at the path it was given: a relative
  // one, from the working directory at shutdown, maybe not the socket's.
  const path = given.startsWith("/") ? given : `${Deno.cwd()}/${given}`;
  try {
    return Deno.listen({ transport: "unix", path });
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) {
      throw withPath(error, `Cannot serve on unix:${path}`);
    }
    let isSocket = false;
    try {
      isSocket = Deno.lstatSync(path).isSocket === true;
    } catch {
      // Gone meanwhile, or not ours to stat: say what bind said.
    }
    throw new Deno.errors.AddrInUse(
      isSocket
        ? `Cannot serve on unix:${path}: a socket file is there (a server listens on it, or a crashed run left it): if connect({ path }) is refused, remove it`
        : `Cannot serve on unix:${path}: the path exists and is not a socket`,
      { cause: error },
    );
  }
}

/**
 * `error` with `what` before its message (Deno's say "No such file or
 * directory (os error 2)", or "path must be shorter than SUN_LEN", and
 * name no path), of the same class, the original as its cause. Deno's
 * permission error (NotCapable) is left as it is.
 */
export function withPath(error: unknown, what: string): unknown {
  if (!(error instanceof Error) || error instanceof Deno.errors.NotCapable) {
    return error;
  }
  const Class = error.constructor as new (
    message: string,
    options?: ErrorOptions,
  ) => Error;
  return new Class(`${what}: ${error.message}`, { cause: error });
}
