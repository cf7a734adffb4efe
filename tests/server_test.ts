import assert from "node:assert/strict";
import {
  connect,
  type Connection,
  ConnectionClosedError,
  delay,
  run,
  serve,
  type ServerStats,
  spawn,
  type Task,
  TimeoutError,
  wait,
} from "@corio/corio";
import { memoryServer, VirtualClock } from "@corio/corio/testing";
import net from "node:net";
import { canRun } from "./reliability/_helpers.ts";

const encoder = new TextEncoder();

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let sent = 0; sent < bytes.length;) {
    sent += await conn.write(bytes.subarray(sent));
  }
}

async function readLine(conn: Deno.Conn): Promise<string | null> {
  const bytes: number[] = [];
  const one = new Uint8Array(1);
  for (;;) {
    const n = await conn.read(one);
    if (n === null) {
      return bytes.length
        ? new TextDecoder().decode(new Uint8Array(bytes))
        : null;
    }
    if (one[0] === 10) return new TextDecoder().decode(new Uint8Array(bytes));
    bytes.push(one[0]);
  }
}

/** Connects `count` clients one after another: each one's first line. */
async function firstLines(
  port: number,
  count: number,
): Promise<(string | null)[]> {
  const lines = [];
  for (let i = 0; i < count; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    lines.push(await readLine(conn));
    conn.close();
  }
  return lines;
}

/** Polls `condition` every 5 ms for at most `ms`. */
async function until(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function* echo(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv()) !== null;) {
    yield* conn.send(chunk);
  }
}

Deno.test("serve() echoes random bytes in random chunking to 50 concurrent clients", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echo);
  await Promise.all(Array.from({ length: 50 }, async () => {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    const payload = new Uint8Array(20_000 + Math.floor(Math.random() * 20_000))
      .map(() => Math.floor(Math.random() * 256));
    const writing = (async () => {
      for (let offset = 0; offset < payload.length;) {
        const size = 1 + Math.floor(Math.random() * 3000);
        await writeAll(conn, payload.subarray(offset, offset + size));
        offset += size;
      }
      await conn.closeWrite();
    })();
    const received = new Uint8Array(payload.length + 1); // room to see EOF
    let got = 0;
    for (let n; (n = await conn.read(received.subarray(got))) !== null;) {
      got += n;
    }
    await writing;
    conn.close();
    assert.equal(got, payload.length);
    assert.deepEqual(received.subarray(0, got), payload);
  }));
  assert.equal(server.stats.completed, 50);
});

Deno.test("the connection cap holds: exactly cap served, the rest after others leave", async () => {
  const cap = 5;
  let running = 0;
  let maxRunning = 0;
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    maxConnections: cap,
  }, async function* (conn) {
    running++;
    maxRunning = Math.max(maxRunning, running);
    try {
      yield* conn.send("hello\n");
      yield* conn.recvLine(); // held until the client speaks
    } finally {
      running--;
    }
  });
  const clients = await Promise.all(
    Array.from(
      { length: cap + 30 },
      () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    ),
  );
  const greeted = clients.map((conn) => readLine(conn));
  await until(() => server.stats.active === cap);
  await new Promise((resolve) => setTimeout(resolve, 50)); // give the loop a chance to overshoot
  assert.equal(server.stats.accepted, cap);
  assert.equal(maxRunning, cap);
  // Everyone is served, cap at a time, as the first ones leave.
  for (const [i, conn] of clients.entries()) {
    assert.equal(await greeted[i], "hello");
    await writeAll(conn, encoder.encode("bye\n"));
  }
  await until(() => server.stats.completed === cap + 30);
  for (const conn of clients) conn.close();
  assert.equal(maxRunning, cap);
});

