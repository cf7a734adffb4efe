// The server's running connections, in admission order (oldest first), with
// a count per peer address and the pick of an eviction victim. Internal to
// src/server.ts.

import type { Connection } from "./connection.ts";
import type { Task } from "./scheduler.ts";

/** One running handler and what the server knows of it. */
export interface Slot {
  readonly id: number;
  /** The peer's IP address: the key of `maxConnectionsPerPeer`. */
  readonly peer: string;
  /** When it was admitted, on the scheduler's clock. */
  readonly since: number;
  readonly connection: Connection;
  task: Task<unknown> | null;
  isEvicted: boolean;
}

export class Slots {
  // Maps keep insertion order, so the first entry is the oldest.
  #all = new Map<number, Slot>();
  // Slots that may still be unproductive; those found productive or evicted
  // are dropped lazily, each once, so a victim is found in amortised O(1).
  #candidates = new Map<number, Slot>();
  #perPeer = new Map<string, number>();

  get size(): number {
    return this.#all.size;
  }

  add(slot: Slot): void {
    this.#all.set(slot.id, slot);
    this.#candidates.set(slot.id, slot);
    this.#perPeer.set(slot.peer, (this.#perPeer.get(slot.peer) ?? 0) + 1);
  }

  remove(slot: Slot): void {
    if (!this.#all.delete(slot.id)) return;
    this.#candidates.delete(slot.id);
    const count = this.#perPeer.get(slot.peer)! - 1;
    if (count === 0) this.#perPeer.delete(slot.peer);
    else this.#perPeer.set(slot.peer, count);
  }

  /** Running handlers whose peer is `peer`. */
  countOf(peer: string): number {
    return this.#perPeer.get(peer) ?? 0;
  }

  /** The oldest slot whose connection has received nothing yet. */
  oldestUnproductive(): Slot | undefined {
    for (const [id, slot] of this.#candidates) {
      if (!slot.isEvicted && !slot.connection.hasReceived) return slot;
      this.#candidates.delete(id);
    }
    return undefined;
  }

  values(): IterableIterator<Slot> {
    return this.#all.values();
  }
}
