import assert from "node:assert/strict";
import { type Datagram, delay, serveDatagram } from "@corio/corio";
import { VirtualClock } from "@corio/corio/testing";

const decoder = new TextDecoder();
const encoder = new TextEncoder();

async function receiveN(
  socket: Deno.DatagramConn,
  n: number,
): Promise<string[]> {
  const out: string[] = [];
  while (out.length < n) {
    const [data] = await socket.receive();
    out.push(decoder.decode(data));
  }
  return out;
}

Deno.test("serveDatagram() routes each sender's datagrams to one conversation, in order, and replies to the sender", async () => {
  const server = serveDatagram<Datagram, string>({
    hostname: "127.0.0.1",
    key: (d) => `${d.remoteAddr.port}`,
  }, async function* (inbox, first, server) {
    let count = 1;
    server.send(`start ${decoder.decode(first!.data)}`, first!.remoteAddr);
    for (let d; (d = yield* inbox.poll({ timeout: 2000 })) !== undefined;) {
      server.send(`${++count} ${decoder.decode(d.data)}`, d.remoteAddr);
      if (count === 50) return;
    }
  });
  const clients = [0, 1].map(() =>
    Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" })
  );
  try {
    const replies = clients.map((client) => receiveN(client, 50));
    for (let i = 0; i < 50; i++) {
      for (const client of clients) {
        await client.send(encoder.encode(`m${i}`), server.addr);
      }
    }
    for (const got of await Promise.all(replies)) {
      assert.equal(got[0], "start m0");
      assert.deepEqual(
        got.slice(1),
        Array.from({ length: 49 }, (_, i) => `${i + 2} m${i + 1}`),
      );
    }
  } finally {
    for (const client of clients) client.close();
    await server.shutdown();
  }
  assert.equal(server.stats.received, 100);
  assert.equal(server.conversations.stats.started, 2);
});

Deno.test("serveDatagram() drops what parse rejects, tells onParseError, and serves on", async () => {
  const rejected: string[] = [];
  const server = serveDatagram<string, string>({
    hostname: "127.0.0.1",
    parse: (d) => {
      const text = decoder.decode(d.data);
      if (text.startsWith("bad")) throw new SyntaxError(text);
      return text;
    },
    key: (text) => text,
    onParseError: (error, datagram) => {
      rejected.push((error as Error).message);
      server.send("400", datagram.remoteAddr);
    },
    // deno-lint-ignore require-yield
  }, function* (_, first, server) {
    server.send(`ok ${first}`, client.addr as Deno.NetAddr);
  });
  const client = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  try {
    await client.send(encoder.encode("bad one"), server.addr);
    assert.deepEqual(await receiveN(client, 1), ["400"]);
    await client.send(encoder.encode("good"), server.addr);
    assert.deepEqual(await receiveN(client, 1), ["ok good"]);
  } finally {
    client.close();
    await server.shutdown();
  }
  assert.deepEqual(rejected, ["bad one"]);
  assert.equal(server.stats.malformed, 1);
});

/**
 * Sends `server` one datagram from a client socket of its own, and waits
 * (up to 1 s) until the conversation it starts is running.
 */
