// memoryServer(): serve()'s accept loop, cap, timeouts and shutdown over
// memory connections, on the virtual clock, exactly.
import assert from "node:assert/strict";
import { type Connection, delay, run } from "@corio/corio";
import { memoryServer, VirtualClock } from "@corio/corio/testing";

/** Each client's first line, read in turn; each client closed after it. */
function* firstLines(clients: Connection[]) {
  const lines = [];
  for (const client of clients) {
    lines.push(yield* client.recvLine());
    client.close();
  }
  return lines;
}

Deno.test("memoryServer(): at the cap a client waits, as in a backlog, and is served when a place frees", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnections: 2 },
    function* (conn, info) {
      yield* conn.send(`${info.id} at ${clock.now()}\n`);
      yield* delay(50);
    },
  );
  const lines = await run(
    firstLines([connect(), connect(), connect()]),
    { clock },
  );
  await server.shutdown({ grace: 100 });
  assert.deepEqual(lines, ["1 at 0", "2 at 0", "3 at 50"]);
  assert.equal(server.stats.accepted, 3);
  assert.equal(server.stats.completed, 3);
});

Deno.test("memoryServer(): the server's recvTimeout ends a silent client's handler at exactly its time, counted in stats", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, recvTimeout: 3000, onError: () => {} },
    function* (conn) {
      yield* conn.recv();
    },
  );
  const ended = await run(
    (function* () {
      const client = connect();
      try {
        yield* client.recv(); // the server's end closes under it
        return clock.now();
      } finally {
        client.close();
      }
    })(),
    { clock },
  );
  await server.shutdown();
  assert.equal(ended, 3000);
  assert.equal(server.stats.timeouts, 1);
  assert.equal(server.stats.failed, 1);
});

Deno.test("memoryServer(): shutdown aborts info.signal at once, cancels the rest at the grace, and refuses later clients", async () => {
  const clock = new VirtualClock();
  const log: string[] = [];
  const { server, connect } = memoryServer({ clock }, function* (conn, info) {
    if (info.id === 1) {
      try {
        yield* conn.recv({ signal: info.signal });
      } catch {
        log.push(`1 told to stop at ${clock.now()}`);
        yield* conn.send("bye\n");
      }
      return;
    }
    try {
      yield* conn.recv(); // deaf to the signal
    } finally {
      log.push(`2 cancelled at ${clock.now()}`);
    }
  });
  const clients: Connection[] = [];
  const seen = await run(
    (function* () {
      clients.push(connect(), connect());
      yield* delay(10);
      const shutdown = server.shutdown({ grace: 1000 });
      const bye = yield* clients[0].recvLine();
      const late = connect();
      clients.push(late);
      const refused = yield* late.recv();
      yield* clients[1].recv(); // until the cancel closes it
      return { bye, refused, closedAt: clock.now(), shutdown };
    })(),
    { clock },
  );
  await seen.shutdown;
  for (const client of clients) client.close();
  assert.equal(seen.bye, "bye");
  assert.equal(seen.refused, null);
  assert.equal(seen.closedAt, 1010);
  assert.deepEqual(log, ["1 told to stop at 10", "2 cancelled at 1010"]);
  assert.equal(server.stats.cancelled, 1);
  assert.equal(server.stats.active, 0);
});

Deno.test("memoryServer(): a connection's local address is the server's addr, its remote address the client's", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer({ clock }, function* (conn, info) {
    yield* conn.send(
      `${info.localAddr.port} ${(info.remoteAddr as Deno.NetAddr).port}\n`,
    );
  });
  const client = connect();
  const line = await run(
    (function* () {
      const line = yield* client.recvLine();
      client.close();
      return line!;
    })(),
    { clock },
  );
  const [local, remote] = line.split(" ").map(Number);
  await server.shutdown();
  assert.equal(local, server.addr.port);
  assert.equal((client.remoteAddr as Deno.NetAddr).port, server.addr.port);
  assert.equal(remote, (client.localAddr as Deno.NetAddr).port);
  assert.notEqual(client.remoteAddr, server.addr); // a copy each, not shared
  const another = memoryServer({ clock }, function* () {}).server;
  assert.notEqual(another.addr.port, server.addr.port);
  await another.shutdown();
});

Deno.test("memoryServer(): a client admitted at the cap that shutdown came before reads the end of the stream, and counts as accepted and cancelled", async () => {
  // Time stands still until the stop: no eviction meanwhile.
  const clock = new VirtualClock({ autojump: false });
  let admitted = 0;
  const { server, connect } = memoryServer(
    {
      clock,
      maxConnections: 1,
      evictAfter: 1000,
      onAccept: () => void admitted++,
    },
    function* (conn) {
      yield* conn.recv();
    },
  );
  const clients = [connect(), connect(), connect()];
  await clock.whenIdle();
  const stopping = server.shutdown({ grace: 0 });
  const ends = await run(
    (function* () {
      return [yield* clients[1].recv(), yield* clients[2].recv()];
    })(),
    { clock },
  );
  await stopping;
  for (const client of clients) client.close();
  assert.deepEqual(ends, [null, null]);
  const stats = server.stats;
  assert.equal(admitted, 2); // the first, and the one held at the cap
  assert.equal(stats.accepted, 2);
  assert.equal(stats.cancelled, 2);
});

Deno.test("memoryServer(): a client's hostname is its address, and maxConnectionsPerPeer counts clients by it", async () => {
  const clock = new VirtualClock();
  const { server, connect } = memoryServer(
    { clock, maxConnectionsPerPeer: 1 },
    function* (conn, info) {
      yield* conn.send(`${info.remoteAddr.hostname}\n`);
      yield* delay(100);
    },
  );
  const lines = await run(
    firstLines([
      connect({ hostname: "10.0.0.7" }),
      connect({ hostname: "10.0.0.7" }), // over the peer's limit: closed
      connect({ hostname: "10.0.0.8" }),
      connect(),
    ]),
    { clock },
  );
  await server.shutdown({ grace: 100 });
  assert.deepEqual(lines, ["10.0.0.7", null, "10.0.0.8", "memory"]);
  assert.equal(server.stats.peerLimited, 1);
});

Deno.test("shutdown() without a grace gives handlers the server's shutdownGrace; shutdown({ grace: 0 }) cancels at once", async () => {
  const ends: string[] = [];
  for (const grace of [undefined, 0]) {
    const clock = new VirtualClock();
    const { server, connect } = memoryServer(
      { clock, shutdownGrace: 300 },
      function* (conn) {
        try {
          yield* conn.send("ready\n");
          yield* delay(200);
          ends.push(`finished at ${clock.now()}`);
        } finally {
          if (clock.now() < 200) ends.push(`cancelled at ${clock.now()}`);
        }
      },
    );
    const client = connect();
    await run(
      (function* () {
        yield* client.recvLine();
      })(),
      { clock },
    );
    await server.shutdown(grace === undefined ? undefined : { grace });
    client.close();
  }
  assert.deepEqual(ends, ["finished at 200", "cancelled at 0"]);
});