Deno.test("at the cap, a silent connection is evicted once evictAfter has passed since it was admitted, never before", async () => {
  // Admitted at a fractional time: the eviction may come up to 1 ms late
  // (the admission time is kept in whole ms, rounded up), never early.
  const clock = new VirtualClock({ start: 0.5, autojump: false });
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    maxConnections: 1,
    evictAfter: 10,
    clock,
  }, echo);
  const port = server.addr.port;
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  await until(() => server.stats.active === 1);
  const next = await Deno.connect({ hostname: "127.0.0.1", port });
  await until(() => server.stats.accepted === 1 && clock.pending > 0);
  clock.advance(9.9); // 10.4: admitted 9.9 ms ago
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(server.stats.evicted, 0);
  clock.advance(0.6); // 11
  await until(() => server.stats.evicted === 1);
  assert.equal(await silent.read(new Uint8Array(1)), null);
  await until(() => server.stats.active === 1 && server.stats.accepted === 2);
  await writeAll(next, encoder.encode("hi\n"));
  assert.equal(await readLine(next), "hi");
  silent.close();
  next.close();
});

Deno.test("onAccept can refuse a connection or pick its handler", async () => {
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onAccept: (info) =>
      info.id === 1 ? false : info.id === 2
        ? function* (conn) {
          yield* conn.send("special\n");
        }
        : undefined,
  }, function* (conn) {
    yield* conn.send("default\n");
  });
  const replies = await firstLines(server.addr.port, 3);
  assert.deepEqual(replies, [null, "special", "default"]);
  assert.equal(server.stats.refused, 1);
});

Deno.test("an onAccept that throws refuses that connection, reports the error with it, and the server goes on", async () => {
  const reports: [string, number | undefined][] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onAccept: (info) => {
      if (info.id === 1) throw new Error("onAccept bug");
    },
    onError: (error, info) =>
      reports.push([(error as Error).message, info?.id]),
  }, function* (conn) {
    yield* conn.send("served\n");
  });
  const replies = await firstLines(server.addr.port, 2);
  assert.deepEqual(replies, [null, "served"]);
  assert.deepEqual(reports, [["onAccept bug", 1]]);
  assert.equal(server.stats.refused, 1);
});

Deno.test("a handler's connection and its info name both ends of the TCP connection", async () => {
  let seen: unknown[] = [];
  await using server = serve(
    { hostname: "127.0.0.1", port: 0 },
    function* (conn, info) {
      seen = [conn.localAddr, conn.remoteAddr, info.localAddr, info.remoteAddr];
      yield* conn.send("ok\n");
    },
  );
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  assert.equal(await readLine(client), "ok");
  const { port } = client.localAddr as Deno.NetAddr;
  client.close();
  const local = {
    transport: "tcp",
    hostname: "127.0.0.1",
    port: server.addr.port,
  };
  const remote = { transport: "tcp", hostname: "127.0.0.1", port };
  // Deno's addresses have a null prototype: compare their fields.
  assert.deepEqual(seen.map((addr) => ({ ...addr as Deno.NetAddr })), [
    local,
    remote,
    local,
    remote,
  ]);
});

Deno.test("a handler's error is reported with its connection and ends only that connection", async () => {
  const reports: [string, number | undefined][] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: (error, info) =>
      reports.push([(error as Error).message, info?.id]),
  }, function* (conn, info) {
    if (info.id === 1) throw new Error("handler bug");
    yield* conn.send("fine\n");
  });
  const first = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  assert.equal(await readLine(first), null);
  first.close();
  const second = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  assert.equal(await readLine(second), "fine");
  second.close();
  await until(() => server.stats.completed === 1);
  assert.deepEqual(reports, [["handler bug", 1]]);
  assert.equal(server.stats.failed, 1);
});

Deno.test("the error of a cancelled handler's child is reported with its connection", async () => {
  const reports: [string, number | undefined][] = [];
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    onError: (error, info) =>
      reports.push([(error as Error).message, info?.id]),
  }, function* (conn) {
    yield* spawn((function* () {
      try {
        yield* conn.recv();
      } finally {
        // deno-lint-ignore no-unsafe-finally
        throw new Error("child cleanup failed");
      }
    })());
    yield* conn.send("ready\n");
    yield* delay(60_000);
  });
  const client = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  assert.equal(await readLine(client), "ready");
  await server.shutdown({ grace: 0 }); // cancels the handler, and its child
  client.close();
  assert.deepEqual(reports, [["child cleanup failed", 1]]);
  assert.equal(server.stats.cancelled, 1);
});

