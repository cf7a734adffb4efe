/**
 * A `serve()` server over in-memory connections: the real accept loop,
 * cap, shutdown and stats, on a test's clock, with no socket.
 *
 * @module
 */

import { Connection } from "../connection.ts";
import type { Transport } from "../connection_options.ts";
import type {
  Handler,
  ServeCommonOptions,
  Server,
  TcpServeOptions,
} from "../server.ts";
import { serveOn } from "../server.ts";
import type { Listener } from "../_accept.ts";
import {
  memoryAddr,
  type MemoryConnPairOptions,
  memoryTransports,
} from "./memory_conn.ts";

/**
 * A server on in-memory connections, made by {@linkcode memoryServer}.
 *
 * @example
 * ```ts
 * import { run } from "@corio/corio";
 * import { memoryServer, VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock();
 * const { server, connect } = memoryServer({ clock }, function* (conn) {
 *   yield* conn.send("hello\n");
 * });
 * const greeting = await run((function* () {
 *   const conn = connect();
 *   try {
 *     return yield* conn.recvLine();
 *   } finally {
 *     conn.close();
 *   }
 * })(), { clock });
 * await server.shutdown();
 * console.log(greeting); // hello
 * ```
 */
export interface MemoryServer {
  /** The server: `stats`, `shutdown()`, `finished`, as from `serve()`. */
  readonly server: Server<Deno.NetAddr>;
  /**
   * Connects a client: its end of a new memory connection, at once. The
   * server accepts the other end, at the server's `addr`, when it has a
   * place (`maxConnections`), as a kernel's backlog holds a TCP client
   * meanwhile. Once the server
   * stops accepting, the client reads the end of the stream. Close it when
   * done, as any connection.
   *
   * @param options The client's `hostname`, the client end's `capacity`
   *   (per direction) and defaults (`recvTimeout`...).
   * @returns The client's connection.
   */
  connect(options?: MemoryServerConnectOptions): Connection;
}

/**
 * Options for a {@linkcode MemoryServer}'s `connect()`: a memory
 * connection's, and the address the client connects from.
 *
 * @example Two clients of one address, at a per-peer limit of one
 * ```ts
 * import { delay, run } from "@corio/corio";
 * import { memoryServer, VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock();
 * const { server, connect } = memoryServer(
 *   { clock, maxConnectionsPerPeer: 1 },
 *   function* () { yield* delay(100); },
 * );
 * await run((function* () {
 *   const clients = [connect({ hostname: "10.0.0.7" }), connect({ hostname: "10.0.0.7" })];
 *   yield* delay(200);
 *   for (const client of clients) client.close();
 * })(), { clock });
 * await server.shutdown();
 * console.log(server.stats.peerLimited); // 1
 * ```
 */
export interface MemoryServerConnectOptions extends MemoryConnPairOptions {
  /**
   * The client's IP address, as the handler sees it (`info.remoteAddr`)
   * and `maxConnectionsPerPeer` counts it.
   * @default {"memory"}
   */
  hostname?: string;
}

/**
 * Serves `handler` as `serve()` does, on in-memory connections: the same
 * accept loop, connection cap, eviction, `onAccept`, `onError`, stats and
 * shutdown, on the options' `clock` (a `VirtualClock` in tests, where a
 * server's timeouts and grace take no real time). Each `connect()` gives a
 * client a connection to it. The handler's `info` has a `remoteAddr` of
 * hostname `"memory"` (or the client's `hostname`) and a port of its own
 * per client. Shut it down at
 * the end of each test: it holds no socket, so the sanitizers cannot tell
 * that one was left running.
 *
 * @param options As `serve()`'s, without the address (no hostname, port,
 *   TLS or path); `maxConnectionsPerPeer` counts clients by the `hostname`
 *   they connect with.
 * @param handler Serves each connection.
 * @returns The server, and `connect()`.
 *
 * @example A cap of one: the second client waits for the first to end
 * ```ts
 * import { delay, run } from "@corio/corio";
 * import { memoryServer, VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock();
 * const { server, connect } = memoryServer(
 *   { clock, maxConnections: 1 },
 *   function* (conn, info) {
 *     yield* delay(100);
 *     yield* conn.send(`you are ${info.id}, served at ${clock.now()}\n`);
 *   },
 * );
 * const replies = await run((function* () {
 *   const [a, b] = [connect(), connect()];
 *   const replies = [yield* a.recvLine(), yield* b.recvLine()];
 *   a.close();
 *   b.close();
 *   return replies;
 * })(), { clock });
 * await server.shutdown();
 * console.log(replies); // ["you are 1, served at 100", "you are 2, served at 200"]
 * ```
 */
export function memoryServer(
  options:
    & ServeCommonOptions<Deno.NetAddr>
    & Pick<TcpServeOptions, "maxConnectionsPerPeer">,
  handler: Handler<Deno.NetAddr>,
): MemoryServer {
  const listener = new MemoryListener();
  const server = serveOn(listener, options, handler) as Server<Deno.NetAddr>;
  return {
    server,
    connect(connectOptions: MemoryServerConnectOptions = {}): Connection {
      // The server's end is at the server's address, as over TCP; the
      // server makes its own connection on it.
      const { capacity: _, hostname, ...clientOptions } = connectOptions;
      const clientAddr = memoryAddr();
      if (hostname !== undefined) clientAddr.hostname = hostname;
      const [client, serverEnd] = memoryTransports(
        connectOptions,
        clientAddr,
        { ...listener.addr }, // each connection's own
      );
      listener.push(serverEnd);
      return new Connection(client, { ...clientOptions, isExternal: false });
    },
  };
}

/**
 * @internal Connections queued for `accept()`, as a listening socket's
 * backlog (the server property tests feed one through `serveOn`).
 */
export class MemoryListener implements Listener {
  readonly addr: Deno.NetAddr = memoryAddr();
  readonly isInMemory = true;
  #queue: [Transport, () => void][] = [];
  #waiter: {
    resolve(transport: Transport): void;
    reject(error: unknown): void;
  } | null = null;
  #isClosed = false;

  /** Queues a connection; `onAccept` is told when `accept()` takes it. */
  push(transport: Transport, onAccept: () => void = () => {}): void {
    if (this.#isClosed) return transport.close(); // refused
    const waiter = this.#waiter;
    this.#waiter = null;
    if (waiter === null) return void this.#queue.push([transport, onAccept]);
    onAccept();
    waiter.resolve(transport);
  }

  accept(): Promise<Transport> {
    const next = this.#queue.shift();
    if (next !== undefined) {
      next[1]();
      return Promise.resolve(next[0]);
    }
    if (this.#isClosed) {
      return Promise.reject(new Deno.errors.BadResource("listener closed"));
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  close(): void {
    this.#isClosed = true;
    this.#waiter?.reject(new Deno.errors.BadResource("listener closed"));
    this.#waiter = null;
    for (const [transport] of this.#queue.splice(0)) transport.close();
  }
}
