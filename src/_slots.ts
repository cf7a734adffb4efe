// The server's running connections, in admission order (oldest first), with
// a count per peer address and the pick of an eviction victim. Internal to
// src/server.ts. Slots are linked into the list themselves (no Map entry per
// connection) and are the scheduler's settle listener for their handler (no
// closure per connection): an idle connection costs what it must.

import type { Connection, ServerSlot } from "./connection.ts";
import type { Coroutine } from "./scheduler.ts";
import type { ConnectionInfo } from "./_serve_options.ts";

/** One running handler and what the server knows of it. */
export class Slot implements ServerSlot {
  /** The handler's coroutine: cancelled on eviction and at shutdown. */
  task: Coroutine | null = null;
  isEvicted = false;
  // Links of the admission list, and of the candidates list.
  prev: Slot | null = null;
  next: Slot | null = null;
  prevCandidate: Slot | null = null;
  nextCandidate: Slot | null = null;

  constructor(
    readonly slots: Slots,
    readonly info: ConnectionInfo,
    /**
     * When it was admitted, or last marked idle (`Connection.markIdle`), on
     * the scheduler's clock, rounded up to a whole ms: a small integer is
     * kept in the field itself, a fraction in a 16-byte box of its own
     * (`deno task heap`). Rounded up, it can only make an eviction wait up
     * to 1 ms longer, never happen early.
     */
    public since: number,
    readonly connection: Connection,
  ) {}

  /** The peer's IP address: the key of `maxConnectionsPerPeer`. */
  get peer(): string {
    return this.info.remoteAddr.hostname;
  }

  /** The scheduler calls this when the handler is done. */
  onSettled(isOk: boolean, result: unknown): void {
    this.slots.onEnded(this, isOk, result);
  }

  /** A child of the handler failed under a cancelled parent. */
  onChildError(error: unknown): void {
    this.slots.onChildError(this, error);
  }

  /** Its connection was marked idle after it had received. */
  onMarkedIdle(): void {
    this.slots.onMarkedIdle(this);
  }
}

export class Slots {
  #head: Slot | null = null;
  #tail: Slot | null = null;
  #size = 0;
  // Slots that may still be idle, longest idle first. Those found
  // productive or evicted leave when the search meets them, each once, so a
  // victim is found in amortised O(1); those that end leave at once, and
  // those marked idle again go to the end.
  #candidates: Slot | null = null;
  #lastCandidate: Slot | null = null;
  #perPeer = new Map<string, number>();

  constructor(
    /** Told when a slot's handler has ended. */
    readonly onEnded: (slot: Slot, isOk: boolean, result: unknown) => void,
    /** Told of an error of the handler's child nobody else will see. */
    readonly onChildError: (slot: Slot, error: unknown) => void,
    /** Told when a handler marked its connection idle (see `requeue`). */
    readonly onMarkedIdle: (slot: Slot) => void,
  ) {}

  get size(): number {
    return this.#size;
  }

  add(slot: Slot): void {
    slot.prev = this.#tail;
    if (this.#tail !== null) this.#tail.next = slot;
    else this.#head = slot;
    this.#tail = slot;
    this.#appendCandidate(slot);
    this.#size++;
    const peer = slot.peer;
    this.#perPeer.set(peer, (this.#perPeer.get(peer) ?? 0) + 1);
  }

  remove(slot: Slot): void {
    if (slot.prev === null && this.#head !== slot) return; // not in the list
    if (slot.prev !== null) slot.prev.next = slot.next;
    else this.#head = slot.next;
    if (slot.next !== null) slot.next.prev = slot.prev;
    else this.#tail = slot.prev;
    slot.prev = slot.next = null;
    this.#dropCandidate(slot);
    this.#size--;
    const peer = slot.peer;
    const count = this.#perPeer.get(peer)! - 1;
    if (count === 0) this.#perPeer.delete(peer);
    else this.#perPeer.set(peer, count);
  }

  /**
   * Makes a running slot whose connection was marked idle a candidate
   * again, idle since `since` (no earlier than any other's): the newest of
   * them. True when it is the only one, which a wait for the oldest
   * candidate did not see.
   */
  requeue(slot: Slot, since: number): boolean {
    if (slot.isEvicted || (slot.prev === null && this.#head !== slot)) {
      return false;
    }
    this.#dropCandidate(slot);
    slot.since = since;
    this.#appendCandidate(slot);
    return this.#candidates === slot;
  }

  /** Running handlers whose peer is `peer`. */
  countOf(peer: string): number {
    return this.#perPeer.get(peer) ?? 0;
  }

  /**
   * The slot whose connection has been idle longest: it has received
   * nothing since it was accepted, or since it was marked idle.
   */
  oldestIdle(): Slot | undefined {
    for (let slot = this.#candidates; slot !== null; slot = this.#candidates) {
      if (!slot.isEvicted && slot.connection.isIdle) return slot;
      this.#dropCandidate(slot);
    }
    return undefined;
  }

  /** Calls `fn` for every running slot, oldest first; `fn` must not end one. */
  each(fn: (slot: Slot) => void): void {
    for (let slot = this.#head; slot !== null; slot = slot.next) fn(slot);
  }

  /** The running slots, oldest first (a copy: safe to end them meanwhile). */
  list(): Slot[] {
    const slots: Slot[] = [];
    for (let slot = this.#head; slot !== null; slot = slot.next) {
      slots.push(slot);
    }
    return slots;
  }

  #appendCandidate(slot: Slot): void {
    slot.prevCandidate = this.#lastCandidate;
    if (this.#lastCandidate !== null) this.#lastCandidate.nextCandidate = slot;
    else this.#candidates = slot;
    this.#lastCandidate = slot;
  }

  #dropCandidate(slot: Slot): void {
    if (slot.prevCandidate === null && this.#candidates !== slot) return;
    if (slot.prevCandidate !== null) {
      slot.prevCandidate.nextCandidate = slot.nextCandidate;
    } else this.#candidates = slot.nextCandidate;
    if (slot.nextCandidate !== null) {
      slot.nextCandidate.prevCandidate = slot.prevCandidate;
    } else this.#lastCandidate = slot.prevCandidate;
    slot.prevCandidate = slot.nextCandidate = null;
  }
}
