/**
 * The test kit: a virtual clock, in-memory connections and a server on
 * them, so a handler, and the server around it, are tested without sockets
 * and without real time.
 *
 * @example
 * ```ts
 * import { run } from "@corio/corio";
 * import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
 *
 * const clock = new VirtualClock();
 * const [a, b] = memoryConnPair();
 * await run((function* () { yield* a.send("x"); yield* b.recv(); })(), { clock });
 * a.close();
 * b.close();
 * ```
 *
 * @module
 */

export {
  VirtualClock,
  type VirtualClockOptions,
} from "./src/testing/virtual_clock.ts";
export {
  memoryConnPair,
  type MemoryConnPairOptions,
} from "./src/testing/memory_conn.ts";
export {
  type MemoryServer,
  memoryServer,
  type MemoryServerConnectOptions,
} from "./src/testing/memory_server.ts";
// The types the test kit's signatures use (Connection and all it refers
// to), so this entry point's docs stand on their own.
export type * from "./mod.ts";
