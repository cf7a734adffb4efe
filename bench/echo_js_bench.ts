/**
 * The JavaScript cost of one echo message, without a socket: a transport
 * whose reads return 64 bytes and whose writes complete at once, driven by
 * a raw `async function` loop, by the `function*` floor (a bare generator
 * driven by a loop, as `servers/floor_echo.ts --sync`), by the `async
 * function*` floor with cancellable waits (`floor_echo.ts --cancellable`)
 * and by corio's echo handler in both forms (and with a recv timeout),
 * over one connection, 50 (B1) and 1000 (B2). These figures rank changes
 * to corio's code; they are not what it costs on a socket, where the same
 * code runs between the kernel's work for each message and costs several
 * times more (`attribute.ts`: corio's `function*` echo spends ~490 ns per
 * message more than raw Deno in JavaScript there, against ~120 ns here).
 * At 1000 connections their state no longer fits in the cache, and corio's
 * records cost more than their instructions say (`instructions.ts --ll`).
 *
 *     deno run bench/echo_js_bench.ts                      # ns per message
 *     deno run bench/echo_js_bench.ts --case corio-sync 1000   # one run
 *
 * `--case` runs one case over that many messages and prints nothing:
 * `instructions.ts` counts its instructions under callgrind.
 *
 * @module
 */

import {
  Connection,
  type ConnectionOptions,
  delay,
  Inbox,
  run,
  Scheduler,
  spawn,
  wait,
} from "@corio/corio";
import { memoryConnPair } from "@corio/corio/testing";
import { syncEcho as floorEcho } from "./servers/_floor_sync.ts";

const addr = { transport: "tcp" as const, hostname: "fake", port: 1 };

