// Unix domain sockets: serve({ path }) and connect({ path }).

import assert from "node:assert/strict";
import {
  connect,
  ConnectError,
  type Connection,
  type ConnectionInfo,
  type ConnectOptions,
  Pool,
  run,
  serve,
  type ServeOptions,
  TimeoutError,
} from "@corio/corio";

async function* echo(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv()) !== null;) {
    yield* conn.send(chunk);
  }
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** A fresh directory for the test's socket files, removed afterwards. */
function tempDir(): { path: string } & Disposable {
  const path = Deno.makeTempDirSync({ prefix: "corio_unix_" });
  return {
    path,
    [Symbol.dispose]: () => Deno.removeSync(path, { recursive: true }),
  };
}

function unixEcho(path: string, text: string): Promise<string | null> {
  return run((async function* () {
    const conn = yield* connect({ path, timeout: 5000 });
    yield* conn.send(`${text}\n`);
    return yield* conn.recvLine({ timeout: 5000 });
  })());
}

Deno.test("serve({ path }) echoes to connect({ path }); addr, remoteAddr and descriptions name the socket", async () => {
  using dir = tempDir();
  const path = `${dir.path}/echo.sock`;
  const infos: ConnectionInfo<Deno.UnixAddr>[] = [];
  let described = "";
  await using server = serve({
    path,
    onAccept: (info) => void infos.push(info),
  }, async function* (conn) {
    described = String(conn);
    yield* echo(conn);
  });
  assert.deepEqual(server.addr, { transport: "unix", path });
  assert.equal(await unixEcho(path, "over unix"), "over unix");
  assert.equal(infos.length, 1);
  assert.equal(infos[0].localAddr.path, path);
  // A client's socket has no name: Deno gives null, whatever its type says.
  assert.equal(infos[0].remoteAddr.transport, "unix");
  assert.equal(infos[0].remoteAddr.path, null);
  assert.equal(described, `a client of unix:${path}`);
  const clientSide = await run((async function* () {
    const conn = yield* connect({ path, timeout: 5000 });
    return [String(conn), conn.remoteAddr, conn.localAddr] as const;
  })());
  assert.deepEqual(clientSide, [
    `unix:${path}`,
    { transport: "unix", path },
    { transport: "unix", path: null },
  ]);
});

Deno.test("a Unix socket handler's timeout names the socket", async () => {
  using dir = tempDir();
  const path = `${dir.path}/quiet.sock`;
  const errors: unknown[] = [];
  await using server = serve({
    path,
    recvTimeout: 50,
    onError: (error) => errors.push(error),
  }, echo);
  const closed = await run((async function* () {
    const conn = yield* connect({ path, timeout: 5000 });
    return yield* conn.recv({ timeout: 5000 });
  })());
  assert.equal(closed, null);
  assert.equal(server.stats.timeouts, 1);
  assert.ok(errors[0] instanceof TimeoutError);
  assert.equal(
    errors[0].message,
    `Cannot recv from a client of unix:${path}: timed out after 50 ms`,
  );
});

Deno.test("serve({ path }) removes the socket file on shutdown", async () => {
  using dir = tempDir();
  const path = `${dir.path}/gone.sock`;
  const server = serve({ path }, echo);
  assert.ok(Deno.lstatSync(path).isSocket);
  assert.equal(await unixEcho(path, "once"), "once");
  await server.shutdown();
  assert.equal(exists(path), false);
  // So the next run listens at once.
  await using _again = serve({ path }, echo);
  assert.equal(await unixEcho(path, "again"), "again");
});

