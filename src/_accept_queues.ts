// serve()'s `acceptQueues`: several listening sockets on one port, accepted
// from as one listener. With SO_REUSEPORT the kernel spreads incoming
// connections over their accept queues, so a burst of connects that would
// overflow one queue (its SYNs dropped, each dropped client retrying a
// second later) fits in several. Internal to src/server.ts.

import type { Transport } from "./connection_options.ts";
import type { Listener } from "./_accept.ts";

type Outcome = { conn: Transport } | { error: unknown };

/** One listening socket: a `Deno.TcpListener` or `Deno.TlsListener`. */
type TcpListener = Listener & { readonly addr: Deno.NetAddr };

/** `count` listeners on one port, one accept in flight on each. */
export class AcceptQueues implements Listener {
  readonly addr: Deno.NetAddr;
  #listeners: TcpListener[] = [];
  #isAccepting: boolean[] = [];
  // Connections accepted before the server asked: at most one per
  // listener, since each one's next accept starts only when asked.
  #ready: { conn: Transport }[] = [];
  #waiter: {
    resolve(conn: Transport): void;
    reject(error: unknown): void;
  } | null = null;
  #isClosed = false;

  /**
   * @param listenOn Opens one listening socket on `port` with SO_REUSEPORT
   *   (TCP or TLS).
   * @param port The port; 0 picks one for the first, the others share it.
   * @param count How many listening sockets.
   */
  constructor(
    listenOn: (port: number) => TcpListener,
    port: number,
    count: number,
  ) {
    // Without the flag, Deno ends the process at `reusePort` (exit 70)
    // instead of throwing; `listenDatagram` exists only with it.
    if (!("listenDatagram" in Deno)) {
      throw new TypeError(
        'Cannot serve: acceptQueues > 1 needs SO_REUSEPORT, an unstable Deno API: run with --unstable-net (or put "unstable": ["net"] in deno.json)',
      );
    }
    try {
      for (let i = 0; i < count; i++) {
        // Port 0 picks one for the first; the others share it.
        this.#listeners.push(
          listenOn(i === 0 ? port : this.#listeners[0].addr.port),
        );
        this.#isAccepting.push(false);
      }
    } catch (error) {
      for (const listener of this.#listeners) listener.close();
      throw error;
    }
    this.addr = this.#listeners[0].addr;
  }

  accept(): Promise<Transport> {
    const ready = this.#ready.shift();
    if (ready !== undefined) return Promise.resolve(ready.conn);
    if (this.#isClosed) {
      return Promise.reject(new Deno.errors.BadResource("Listener closed"));
    }
    for (let i = 0; i < this.#listeners.length; i++) {
      if (!this.#isAccepting[i]) this.#acceptOn(i);
    }
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  #acceptOn(i: number): void {
    this.#isAccepting[i] = true;
    this.#listeners[i].accept().then(
      (conn) => this.#deliver(i, { conn }),
      (error) => this.#deliver(i, { error }),
    );
  }

  #deliver(i: number, outcome: Outcome): void {
    this.#isAccepting[i] = false;
    if (this.#isClosed) {
      if ("conn" in outcome) outcome.conn.close();
      return;
    }
    const waiter = this.#waiter;
    if (waiter === null) {
      // An error no one asked for is stale by the time someone does (a
      // descriptor freed meanwhile): dropped, so the next accept() tries
      // this listener afresh instead of backing off again on it.
      if ("conn" in outcome) this.#ready.push(outcome);
      return;
    }
    this.#waiter = null;
    if ("conn" in outcome) waiter.resolve(outcome.conn);
    else waiter.reject(outcome.error);
  }

  close(): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    for (const listener of this.#listeners) listener.close();
    for (const ready of this.#ready.splice(0)) ready.conn.close();
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.reject(new Deno.errors.BadResource("Listener closed"));
  }
}
