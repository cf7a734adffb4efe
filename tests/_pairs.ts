// Connection pairs for the contract suite: the same tests run against
// memory connections and real loopback TCP sockets, so the test kit cannot
// drift from the real thing.

import { Connection, type ConnectionOptions } from "@corio/corio";
import { memoryConnPair } from "@corio/corio/testing";

export interface PairMaker {
  name: string;
  /** Two connected ends; `dispose` closes both and waits until settled. */
  make(options?: ConnectionOptions): Promise<{
    a: Connection;
    b: Connection;
    dispose(): Promise<void>;
  }>;
}

export const memoryPairs: PairMaker = {
  name: "memory",
  make(options) {
    const [a, b] = memoryConnPair(options);
    return Promise.resolve({
      a,
      b,
      async dispose() {
        a.close();
        b.close();
        await Promise.all([a.settled, b.settled]);
      },
    });
  },
};

export const tcpPairs: PairMaker = {
  name: "tcp",
  async make(options) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const [accepted, dialled] = await Promise.all([
      listener.accept(),
      Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    ]);
    listener.close();
    const a = new Connection(accepted, options);
    const b = new Connection(dialled, options);
    return {
      a,
      b,
      async dispose() {
        a.close();
        b.close();
        await Promise.all([a.settled, b.settled]);
      },
    };
  },
};

export const pairMakers = [memoryPairs, tcpPairs];

export const text = (bytes: Uint8Array | null): string | null =>
  bytes === null ? null : new TextDecoder().decode(bytes);