Deno.test("a recv timeout is counted, and the client sees the connection close", async () => {
  await using server = serve({
    hostname: "127.0.0.1",
    port: 0,
    recvTimeout: 50,
    onError() {},
  }, echo);
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  assert.equal(await conn.read(new Uint8Array(8)), null);
  conn.close();
  await until(() => server.stats.timeouts === 1);
  assert.equal(server.stats.failed, 1);
});

Deno.test("shutdown({ grace }) lets quick handlers finish, cancels slow ones, runs every finally; isStopping says it began", async () => {
  const finallies: string[] = [];
  const server = serve(
    { hostname: "127.0.0.1", port: 0 },
    async function* (conn, info) {
      try {
        yield* conn.send("ready\n");
        yield* delay(info.id <= 3 ? 100 : 60_000);
        yield* conn.send("done\n");
      } finally {
        finallies.push(info.id <= 3 ? "quick" : "slow");
      }
    },
  );
  const clients = await Promise.all(
    Array.from(
      { length: 6 },
      () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    ),
  );
  for (const conn of clients) assert.equal(await readLine(conn), "ready");
  const started = performance.now();
  assert.equal(server.isStopping, false);
  const stopping = server.shutdown({ grace: 500 });
  assert.equal(server.isStopping, true);
  assert.equal(server.shutdown({ grace: 500 }), stopping); // idempotent
  // New connections are refused at once.
  await assert.rejects(
    Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
  );
  await stopping;
  const took = performance.now() - started;
  assert.ok(took >= 450 && took < 1500, `shutdown took ${took} ms`);
  const stats: ServerStats = server.stats;
  assert.equal(stats.completed, 3);
  assert.equal(stats.cancelled, 3);
  assert.equal(stats.active, 0);
  assert.deepEqual(finallies.sort(), [
    "quick",
    "quick",
    "quick",
    "slow",
    "slow",
    "slow",
  ]);
  for (const conn of clients) conn.close();
  await server.finished;
});

Deno.test("an aborted signal shuts the server down", async () => {
  const controller = new AbortController();
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
  }, echo);
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await until(() => server.stats.active === 1);
  controller.abort();
  await server.finished;
  assert.equal(await conn.read(new Uint8Array(1)), null);
  conn.close();
  assert.equal(server.stats.cancelled, 1);
});

Deno.test("acceptQueues: 4 sockets share the port, and every client of a burst is served", async () => {
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, acceptQueues: 4 },
    echo,
  );
  const clients = await Promise.all(
    Array.from(
      { length: 200 },
      () => Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    ),
  );
  const encoder = new TextEncoder();
  const replies = await Promise.all(clients.map(async (conn, i) => {
    await conn.write(encoder.encode(`client ${i}\n`));
    return await readLine(conn);
  }));
  assert.deepEqual(replies, clients.map((_, i) => `client ${i}`));
  for (const conn of clients) conn.close();
  await until(() => server.stats.completed === 200);
  assert.equal(server.stats.accepted, 200);
});

Deno.test("acceptQueues at the cap: shutdown closes every connection, served, held by the server or queued in the kernel", async () => {
  const server = serve({
    hostname: "127.0.0.1",
    port: 0,
    acceptQueues: 3,
    maxConnections: 1,
    evictAfter: Infinity,
  }, echo);
  const clients = [];
  for (let i = 0; i < 4; i++) {
    clients.push(
      await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port }),
    );
  }
  await until(() => server.stats.active === 1);
  await server.shutdown();
  // Every client sees its connection end: served, held, or in the kernel.
  const ends = await Promise.all(
    clients.map((conn) =>
      conn.read(new Uint8Array(1)).catch((error) => error.name)
    ),
  );
  for (const end of ends) assert.ok(end === null || end === "ConnectionReset");
  for (const conn of clients) conn.close();
  assert.equal(server.stats.accepted, 1);
});

