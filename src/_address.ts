// How messages name an address. Internal: shared by the errors, the
// server, connect() and the pool.

/**
 * "127.0.0.1:4000", "[::1]:4000" or "unix:/run/app.sock", as messages
 * name an address: connect()'s options, a server's or a peer's address.
 */
export function addressOf(
  address: { hostname?: string; port?: number; path?: string | null },
): string {
  if (address.path != null) return `unix:${address.path}`;
  const hostname = address.hostname ?? "127.0.0.1";
  // "[::1]" as given (Deno.connect takes it) stays as it is.
  return `${
    hostname.includes(":") && !hostname.startsWith("[")
      ? `[${hostname}]`
      : hostname
  }:${address.port}`;
}
