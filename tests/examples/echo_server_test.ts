import assert from "node:assert/strict";
import { exchange, startExample } from "./_example.ts";

const fixture = (name: string) =>
  new URL(`../fixtures/tls/${name}`, import.meta.url).pathname;

Deno.test("examples/echo_server.ts echoes, drops a silent client after 3 s, and stops on SIGTERM", async () => {
  const server = await startExample("echo_server.ts", ["--allow-net"]);
  try {
    const payload = new Uint8Array(100_000).map(() =>
      Math.floor(Math.random() * 256)
    );
    const echoed = await exchange(server.port, payload, payload.length);
    assert.deepEqual(echoed, payload);

    // Seed 002's 3 s recv timeout: a silent client is disconnected.
    const silent = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    const started = performance.now();
    const n = await silent.read(new Uint8Array(10));
    const waited = performance.now() - started;
    silent.close();
    assert.equal(n, null);
    assert.ok(waited >= 2900 && waited < 10_000, `closed after ${waited} ms`);
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    assert.match(lines.join("\n"), /stopped: .*"timeouts":1/);
  }
});

Deno.test("examples/echo_server.ts serves at most 100 connections at once; the next is served when one leaves", async () => {
  const server = await startExample("echo_server.ts", ["--allow-net"]);
  const clients: Deno.Conn[] = [];
  const byte = new Uint8Array(1);
  /** Sends one byte and resolves when it comes back (or at EOF). */
  const ping = async (conn: Deno.Conn) => {
    await conn.write(new Uint8Array([42]));
    return await conn.read(byte);
  };
  try {
    for (let i = 0; i < 100; i++) {
      clients.push(
        await Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      );
    }
    // All 100 are served: each gets its echo.
    assert.deepEqual(
      await Promise.all(clients.map(ping)),
      clients.map(() => 1),
    );
    const waiting = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    clients.push(waiting);
    const echo = ping(waiting);
    // Well inside the 3 s receive timeout that would free a slot by itself.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const early = await Promise.race([
      echo.then(() => "echoed"),
      new Promise((resolve) => timer = setTimeout(resolve, 500, "waiting")),
    ]);
    clearTimeout(timer);
    assert.equal(early, "waiting", "the 101st connection was served at once");
    clients.shift()!.close();
    assert.equal(await echo, 1);
  } finally {
    for (const conn of clients) conn.close();
    const { code } = await server.stop();
    assert.equal(code, 0);
  }
});

Deno.test("examples/echo_server.ts --cert --key echoes over TLS", async () => {
  const server = await startExample(
    "echo_server.ts",
    ["--allow-net", "--allow-read"],
    ["--cert", fixture("cert.pem"), "--key", fixture("key.pem")],
  );
  try {
    const echoed = await exchange(
      () =>
        Deno.connectTls({
          hostname: "127.0.0.1",
          port: server.port,
          caCerts: [Deno.readTextFileSync(fixture("ca.pem"))],
        }),
      "over tls",
      8,
    );
    assert.equal(new TextDecoder().decode(echoed), "over tls");
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    assert.match(lines.join("\n"), /stopped: .*"completed":1/);
  }
});

Deno.test("examples/echo_server.ts --unix PATH echoes on a Unix socket and removes it when stopped", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "corio_echo_" });
  const path = `${dir}/echo.sock`;
  try {
    const server = await startExample(
      "echo_server.ts",
      ["--allow-net", "--allow-read", "--allow-write"],
      ["--unix", path],
    );
    try {
      assert.equal(server.path, path);
      const echoed = await exchange(
        () => Deno.connect({ transport: "unix", path }),
        "over unix",
        9,
      );
      assert.equal(new TextDecoder().decode(echoed), "over unix");
    } finally {
      const { code } = await server.stop();
      assert.equal(code, 0);
    }
    assert.throws(() => Deno.lstatSync(path), Deno.errors.NotFound);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("examples/echo_server.ts --cert without --key exits 2", async () => {
  const path = new URL("../../examples/echo_server.ts", import.meta.url)
    .pathname;
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", path, "--port", "0", "--cert", "c.pem"],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.equal(code, 2);
  assert.match(
    new TextDecoder().decode(stderr),
    /--cert and --key go together/,
  );
});

Deno.test("examples/echo_server.ts --deny ADDR refuses that address's clients, as seed 002's connection factory may, and logs each", async () => {
  const server = await startExample("echo_server.ts", ["--allow-net"], [
    "--deny",
    "127.0.0.1",
  ]);
  let port = 0;
  try {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.port,
    });
    try {
      port = conn.localAddr.port;
      await conn.write(new TextEncoder().encode("hello")).catch(() => {});
      assert.equal(await conn.read(new Uint8Array(10)).catch(() => null), null);
    } finally {
      conn.close();
    }
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    assert.equal(lines[0], `refused 1 from 127.0.0.1:${port}`);
    assert.match(lines[1], /^stopped: .*"refused":1,/);
  }
});

Deno.test("examples/echo_server.ts --deny serves clients from other addresses", async () => {
  const server = await startExample("echo_server.ts", ["--allow-net"], [
    "--deny",
    "192.0.2.1",
  ]);
  try {
    const echoed = await exchange(server.port, "not denied", 10);
    assert.equal(new TextDecoder().decode(echoed), "not denied");
  } finally {
    const { code, lines } = await server.stop();
    assert.equal(code, 0);
    assert.match(lines.join("\n"), /"refused":0,.*"completed":1/);
  }
});

Deno.test("examples/echo_server.ts --backlog N sets the kernel's accept queue: past the 100 served and N waiting, a connect gets no answer", async () => {
  // The seed's backlog of 30, made small to count: Linux queues N + 1
  // connections, and the server holds one more at the cap (evictAfter).
  const backlog = 3;
  const server = await startExample("echo_server.ts", ["--allow-net"], [
    "--backlog",
    String(backlog),
  ]);
  const conns: Deno.Conn[] = [];
  try {
    // One at a time, each echoing before the next connects: a queue of 3
    // would overflow if they all came at once.
    for (let i = 0; i < 100; i++) {
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
      });
      conns.push(conn);
      await conn.write(new Uint8Array([1]));
      assert.equal(await conn.read(new Uint8Array(1)), 1);
    }
    let waiting = 0;
    for (; waiting < 20; waiting++) {
      const timeout = AbortSignal.timeout(300);
      const conn = await Deno.connect({
        hostname: "127.0.0.1",
        port: server.port,
        signal: timeout,
      }).catch(() => null);
      if (conn === null) break;
      conns.push(conn);
    }
    assert.ok(
      waiting >= backlog && waiting <= backlog + 2,
      `${waiting} connects completed past the cap`,
    );
  } finally {
    for (const conn of conns) conn.close();
    const { code } = await server.stop();
    assert.equal(code, 0);
  }
});
