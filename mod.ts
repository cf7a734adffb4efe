/**
 * corio: network servers and clients as coroutines. A connection handler is
 * an `async function*` that reads like blocking code, while a small
 * scheduler performs its I/O, puts a deadline on every wait, caps
 * connections and cancels cleanly.
 *
 * @example Seed 002's echo server: 3 s timeouts, at most 100 connections
 * ```ts ignore
 * import { serve } from "@corio/corio";
 *
 * const server = serve(
 *   { port: 9999, maxConnections: 100, recvTimeout: 3000, sendTimeout: 3000 },
 *   async function* echo(conn) {
 *     for (let chunk; (chunk = yield* conn.recv()) !== null;) yield* conn.send(chunk);
 *   },
 * );
 * console.log(`listening on ${server.addr.hostname}:${server.addr.port}`);
 * await server.finished;
 * ```
 *
 * @module
 */

export {
  AcceptError,
  BusyError,
  CancelledError,
  ConnectError,
  ConnectionClosedError,
  ConnectionResetError,
  IncompleteReadError,
  LineTooLongError,
  TimeoutError,
  TlsHandshakeError,
} from "./src/errors.ts";
export type { ConnectFailure } from "./src/errors.ts";
export type {
  Coroutine,
  Effect,
  Operation,
  OperationOptions,
} from "./src/effects.ts";
export { type Clock, systemClock } from "./src/timers.ts";
export {
  type Resource,
  Scheduler,
  type SchedulerOptions,
  type SpawnOptions,
  type Task,
} from "./src/scheduler.ts";
export {
  delay,
  type DelayOptions,
  now,
  spawn,
  wait,
} from "./src/operations.ts";
export { Connection } from "./src/connection.ts";
export { listen, Listener, type ListenOptions } from "./src/listener.ts";
export type {
  ConnectionOptions,
  PeekOptions,
  RecvExactOptions,
  RecvLineOptions,
  RecvOptions,
  Transport,
} from "./src/connection_options.ts";
export {
  type ClientTlsOptions,
  connect,
  type ConnectOptions,
  run,
  type RunOptions,
  type TcpConnectOptions,
  type UnixConnectOptions,
} from "./src/client.ts";
export {
  type ConnectionInfo,
  type Handler,
  serve,
  type ServeCommonOptions,
  type ServeOptions,
  Server,
  type ServerAddr,
  type ServerStats,
  type ShutdownOptions,
  type TcpServeOptions,
  type TlsServeOptions,
  type UnixPeerAddr,
  type UnixServeOptions,
} from "./src/server.ts";
export { ConversationLimitError, InboxClosedError } from "./src/errors.ts";
export {
  type ConversationHandler,
  Conversations,
  type ConversationsOptions,
  type ConversationsShutdownOptions,
  type ConversationStats,
  type DispatchStatus,
} from "./src/conversations.ts";
export { Inbox, type InboxOptions } from "./src/inbox.ts";
export {
  type Datagram,
  type DatagramHandler,
  DatagramServer,
  type DatagramShutdownOptions,
  type DatagramStats,
  serveDatagram,
  type ServeDatagramOptions,
} from "./src/datagram.ts";
export { PoolClosedError, PoolExhaustedError } from "./src/errors.ts";
export {
  type AcquireOptions,
  type DialFunction,
  Lease,
  Pool,
  type PoolConnectOptions,
  type PoolOptions,
  type PoolStats,
} from "./src/pool.ts";