Deno.test("serve({ path }) on an existing file throws AddrInUse and removes nothing; a stale socket is replaced once connect is refused", async () => {
  using dir = tempDir();
  const path = `${dir.path}/stale.sock`;
  // A crashed run's leftover: a socket file no process listens on. (A
  // hard link keeps the file when Deno's close removes the original.)
  const crashed = Deno.listen({ transport: "unix", path: `${path}.orig` });
  Deno.linkSync(`${path}.orig`, path);
  crashed.close();
  assert.ok(Deno.lstatSync(path).isSocket);
  const inUse = (error: unknown) =>
    error instanceof Deno.errors.AddrInUse &&
    error.message ===
      `Cannot serve on unix:${path}: a socket file is there (a server listens on it, or a crashed run left it): if connect({ path }) is refused, remove it`;
  assert.throws(() => serve({ path }, echo), inUse);
  assert.ok(Deno.lstatSync(path).isSocket, "the file was removed");
  // What the message advises: connect; refused means stale.
  const refused = await run((async function* () {
    try {
      yield* connect({ path, timeout: 5000 });
    } catch (error) {
      return error;
    }
  })());
  assert.ok(refused instanceof ConnectError, String(refused));
  assert.match(refused.message, /connection refused \(no server listens/);
  assert.equal(refused.reason, "refused");
  Deno.removeSync(path);
  await using _server = serve({ path }, echo);
  assert.equal(await unixEcho(path, "fresh"), "fresh");

  // A live server's path: the same error, and the live server goes on.
  assert.throws(() => serve({ path }, echo), inUse);
  assert.equal(await unixEcho(path, "still"), "still");

  // A file that is not a socket.
  const file = `${dir.path}/notes.txt`;
  Deno.writeTextFileSync(file, "keep me");
  assert.throws(
    () => serve({ path: file }, echo),
    (error) =>
      error instanceof Deno.errors.AddrInUse &&
      /the path exists and is not a socket$/.test(error.message),
  );
  assert.equal(Deno.readTextFileSync(file), "keep me");
});

Deno.test("connect({ path }) to a missing or dead socket throws ConnectError naming the path", async () => {
  using dir = tempDir();
  const missing = `${dir.path}/missing.sock`;
  const error = await run((async function* () {
    try {
      yield* connect({ path: missing, timeout: 5000 });
    } catch (error) {
      return error;
    }
  })());
  assert.ok(error instanceof ConnectError, String(error));
  assert.equal(error.path, missing);
  assert.equal(
    error.message,
    `Cannot connect to unix:${missing}: no such socket file`,
  );
  assert.equal(error.reason, "no-socket-file");
  assert.ok(error.cause instanceof Deno.errors.NotFound);
});

Deno.test("connect({ path }) to a regular file says it is not a socket (reason no-socket-file), not a dead server's socket to remove", async () => {
  using dir = tempDir();
  const file = `${dir.path}/precious.conf`;
  Deno.writeTextFileSync(file, "keep me");
  const error = await run((async function* () {
    try {
      yield* connect({ path: file, timeout: 5000 });
    } catch (error) {
      return error;
    }
  })());
  assert.ok(error instanceof ConnectError, String(error));
  assert.equal(
    error.message,
    `Cannot connect to unix:${file}: connection refused: the path is not a socket`,
  );
  assert.equal(error.reason, "no-socket-file");
  assert.equal(Deno.readTextFileSync(file), "keep me");
});

Deno.test("serve() and connect() refuse path mixed with TCP options, with TypeError", () => {
  const handler = function* () {};
  const serveCases: [unknown, RegExp][] = [
    [{ path: "/tmp/x.sock", port: 80 }, /port is for TCP and TLS servers/],
    [{ path: "/tmp/x.sock", hostname: "::" }, /hostname is for TCP/],
    [{ path: "/tmp/x.sock", cert: "c", key: "k" }, /cert is for TCP/],
    [{ path: "/tmp/x.sock", acceptQueues: 2 }, /acceptQueues is for TCP/],
    [{ path: "" }, /path must be a non-empty string/],
  ];
  for (const [options, message] of serveCases) {
    assert.throws(
      () => serve(options as ServeOptions, handler),
      (error) => error instanceof TypeError && message.test(error.message),
    );
  }
  const connectCases: [unknown, RegExp][] = [
    [{ path: "/tmp/x.sock", port: 80 }, /port is for TCP, not with path/],
    [{ path: "/tmp/x.sock", tls: true }, /tls is for TCP/],
    [{ path: 7 }, /path must be a non-empty string/],
  ];
  for (const [options, message] of connectCases) {
    assert.throws(
      () => connect(options as ConnectOptions),
      (error) => error instanceof TypeError && message.test(error.message),
    );
  }
});

Deno.test("the option types make path with port, and cert without key, type errors", () => {
  const handler = function* () {};
  // Never run: `deno check` checks the expectations.
  const typeChecks = () => {
    // @ts-expect-error: path and port are different kinds of server
    serve({ path: "/tmp/x.sock", port: 80 }, handler);
    // @ts-expect-error: cert needs key
    serve({ port: 443, cert: "pem" }, handler);
    // @ts-expect-error: path and tls do not mix
    connect({ path: "/tmp/x.sock", tls: true });
    // @ts-expect-error: a Unix server's info has no hostname
    serve({ path: "/tmp/x.sock" }, (_conn, info) => info.remoteAddr.hostname);
    // deno-lint-ignore require-yield
    serve({ path: "/tmp/x.sock" }, function* (_conn, info) {
      // @ts-expect-error: a Unix client's socket has no name: path is null
      const path: string = info.remoteAddr.path;
      const named: string | null = info.remoteAddr.path;
      return [path, named];
    });
  };
  assert.equal(typeof typeChecks, "function");
});

Deno.test("a Pool over a Unix socket lends one connection in turn and names the socket in its own errors", async () => {
  using dir = tempDir();
  const path = `${dir.path}/pool.sock`;
  await using server = serve({ path }, echo);
  await using pool = new Pool({ connect: { path }, max: 1 });
  const replies = await run((async function* () {
    const out: (string | null)[] = [];
    for (const text of ["one", "two"]) {
      using lease = yield* pool.acquire({ timeout: 5000 });
      yield* lease.conn.send(`${text}\n`);
      out.push(yield* lease.conn.recvLine({ timeout: 5000 }));
    }
    return out;
  })());
  assert.deepEqual(replies, ["one", "two"]);
  assert.equal(pool.stats.created, 1);
  assert.equal(server.stats.accepted, 1);
  // Its own errors (here: closed) name it as connect() does.
  await pool.close();
  await assert.rejects(
    run((function* () {
      yield* pool.acquire();
    })()),
    (error: Error) => error.message.includes(`unix:${path}`),
  );
});

Deno.test("serve({ path }) errors name the socket: a missing directory, a path too long", () => {
  using dir = tempDir();
  const missing = `${dir.path}/no/such/dir/app.sock`;
  assert.throws(
    () => serve({ path: missing }, echo),
    (error: Error) =>
      error instanceof Deno.errors.NotFound &&
      error.message.startsWith(`Cannot serve on unix:${missing}: `),
  );
  const long = `${dir.path}/${"x".repeat(120)}.sock`;
  assert.throws(
    () => serve({ path: long }, echo),
    (error: Error) =>
      error.message.startsWith(`Cannot serve on unix:${long}: `),
  );
});

Deno.test("serve({ path }) with a relative path listens at it in the working directory of the start, and removes that file at shutdown, wherever the process is by then", async () => {
  using first = tempDir();
  using second = tempDir();
  const cwd = Deno.cwd();
  Deno.chdir(first.path);
  let server;
  try {
    server = serve({ path: "app.sock" }, echo);
  } finally {
    Deno.chdir(cwd);
  }
  const absolute = `${Deno.realPathSync(first.path)}/app.sock`;
  assert.equal(server.addr.path, absolute);
  assert.equal(await unixEcho(absolute, "relative"), "relative");
  // Another file of the same name where the process has moved since.
  Deno.writeTextFileSync(`${second.path}/app.sock`, "not a socket");
  Deno.chdir(second.path);
  try {
    await server.shutdown();
  } finally {
    Deno.chdir(cwd);
  }
  assert.equal(exists(absolute), false);
  assert.equal(exists(`${second.path}/app.sock`), true);
});