/** Reads give 64 bytes until `limit`, then EOF; writes take everything. */
class InstantTransport {
  #reads = 0;
  constructor(readonly limit: number) {}
  read(_buffer: Uint8Array): Promise<number | null> {
    return Promise.resolve(this.#reads++ < this.limit ? 64 : null);
  }
  write(bytes: Uint8Array): Promise<number> {
    return Promise.resolve(bytes.length);
  }
  closeWrite(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {}
  localAddr = addr;
  remoteAddr = addr;
}

/** As InstantTransport, each read a 64-byte line ending in LF. */
class LineTransport extends InstantTransport {
  static readonly LINE = new TextEncoder().encode("x".repeat(63) + "\n");
  override read(buffer: Uint8Array): Promise<number | null> {
    buffer.set(LineTransport.LINE);
    return super.read(buffer);
  }
}

const borrow = { borrow: true };

async function rawEcho(transport: InstantTransport): Promise<void> {
  const buf = new Uint8Array(1024);
  for (;;) {
    const n = await transport.read(buf);
    if (n === null) break;
    await transport.write(buf.subarray(0, n));
  }
}

/** Drives the floor's `syncEcho` on `transport` until it ends. */
function floorSync(transport: InstantTransport): Promise<void> {
  return new Promise((resolve) => {
    const gen = floorEcho(new Uint8Array(1024));
    const step = (result: number | null): void => {
      const r = gen.next(result);
      if (r.done) return resolve();
      const io = r.value;
      (io.isRead ? transport.read(io.bytes) : transport.write(io.bytes))
        .then(step);
    };
    step(null);
  });
}

/**
 * A wait of the `async function*` floor with cancellable waits: a promise
 * of its own per wait, settled by the transport's (as `floor_echo.ts
 * --cancellable`), the least a library whose waits can end early pays.
 */
class HeldIo implements AsyncIterableIterator<never, number | null> {
  bytes = new Uint8Array(0);
  #resolve: (r: IteratorResult<never, number | null>) => void = () => {};
  readonly #hold = (
    resolve: (r: IteratorResult<never, number | null>) => void,
  ) => this.#resolve = resolve;
  readonly #onDone = (value: number | null) =>
    this.#resolve({ done: true, value });
  constructor(
    readonly transport: InstantTransport,
    readonly isRead: boolean,
  ) {}
  [Symbol.asyncIterator]() {
    return this;
  }
  next(): Promise<IteratorResult<never, number | null>> {
    const held = new Promise(this.#hold);
    (this.isRead
      ? this.transport.read(this.bytes)
      : this.transport.write(this.bytes)).then(this.#onDone);
    return held;
  }
}

async function* floorAsync(transport: InstantTransport) {
  const buf = new Uint8Array(1024);
  const read = new HeldIo(transport, true);
  const write = new HeldIo(transport, false);
  read.bytes = buf;
  for (;;) {
    const n = yield* read;
    if (n === null) return;
    for (let offset = 0; offset < n;) {
      write.bytes = buf.subarray(offset, n);
      offset += (yield* write)!;
    }
  }
}

async function* asyncEcho(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
    yield* conn.send(chunk);
  }
}

function* syncEcho(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
    yield* conn.send(chunk);
  }
}

/** A line echo, as seed 003's server: `recvLine`, then the line sent back. */
async function* asyncLines(conn: Connection) {
  for (let line; (line = yield* conn.recvLine()) !== null;) {
    yield* conn.send(line);
  }
}

function* syncLines(conn: Connection) {
  for (let line; (line = yield* conn.recvLine()) !== null;) {
    yield* conn.send(line);
  }
}

/**
 * Runs a program that waits on ten kinds of operation, as a server with
 * timers, lines, frames, child tasks and mailboxes does, so that the
 * scheduler's code shared by all operations has seen all those classes.
 */
async function useManyOperationKinds(): Promise<void> {
  for (let round = 0; round < 100; round++) {
    const [a, b] = memoryConnPair();
    const inbox = new Inbox<number>();
    await run((function* () {
      yield* delay(0);
      yield* wait(Promise.resolve(1));
      const child = yield* spawn((function* () {
        yield* delay(0);
      })());
      yield* child.join();
      yield* b.send("line\nabcd");
      yield* a.recvLine();
      yield* a.recvExact(4);
      inbox.push(1);
      yield* inbox.recv();
      yield* a.closeWrite();
      yield* b.recv();
    })());
    a.close();
    b.close();
  }
}

/**
 * Echoes `messages` messages over `count` connections served side by side
 * by one scheduler, as B1 and B3 (50) and B2 (1000) do: the clock is read
 * once per round of connections, and `count` receive deadlines are pending
 * at once. With one
 * connection a recv timeout reads the clock for every message, and
 * `performance.now()` alone takes about 900 instructions on Deno 2.9.6
 * (`Date.now()` 360), so `corio-timeout` overstates what a timeout costs a
 * server: 1.26-1.29x `corio` against 1.06-1.11x here.
 */
async function manyConnections(
  count: number,
  messages: number,
  options?: ConnectionOptions,
): Promise<void> {
  const scheduler = new Scheduler();
  const perConnection = Math.ceil(messages / count);
  await Promise.all(Array.from({ length: count }, () => {
    const conn = new Connection(new InstantTransport(perConnection), options);
    return scheduler.spawn(asyncEcho(conn)).finished;
  }));
}

/** Runs `echo` on `count` transports side by side, `messages` in all. */
async function manyOf(
  count: number,
  messages: number,
  echo: (transport: InstantTransport) => Promise<unknown>,
): Promise<void> {
  const perConnection = Math.ceil(messages / count);
  await Promise.all(
    Array.from(
      { length: count },
      () => echo(new InstantTransport(perConnection)),
    ),
  );
}

/** The cases `cases(count)` gives for 50 connections (B1) and 1000 (B2). */
function servedSideBySide<T>(
  cases: (count: number) => Record<string, T>,
): Record<string, T> {
  return { ...cases(50), ...cases(1000) };
}

/** Each case echoes `messages` messages and resolves when done. */
export const ECHO_CASES: Record<string, (messages: number) => Promise<void>> = {
  "raw": (messages) => rawEcho(new InstantTransport(messages)),
  "floor-sync": (messages) => floorSync(new InstantTransport(messages)),
  "floor-cancellable": async (messages) => {
    await floorAsync(new InstantTransport(messages)).next();
  },
  "corio": async (messages) => {
    await run(asyncEcho(new Connection(new InstantTransport(messages))));
  },
  "corio-timeout": async (messages) => {
    const transport = new InstantTransport(messages);
    await run(asyncEcho(new Connection(transport, { recvTimeout: 30_000 })));
  },
  ...servedSideBySide((count) => ({
    [`raw-${count}`]: (messages) => manyOf(count, messages, rawEcho),
    [`floor-cancellable-${count}`]: (messages) =>
      manyOf(count, messages, (transport) => floorAsync(transport).next()),
    [`corio-${count}`]: (messages) => manyConnections(count, messages),
    [`corio-timeout-${count}`]: (messages) =>
      manyConnections(count, messages, { recvTimeout: 30_000 }),
  })),
  "corio-sync": async (messages) => {
    await run(syncEcho(new Connection(new InstantTransport(messages))));
  },
  "corio-lines": async (messages) => {
    await run(asyncLines(new Connection(new LineTransport(messages))));
  },
  "corio-sync-lines": async (messages) => {
    await run(syncLines(new Connection(new LineTransport(messages))));
  },
  // Run in a process of its own (`--case`): it leaves the shared code
  // having seen many operation classes, which would carry into other cases.
  "corio-sync-mixed": async (messages) => {
    await useManyOperationKinds();
    await run(syncEcho(new Connection(new InstantTransport(messages))));
  },
};

const LABELS: Record<string, string> = {
  "raw": "raw async function",
  "floor-sync": "function* floor",
  "floor-cancellable": "async function* floor",
  "corio": "corio async function*",
  "corio-timeout": "corio, 30 s recv timeout",
  ...servedSideBySide((count) => ({
    [`raw-${count}`]: `raw async function, ${count} connections`,
    [`floor-cancellable-${count}`]:
      `async function* floor, ${count} connections`,
    [`corio-${count}`]: `corio async function*, ${count} connections`,
    [`corio-timeout-${count}`]:
      `corio, 30 s recv timeout, ${count} connections`,
  })),
  "corio-sync": "corio function*",
  "corio-lines": "corio async function*, line echo",
  "corio-sync-lines": "corio function*, line echo",
  "corio-sync-mixed": "corio function*, after ten operation kinds",
};

if (import.meta.main && Deno.args[0] === "--case") {
  const body = ECHO_CASES[Deno.args[1]];
  if (!body) throw new TypeError(`unknown case ${Deno.args[1]}`);
  await body(Number(Deno.args[2]));
} else if (import.meta.main) {
  const MESSAGES = 300_000;
  const rows: Record<string, number[]> = {};
  for (let round = 0; round < 5; round++) {
    for (const [name, body] of Object.entries(ECHO_CASES)) {
      if (name.endsWith("-mixed")) continue; // --case only
      const started = performance.now();
      await body(MESSAGES);
      (rows[name] ??= []).push(
        (performance.now() - started) * 1e6 / MESSAGES,
      );
    }
  }
  console.log(`ns per echo message, best of 5 x ${MESSAGES}:`);
  for (const [name, values] of Object.entries(rows)) {
    console.log(
      `  ${LABELS[name].padEnd(44)} ${Math.min(...values).toFixed(0)}`,
    );
  }
}
