// A listener for tests of `serve`'s accept loop (through `serveOn`, from
// src/server.ts) without sockets.

import type { Transport } from "@corio/corio";

/**
 * A listener the test feeds: `serveOn` runs the real accept loop over
 * memory connections, on the test's clock.
 */
export class MemoryListener {
  readonly addr: Deno.NetAddr = {
    transport: "tcp",
    hostname: "memory",
    port: 1,
  };
  #queue: [Transport, () => void][] = [];
  #waiter: {
    resolve(t: Transport): void;
    reject(e: unknown): void;
  } | null = null;
  #isClosed = false;
  /** Queues a connection; `onAccept` is told when `accept()` takes it. */
  push(transport: Transport, onAccept: () => void = () => {}): void {
    if (this.#isClosed) return transport.close(); // connection refused
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
      return Promise.reject(new Deno.errors.BadResource("closed"));
    }
    return new Promise((resolve, reject) => this.#waiter = { resolve, reject });
  }
  close(): void {
    this.#isClosed = true;
    this.#waiter?.reject(new Deno.errors.BadResource("closed"));
    this.#waiter = null;
    for (const [transport] of this.#queue.splice(0)) transport.close();
  }
}