Deno.test("acceptQueues without --unstable-net fails with a TypeError that says what to run", async () => {
  // Deno itself would end the process at `reusePort` without the flag.
  const mod = new URL("../mod.ts", import.meta.url).href;
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      "--no-config",
      `import { serve } from "${mod}";
       try { serve({ hostname: "127.0.0.1", acceptQueues: 2 }, function* () {}); }
       catch (error) { console.log(error.name + ": " + error.message); }`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const printed = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  assert.match(
    printed,
    /^TypeError: Cannot serve: acceptQueues > 1 needs SO_REUSEPORT.*--unstable-net/,
  );
});

Deno.test("serve() rejects nonsense options with RangeError", () => {
  assert.throws(() => serve({ maxConnections: 0 }, echo), RangeError);
  assert.throws(() => serve({ recvTimeout: -1 }, echo), RangeError);
  assert.throws(() => serve({ maxLineLength: 0 }, echo), RangeError);
  assert.throws(() => serve({ acceptQueues: 0 }, echo), RangeError);
  assert.throws(() => serve({ acceptQueues: 1.5 }, echo), RangeError);
  assert.throws(() => serve({}, "nope" as never), TypeError);
  for (const port of [-1, 70_000, 1.5]) {
    assert.throws(() => serve({ port }, echo), {
      name: "RangeError",
      message: `Cannot serve: port must be 0-65535, got ${port}`,
    });
  }
});

Deno.test("shutdown() with a negative or NaN grace is a RangeError, and the server still runs", async () => {
  await using server = serve({ hostname: "127.0.0.1", port: 0 }, echo);
  for (const grace of [-1, NaN]) {
    assert.throws(() => server.shutdown({ grace }), {
      name: "RangeError",
      message: `Cannot shut down: grace must be >= 0, got ${grace}`,
    });
  }
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  await writeAll(conn, encoder.encode("still here\n"));
  assert.equal(await readLine(conn), "still here");
  conn.close();
});

// prlimit comes with util-linux (Linux only); .ci/run installs it.
const hasPrlimit = await canRun("prlimit", ["--nofile=64:64", "true"]);
if (!hasPrlimit) {
  console.warn("EMFILE test skipped: prlimit is missing or not permitted");
}

for (const acceptQueues of [1, 4]) {
  Deno.test({
    name:
      `the accept loop survives descriptor exhaustion (prlimit --nofile=64:64) and serves everyone (acceptQueues ${acceptQueues})`,
    ignore: !hasPrlimit,
  }, () => serveThroughExhaustion(acceptQueues));
}

async function serveThroughExhaustion(acceptQueues: number): Promise<void> {
  const fixture =
    new URL("./fixtures/emfile_server.ts", import.meta.url).pathname;
  const child = new Deno.Command("prlimit", {
    args: [
      "--nofile=64:64",
      Deno.execPath(),
      "run",
      "--allow-net",
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      fixture,
      "--accept-queues",
      String(acceptQueues),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = (await stdout.read()).value ?? "";
  const port = Number(/:(\d+)/.exec(first)?.[1]);
  assert.ok(port > 0, first);
  // 150 clients at once: far more than 64 descriptors. Each waits for its
  // echo, so descriptors free only as clients finish.
  const results = await Promise.all(
    Array.from({ length: 150 }, async (_, i) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await writeAll(conn, encoder.encode(`client ${i}\n`));
        return await readLine(conn);
      } finally {
        conn.close();
      }
    }),
  );
  assert.deepEqual(
    results,
    Array.from({ length: 150 }, (_, i) => `client ${i}`),
  );
  child.kill("SIGTERM");
  let rest = "";
  for (let chunk; !(chunk = await stdout.read()).done;) rest += chunk.value;
  const stderr = await new Response(child.stderr).text();
  await child.status;
  const stats = JSON.parse(rest.trim().split("\n").pop()!);
  assert.equal(stats.completed, 150);
  assert.ok(stats.acceptErrors > 0, "expected the limit to be hit");
  // Reports are rate-limited: far fewer than the failures.
  const reports = stderr.split("\n").filter((line) =>
    line.startsWith("accept-error")
  );
  assert.ok(
    reports.length >= 1 && reports.length <= stats.acceptErrors,
    stderr,
  );
}

/** A client that connects, then resets (SO_LINGER 0, as `nmap -sT` does). */
async function connectThenReset(port: number): Promise<void> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.resetAndDestroy();
  await new Promise((resolve) => socket.once("close", resolve));
}

