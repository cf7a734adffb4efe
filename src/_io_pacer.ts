// Fair reads and writes when the process is overloaded.
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
// 2 ms), so the runtime gets to the reads that were waiting first. Only
// while it holds at least as many reads as that, though: with fewer in
// flight none can be passed over, and the "iteration" is only as long as
// the setImmediate that ends it takes to run, which a socket that is always
// ready puts off (one download of 64 KiB reads: 9-149 deferrals in 2 GiB, a
// timer turn each, 0.62x raw Deno's MB/s; 1.03x without them). The
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
//
// Writes starve too (measured with a chat server fanning each line out to
// 100 clients, 2,000 connections on one core, and with the same fan-out in
// raw Deno): with hundreds of writes pending in the runtime at once, some
// to sockets with room in their send buffer and a reading peer waited
// 1.2-4.9 s without a sendto (strace, ss: nothing queued, the peer's window
// open); raw Deno had 503-2,916 writes over 1 s per run. So of the writes
// of real sockets started in one iteration, at most WRITES_PENDING are
// pending at once; the next wait, in the order asked for, and start as
// those end, or on the next timer turn. A limit on the writes started per
// iteration instead (as for reads) also ended the stalls, but held one
// connection's stream of small writes, each awaited before the next, to
// 128 per timer turn: a SIP server's outbox of 1,024 replies overflowed
// under 2,000 pipelined requests. A limit on all pending writes would let
// 128 peers that do not read hold every other write back.

/** What the pacer can start later: a connection (or a bench baseline). */
export interface PacedReader {
  /** Starts the read the pacer held back. */
  issueRead(): void;
}

/** What the pacer can start later: a send. */
export interface PacedWriter {
  /** The iteration its write started in (the pacer's). */
  pacedIn: number;
  /** Starts the write the pacer held back (counted as pending). */
  issueWrite(): void;
}

const READS_PER_ITERATION = 128;
const WRITES_PENDING = 128;

let completed = 0;
let isCounting = false;
// Reads of real sockets handed to the runtime and not yet completed.
let inFlight = 0;
let deferred: PacedReader[] = [];
let isReleaseArmed = false;

// Iterations of the event loop in which I/O was counted, numbered.
let iteration = 0;
// Writes started in this iteration that have not ended. One started in an
// earlier iteration counts no more: a write blocked on a peer that does not
// read (a full send buffer) must not hold the others back for ever.
let writesPending = 0;
const heldWrites: (PacedWriter | undefined)[] = [];
let heldHead = 0;
let isReleasingWrites = false;
let isWriteReleaseArmed = false;

function endIteration(): void {
  isCounting = false;
  completed = 0;
  iteration++;
  writesPending = 0;
  if (heldHead < heldWrites.length && !isWriteReleaseArmed) {
    isWriteReleaseArmed = true;
    setTimeout(onWriteRelease, 0);
  }
}

function countIteration(): void {
  if (!isCounting) {
    isCounting = true;
    setImmediate(endIteration);
  }
}

/** Counts a read of a real socket handed to the runtime. */
export function readIssued(): void {
  inFlight++;
}

/**
 * Counts a read of a real socket completing (or failing) in this event-loop
 * iteration.
 */
export function readCompleted(): void {
  inFlight--;
  countIteration();
  completed++;
}

/**
 * True when `writer` may start its write now (it is then pending); else it
 * is held, and its `issueWrite()` called once writes started in this
 * iteration end, or on the next timer turn, in the order held.
 */
export function startWrite(writer: PacedWriter): boolean {
  countIteration();
  if (writesPending < WRITES_PENDING && heldHead === heldWrites.length) {
    writesPending++;
    writer.pacedIn = iteration;
    return true;
  }
  heldWrites.push(writer);
  return false;
}

/** Counts a write that is never held (a `closeWrite`) as pending. */
export function writeBegun(writer: PacedWriter): void {
  countIteration();
  writesPending++;
  writer.pacedIn = iteration;
}

/** A write `startWrite` let through or `writeBegun` counted has ended. */
export function writeEnded(writer: PacedWriter): void {
  if (writer.pacedIn === iteration) writesPending--;
  releaseHeldWrites();
}

function onWriteRelease(): void {
  isWriteReleaseArmed = false;
  releaseHeldWrites();
}

/** Starts held writes while this iteration's budget allows. */
function releaseHeldWrites(): void {
  // A held write that ends at once (its connection closed meanwhile) ends
  // in here again: the outer call goes on with the next.
  if (isReleasingWrites) return;
  isReleasingWrites = true;
  try {
    while (writesPending < WRITES_PENDING && heldHead < heldWrites.length) {
      const writer = heldWrites[heldHead]!;
      heldWrites[heldHead++] = undefined;
      countIteration();
      writesPending++;
      writer.pacedIn = iteration;
      writer.issueWrite();
    }
    if (heldHead === heldWrites.length) heldWrites.length = heldHead = 0;
  } finally {
    isReleasingWrites = false;
  }
}

/**
 * True when this iteration's reads are past the budget while the runtime
 * holds as many reads as it completes in one iteration: defer the next.
 * With fewer in flight, every read that is ready completes in the next
 * iteration anyway, and a deferral only costs its connection a timer turn.
 */
export function isOverBudget(): boolean {
  return completed >= READS_PER_ITERATION && inFlight >= READS_PER_ITERATION;
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
