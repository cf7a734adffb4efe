// Fair reads when the server is overloaded.
//
// Measured on Deno 2.9.6, 1000 ping-pong connections, raw `Deno.listen`
// echo: once more socket reads complete in one event-loop iteration than
// about 128 (strace: 128 reads per epoll_wait, tokio's cooperative budget),
// the runtime keeps completing the reads of the connections answered
// fastest, and reads whose bytes already sit in the socket wait. In 2 s
// runs 585–1000 of 1000 connections got any reply, the median connection's
// longest gap between replies was 1.4–1.7 s, Jain's index 0.30–0.51; the
// stalls ended together when the load stopped.
//
// So past READS_PER_ITERATION completions in one iteration, the next reads
// of real sockets start on the next timer turn (Deno's setTimeout(0), about
// 2 ms), so the runtime gets to the reads that were waiting first. The
// next iteration's setImmediate is too soon: released there, the deferred
// reads starved the rest again (`deno task compare --conns 1000`, median
// of 4 rounds: Jain 0.31 and 0.38 for async function* and function*
// handlers, against 0.99 with the timer turn).
// corio with this rule (BENCHMARKS.md, B2): 1000 of 1000 served, Jain 0.99,
// each connection's longest wait for a reply 0.11 s median against raw
// Deno's 1.65 s, but 0.78-0.84x raw Deno's msgs/s (0.92x without it) and a
// p99 of 50-100 ms, since fair service takes more runtime round trips. At
// 50 connections it never deferred a read (counted over a 2 s run); at 200
// it deferred 27% of them, at 1000 about half. The threshold is the budget,
// not a tuning choice: with 192 or 256 in its place corio starved
// connections again (Jain 0.30-0.45, 3 rounds each). Much of the price is
// fairness itself: the raw server with this rule and nothing else
// (bench/servers/raw_paced_echo.ts) gets 0.85-0.88x raw Deno's msgs/s at
// 1.15-1.18x its CPU per message in paired 2 s runs, 0.85x, 0.98x and
// 0.99x in three full bench runs: the price moves with the machine's noise.

/** What the pacer can start later: a connection (or a bench baseline). */
export interface PacedReader {
  /** Starts the read the pacer held back. */
  issueRead(): void;
}

const READS_PER_ITERATION = 128;

let completed = 0;
let isCounting = false;
let deferred: PacedReader[] = [];
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

/** Starts `reader`'s read on the next timer turn. */
export function deferRead(reader: PacedReader): void {
  deferred.push(reader);
  if (!isReleaseArmed) {
    isReleaseArmed = true;
    setTimeout(release, 0);
  }
}

function release(): void {
  isReleaseArmed = false;
  const readers = deferred;
  deferred = [];
  for (const reader of readers) reader.issueRead();
}
