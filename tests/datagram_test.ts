import assert from "node:assert/strict";
import { type Datagram, serveDatagram } from "@corio/corio";

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
  const first = server.shutdown();
  assert.equal(server.shutdown(), first);
  await first;
  assert.equal(finallyRan, true);
  assert.equal(server.send("late", server.addr), false);
});

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

Deno.test("a datagram the socket refuses to send is counted and reported, and later sends go out", async () => {
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
  assert.match(errors[0], /Message too long/);
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