Deno.test("clients that reset while waiting in the backlog are no accept failure: no AcceptError, no back-off", async () => {
  const reports: unknown[] = [];
  const clock = new VirtualClock();
  await using server = serve({
    hostname: "127.0.0.1",
    maxConnections: 1,
    evictAfter: Infinity,
    clock,
    onError: (error) => reports.push(error),
  }, function* (conn) {
    const line = yield* conn.recvLine();
    yield* conn.send(`got ${line}\n`);
  });
  const port = server.addr.port;
  const first = await Deno.connect({ hostname: "127.0.0.1", port });
  await until(() => server.stats.active === 1);
  // At the cap, five clients give up in the kernel backlog. Deno 2.9.6
  // fails their accept() with NotConnected.
  for (let i = 0; i < 5; i++) await connectThenReset(port);
  const good = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(good, encoder.encode("good\n"));
  await writeAll(first, encoder.encode("first\n"));
  assert.equal(await readLine(first), "got first");
  // On the virtual clock a back-off would never end: the good client is
  // served only if no reset peer made the loop back off.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const gaveUp = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve("not served in 5 s"), 5000);
  });
  assert.equal(await Promise.race([readLine(good), gaveUp]), "got good");
  clearTimeout(timer);
  assert.equal(server.stats.acceptErrors, 0);
  assert.deepEqual(reports, []);
  first.close();
  good.close();
});

for (const form of ["function*", "async function*"] as const) {
  Deno.test(`a handler cancelled by shutdown whose finally sends a goodbye counts as cancelled, and nothing is reported [${form}]`, async () => {
    const reports: unknown[] = [];
    const clock = new VirtualClock();
    async function* asyncHandler(conn: Connection) {
      try {
        yield* conn.recvLine();
      } finally {
        yield* conn.send("bye\n");
      }
    }
    function* syncHandler(conn: Connection) {
      try {
        yield* conn.recvLine();
      } finally {
        yield* conn.send("bye\n");
      }
    }
    const server = serve({
      hostname: "127.0.0.1",
      clock,
      onError: (error) => reports.push(error),
    }, form === "function*" ? syncHandler : asyncHandler);
    const client = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    await until(() => server.stats.active === 1);
    // The goodbye's write starts; the server closes the connection once
    // the cancelled handler waits in its finally, before the write is done.
    await server.shutdown({ grace: 0 });
    client.close();
    assert.deepEqual(reports, []);
    const { failed, cancelled } = server.stats;
    assert.deepEqual({ failed, cancelled }, { failed: 0, cancelled: 1 });
  });
}

