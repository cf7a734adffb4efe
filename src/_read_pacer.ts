// Fair reads when the server is overloaded.
//
// Measured on Deno 2.9.6, 1000 ping-pong connections, raw `Deno.listen`
// echo: when more socket reads complete in one event-loop iteration than
// about 128 (tokio's cooperative budget per poll), the runtime keeps
// completing the reads of the connections that are answered fastest, and
// reads whose bytes already sit in the socket wait: 360–1000 of 1000
// connections got a reply in a 2 s run, gaps between two replies to one
// connection were 1.6 s at the median, Jain's index 0.30–0.51. The stalls
// all ended at once when the load stopped.
//
// So past READS_PER_ITERATION completions in one iteration, the next reads
// of real sockets are not started at once but on the next timer turn
// (~1 ms), after the runtime has gone back to its reads already waiting.
// Same run with this rule: 1000 of 1000 served, Jain 0.97–0.98. Below the
// budget (every run at 50–200 connections) nothing is deferred.

import type { Connection } from "./connection.ts";

const READS_PER_ITERATION = 128;

let completed = 0;
let isCounting = false;
let deferred: Connection[] = [];
let isReleaseArmed = false;

function endIteration(): void {
  isCounting = false;
  completed = 0;
}

/** Counts a read of a real socket completing in this event-loop iteration. */
export function readCompleted(): void {
  if (!isCounting) {
    isCounting = true;
    setImmediate(endIteration);
  }
  completed++;
}

/** True when this iteration's reads are past the budget: defer the next. */
export function isOverBudget(): boolean {
  return completed >= READS_PER_ITERATION;
}

/** Starts `connection`'s read on the next timer turn. */
export function deferRead(connection: Connection): void {
  deferred.push(connection);
  if (!isReleaseArmed) {
    isReleaseArmed = true;
    setTimeout(release, 0);
  }
}

function release(): void {
  isReleaseArmed = false;
  const connections = deferred;
  deferred = [];
  for (const connection of connections) connection.issueRead();
}