async function startConversation(
  server: { addr: Deno.NetAddr; conversations: { size: number } },
): Promise<void> {
  const client = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  await client.send(encoder.encode("x"), server.addr);
  client.close();
  for (let i = 0; i < 200 && server.conversations.size === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("DatagramServer.shutdown() cancels conversations, closes the socket, and is idempotent", async () => {
  let finallyRan = false;
  const server = serveDatagram<Datagram, string>({
    hostname: "127.0.0.1",
    key: () => "one",
  }, function* (inbox) {
    try {
      yield* inbox.recv();
    } finally {
      finallyRan = true;
    }
  });
  await startConversation(server);
  const first = server.shutdown();
  assert.equal(server.shutdown(), first);
  await first;
  assert.equal(finallyRan, true);
  assert.equal(server.send("late", server.addr), false);
});

Deno.test("DatagramServer.shutdown() aborts conversations.signal at once: a conversation waiting with it says goodbye, and the goodbye goes out before the socket closes", async () => {
  const client = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const server = serveDatagram<Datagram, string>({
    hostname: "127.0.0.1",
    key: () => "one",
  }, function* (inbox, first, server) {
    server.send("hello", first!.remoteAddr);
    try {
      for (;;) yield* inbox.recv({ signal: server.conversations.signal });
    } catch (error) {
      if (error !== server.conversations.signal.reason) throw error;
    }
    server.send("goodbye", first!.remoteAddr);
  });
  try {
    await client.send(encoder.encode("x"), server.addr);
    assert.equal(await receiveWithin(client, 5000), "hello");
    const started = performance.now();
    // Without the signal the conversation waits out the grace, then is
    // cancelled, and says nothing.
    await server.shutdown({ grace: 2000 });
    assert.ok(performance.now() - started < 1000, "waited out the grace");
    assert.equal(await receiveWithin(client, 5000), "goodbye");
    assert.equal(server.conversations.stats.failed, 0);
  } finally {
    try {
      client.close();
    } catch {
      // Closed by receiveWithin at its limit: the test has failed already.
    }
  }
});

/** The next datagram's text; the socket is closed if none comes in `ms`. */
async function receiveWithin(
  socket: Deno.DatagramConn,
  ms: number,
): Promise<string> {
  const timer = setTimeout(() => socket.close(), ms);
  try {
    const [data] = await socket.receive();
    return decoder.decode(data);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("DatagramServer.send() bursts arrive complete and in call order, from a fresh socket on", async () => {
  // 150 datagrams: the first alone, then batches of 64. The kernel queues
  // them all for the client (small datagrams fit its receive buffer).
  const server = serveDatagram({ hostname: "127.0.0.1", key: () => "" });
  const client = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const to = client.addr as Deno.NetAddr;
  try {
    const got = receiveN(client, 150);
    for (let i = 0; i < 150; i++) assert.equal(server.send(`${i}`, to), true);
    assert.deepEqual(
      await got,
      Array.from({ length: 150 }, (_, i) => `${i}`),
    );
  } finally {
    client.close();
    await server.shutdown();
  }
  assert.equal(server.stats.sent, 150);
  assert.equal(server.stats.sendDropped, 0);
});

Deno.test("DatagramServer.send() keeps up when replies outnumber requests in a burst", async () => {
  // 200 requests queued at the server's socket are received back to back;
  // each gets three replies. A pump that awaited each send sent about one
  // per request received and overflowed a queue of 128.
  const server = serveDatagram({
    hostname: "127.0.0.1",
    key: () => "all",
    maxSendQueue: 128,
  }, async function* (inbox, first, server) {
    for (
      let d = first;
      d !== undefined;
      d = yield* inbox.poll({ timeout: 2000 })
    ) {
      for (let i = 0; i < 3; i++) server.send("reply", d.remoteAddr);
    }
  });
  const client = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  const replies = receiveN(client, 600).catch(() => []);
  try {
    await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) => client.send(encoder.encode(`${i}`), server.addr),
      ),
    );
    for (let i = 0; i < 400 && server.stats.sent < 600; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    assert.equal(server.stats.received, 200);
    assert.equal(server.stats.sendDropped, 0);
    assert.equal(server.stats.sent, 600);
  } finally {
    await server.shutdown();
    client.close();
    await replies;
  }
});

Deno.test("a datagram the socket refuses to send is counted and reported, naming its destination, and later sends go out", async () => {
  const errors: string[] = [];
  const server = serveDatagram<Datagram, string>({
    hostname: "127.0.0.1",
    key: () => "",
    onError: (error) => errors.push((error as Error).message),
  }, function* () {});
  const client = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  try {
    const to = client.addr as Deno.NetAddr;
    // Over UDP's 65,507-byte limit: the kernel says EMSGSIZE.
    assert.equal(server.send(new Uint8Array(70_000), to), true);
    assert.equal(server.send("after", to), true);
    assert.deepEqual(await receiveN(client, 1), ["after"]);
  } finally {
    client.close();
    await server.shutdown();
  }
  assert.equal(errors.length, 1);
  assert.match(
    errors[0],
    /^Cannot send to 127\.0\.0\.1:\d+: .*Message too long/,
  );
  assert.equal(server.stats.socketErrors, 1);
  assert.equal(server.stats.sent, 1);
});

Deno.test("DatagramServer: a signal aborted before it starts shuts it down at once; a negative grace is a RangeError", async () => {
  const server = serveDatagram<Datagram, string>({
    hostname: "127.0.0.1",
    key: () => "",
    signal: AbortSignal.abort(),
  }, function* () {});
  assert.equal(server.isStopping, true);
  await server.finished;
  assert.equal(server.send("late", server.addr), false);
  const running = serveDatagram<Datagram, string>({
    hostname: "127.0.0.1",
    key: () => "",
  }, function* () {});
  assert.throws(() => running.shutdown({ grace: -1 }), {
    name: "RangeError",
    message: "Cannot shut down: grace must be >= 0, got -1",
  });
  assert.equal(running.isStopping, false);
  await running.shutdown();
  assert.equal(running.isStopping, true);
});

Deno.test("serveDatagram() validates its options", () => {
  assert.throws(
    () => serveDatagram({ key: () => "", maxSendQueue: 0 }),
    RangeError,
  );
  assert.throws(
    () => serveDatagram({ key: () => "", shutdownGrace: -1 }),
    RangeError,
  );
  assert.throws(() => serveDatagram({ key: () => "" }, 5 as never), TypeError);
  assert.throws(() => serveDatagram({ key: () => "", port: 70_000 }), {
    name: "RangeError",
    message: "Cannot serve datagrams: port must be 0-65535, got 70000",
  });
});

Deno.test("a send queue that never empties stays bounded in memory", async () => {
  // In a process of its own, with --expose-gc: 400,000 one-byte datagrams
  // sent while the producer keeps the queue busy. Slots already sent used
  // to stay in the queue until it emptied (about 12 B each: 4.8 MB here).
  const code = `
    import { serveDatagram } from "${new URL("../mod.ts", import.meta.url)}";
    const server = serveDatagram({ hostname: "127.0.0.1", key: () => "" });
    const sink = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
    const data = new Uint8Array(1);
    let isStopping = false;
    const producer = (async () => {
      for (let turn = 1; !isStopping; turn++) {
        for (let k = 0; k < 8; k++) server.send(data, sink.addr);
        if (turn % 2000 === 0) await new Promise((r) => setTimeout(r, 0));
        else await null;
      }
    })();
    const heapAt = async (sent) => {
      while (server.stats.sent < sent) await new Promise((r) => setTimeout(r, 10));
      gc();
      gc();
      return Deno.memoryUsage().heapUsed;
    };
    const early = await heapAt(50_000);
    const late = await heapAt(450_000);
    isStopping = true;
    await producer;
    await server.shutdown();
    sink.close();
    console.log(late - early);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--unstable-net", "--v8-flags=--expose-gc", code],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, decoder.decode(out.stderr));
  const grew = Number(decoder.decode(out.stdout).trim().split("\n").at(-1));
  assert.ok(grew < 1_000_000, `the heap grew ${grew} B over 400,000 sends`);
});

/** True when this machine has an IPv6 loopback to test on. */
function hasIpv6Loopback(): boolean {
  try {
    Deno.listenDatagram({ hostname: "::1", port: 0, transport: "udp" })
      .close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "serveDatagram() on ::1 receives the largest IPv6 datagram whole (65,527 bytes)",
  ignore: !hasIpv6Loopback(),
}, async () => {
  let received!: (length: number) => void;
  const length = new Promise<number>((resolve) => received = resolve);
  // deno-lint-ignore require-yield
  function* handler(_inbox: unknown, first?: Datagram) {
    received(first!.data.length);
  }
  await using server = serveDatagram(
    { hostname: "::1", key: () => "one" },
    handler,
  );
  const client = Deno.listenDatagram({
    hostname: "::1",
    port: 0,
    transport: "udp",
  });
  try {
    await client.send(new Uint8Array(65_527), {
      transport: "udp",
      hostname: "::1",
      port: server.addr.port,
    });
    assert.equal(await length, 65_527);
  } finally {
    client.close();
  }
});

Deno.test("serveDatagram() on a VirtualClock: a conversation waiting for its next datagram holds the clock, as a socket does", async () => {
  const clock = new VirtualClock();
  const { promise: answered, resolve } = Promise.withResolvers<number>();
  const server = serveDatagram<Datagram, string>({
    hostname: "127.0.0.1",
    key: () => "one",
    clock,
  }, function* (inbox) {
    const start = clock.now();
    const next = yield* inbox.poll({ timeout: 10_000 });
    resolve(next === undefined ? -1 : clock.now() - start);
  });
  const client = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  try {
    await client.send(encoder.encode("1"), server.addr);
    // Real time passes with the next datagram in flight: virtual time
    // would otherwise jump to the poll's deadline.
    await new Promise((wake) => setTimeout(wake, 50));
    await client.send(encoder.encode("2"), server.addr);
    assert.equal(await answered, 0);
  } finally {
    client.close();
    await server.shutdown();
  }
});

Deno.test("DatagramServer.shutdown() without a grace gives conversations the server's shutdownGrace", async () => {
  const ends: string[] = [];
  const server = serveDatagram<Datagram, string>({
    hostname: "127.0.0.1",
    key: () => "one",
    shutdownGrace: 2000,
  }, function* () {
    try {
      yield* delay(100);
      ends.push("finished");
    } finally {
      ends.push("ended");
    }
  });
  await startConversation(server);
  await server.shutdown();
  assert.deepEqual(ends, ["finished", "ended"]);
});