Deno.test("a server shut down by hand lets go of its longer-lived signal: serve() and serveDatagram() are collectable", async () => {
  // In a process of its own, with --expose-gc: the abort listener each
  // server added to the signal used to keep it, stopped, for as long as
  // the signal lived.
  const code = `
    import { serve, serveDatagram } from "${new URL(
    "../mod.ts",
    import.meta.url,
  )}";
    const controller = new AbortController();
    async function startAndStop() {
      const { signal } = controller;
      const server = serve({ hostname: "127.0.0.1", signal }, function* () {});
      const udp = serveDatagram({ hostname: "127.0.0.1", key: () => "", signal });
      await server.shutdown();
      await udp.shutdown();
      return [new WeakRef(server), new WeakRef(udp)];
    }
    const refs = [...await startAndStop(), ...await startAndStop()];
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      gc();
    }
    console.log(JSON.stringify(refs.map((ref) => ref.deref() !== undefined)));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-net", "--v8-flags=--expose-gc", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  assert.equal(out.code, 0, decoder.decode(out.stderr));
  const alive = JSON.parse(
    decoder.decode(out.stdout).trim().split("\n").at(-1)!,
  );
  assert.deepEqual(alive, [false, false, false, false]);
});

for (const form of ["function*", "async function*"]) {
  Deno.test(`${form === "function*" ? "a" : "an"} ${form} handler looping on delay(0) when the server shuts down still sends its goodbye from finally`, async () => {
    const errors: unknown[] = [];
    const server = serve(
      { hostname: "127.0.0.1", onError: (error) => errors.push(error) },
      (conn) => {
        function* body() {
          try {
            yield* conn.send("hi\n");
            for (;;) yield* delay(0); // a long computation, yielding
          } finally {
            yield* conn.send("bye\n");
          }
        }
        return form === "function*" ? body() : (async function* () {
          yield* body();
        })();
      },
    );
    const lines = await run((function* () {
      const conn = yield* connect({ port: server.addr.port, timeout: 1000 });
      const got = [yield* conn.recvLine({ timeout: 1000 })];
      const stopping = server.shutdown({ grace: 0 });
      got.push(yield* conn.recvLine({ timeout: 1000 }));
      yield* wait(stopping);
      return got;
    })());
    assert.deepEqual(lines, ["hi", "bye"]);
    assert.deepEqual(errors, []);
    assert.equal(server.stats.cancelled, 1);
  });
}

Deno.test("info.signal aborts as shutdown begins: a wait given it ends then, so a handler says goodbye at the start of the grace; one that lets it propagate counts as cancelled", async () => {
  const reported: unknown[] = [];
  const server = serve(
    {
      hostname: "127.0.0.1",
      port: 0,
      onError: (error) => reported.push(error),
    },
    async function* (conn, info) {
      yield* conn.send("ready\n");
      try {
        yield* conn.recvLine({ signal: info.signal });
      } catch (error) {
        if (!info.signal.aborted || info.id % 2 === 0) throw error;
        yield* conn.send("going down\n");
      }
    },
  );
  const clients = await Promise.all(
    [1, 2, 3, 4].map(() =>
      Deno.connect({ hostname: "127.0.0.1", port: server.addr.port })
    ),
  );
  for (const conn of clients) assert.equal(await readLine(conn), "ready");
  const started = performance.now();
  await server.shutdown({ grace: 10_000 });
  const took = performance.now() - started;
  const goodbyes = await Promise.all(clients.map((conn) => readLine(conn)));
  for (const conn of clients) conn.close();
  assert.ok(took < 2000, `shutdown took ${took} ms of a 10 s grace`);
  assert.deepEqual(goodbyes.filter((line) => line !== null), [
    "going down",
    "going down",
  ]);
  assert.deepEqual(
    { completed: server.stats.completed, cancelled: server.stats.cancelled },
    { completed: 2, cancelled: 2 },
  );
  assert.deepEqual(reported, []);
});

/** What `fn` printed with console.error, which prints nothing meanwhile. */
async function printedBy(fn: () => Promise<void>): Promise<unknown[][]> {
  const printed: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => void printed.push(args);
  try {
    await fn();
  } finally {
    console.error = consoleError;
  }
  return printed;
}

Deno.test("the default onError counts, and does not print, a client that hangs up mid-line (IncompleteReadError)", async () => {
  const printed = await printedBy(async () => {
    const server = serve({ hostname: "127.0.0.1" }, async function* (conn) {
      yield* conn.recvLine({ requireNewline: true, timeout: 5000 });
    });
    const client = await Deno.connect({ port: server.addr.port });
    await writeAll(client, encoder.encode("ADD 1")); // ADD 12, cut off
    client.close();
    for (let i = 0; i < 200 && server.stats.failed === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await server.shutdown();
    assert.equal(server.stats.failed, 1);
  });
  assert.deepEqual(printed, []);
});

Deno.test("a handler whose receive meets the close of its child's send timeout ends with that TimeoutError as the cause, counts as a timeout, and the default onError prints nothing", async () => {
  const clock = new VirtualClock();
  let met: unknown;
  const printed = await printedBy(async () => {
    const { server, connect } = memoryServer(
      { clock, sendTimeout: 100 },
      async function* (conn) {
        // Full duplex: a child floods a client that never reads.
        yield* spawn((async function* () {
          for (;;) yield* conn.send("x".repeat(1024));
        })());
        try {
          yield* conn.recv();
        } catch (error) {
          met = error;
          throw error;
        }
      },
    );
    const client = connect({ capacity: 4096 });
    await run(
      (function* () {
        yield* delay(1000);
      })(),
      { clock },
    );
    client.close();
    await server.shutdown();
    assert.equal(server.stats.failed, 1);
    assert.equal(server.stats.timeouts, 1);
  });
  assert.ok(met instanceof ConnectionClosedError);
  assert.ok(met.cause instanceof TimeoutError);
  assert.equal(met.cause.op, "send");
  assert.match(met.message, /closed \(after TimeoutError: Cannot send/);
  assert.deepEqual(printed, []);
});

Deno.test("the default onError counts, and does not print, a client's line over maxLineLength (LineTooLongError)", async () => {
  const printed = await printedBy(async () => {
    const clock = new VirtualClock();
    const { server, connect } = memoryServer(
      { clock, maxLineLength: 8 },
      function* (conn) {
        yield* conn.recvLine();
      },
    );
    const client = connect();
    await run(
      (function* () {
        yield* client.send("far too long a line\n");
        assert.equal(yield* client.recv(), null); // the server closed it
      })(),
      { clock },
    );
    client.close();
    await server.shutdown();
    assert.equal(server.stats.failed, 1);
  });
  assert.deepEqual(printed, []);
});

Deno.test("at the grace's end a handler is cancelled at its current wait, even one in a finally it entered when info.signal ended its wait: that cleanup is cut short; a finally the cancel runs may wait", async () => {
  const clock = new VirtualClock();
  const cleanedUp: string[] = [];
  const { server, connect } = memoryServer(
    { clock },
    async function* (conn, info) {
      const name = yield* conn.recvLine();
      try {
        // "listens" ends its wait when shutdown begins; "ignores" does not.
        yield* conn.recvLine(name === "listens" ? { signal: info.signal } : {});
      } finally {
        yield* delay(300);
        cleanedUp.push(`${name} at ${clock.now()}`);
      }
    },
  );
  const clients = ["listens", "ignores"].map(() => connect());
  // Both handlers reach their second receive before shutdown begins.
  await run(
    (function* () {
      yield* clients[0].send("listens\n");
      yield* clients[1].send("ignores\n");
      yield* delay(10);
    })(),
    { clock },
  );
  const began = clock.now();
  await server.shutdown({ grace: 100 });
  for (const client of clients) client.close();
  assert.deepEqual(cleanedUp, [`ignores at ${began + 100 + 300}`]);
  assert.equal(server.stats.cancelled, 2);
});

Deno.test("a handler that lets the CancelledError of a child another coroutine cancelled propagate counts as cancelled, and is not reported", async () => {
  const clock = new VirtualClock();
  const reported: unknown[] = [];
  const sessions: Task<void>[] = [];
  const { server, connect } = memoryServer(
    { clock, onError: (error) => reported.push(error) },
    async function* () {
      const session = yield* spawn((async function* () {
        yield* delay(Infinity);
      })());
      sessions.push(session);
      yield* session.join(); // CancelledError once kicked
    },
  );
  const client = connect();
  await run(
    (function* () {
      yield* delay(10);
      sessions[0].cancel(); // kicked from elsewhere
      yield* delay(10);
    })(),
    { clock },
  );
  const { cancelled, failed, active } = server.stats;
  assert.deepEqual({ cancelled, failed, active }, {
    cancelled: 1,
    failed: 0,
    active: 0,
  });
  assert.deepEqual(reported, []);
  client.close();
  await server.shutdown();
});
