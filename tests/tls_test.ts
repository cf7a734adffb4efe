// TLS: serve({ cert, key }) and connect({ tls }), over loopback, with the
// test-only certificate in tests/fixtures/tls/ (see its README.md).

import assert from "node:assert/strict";
import {
  connect,
  ConnectError,
  ConnectionResetError,
  run,
  serve,
  TimeoutError,
  TlsHandshakeError,
} from "@corio/corio";
import type { Connection, Handler, ServeOptions } from "@corio/corio";

const fixture = (name: string) =>
  Deno.readTextFileSync(new URL(`./fixtures/tls/${name}`, import.meta.url));
const cert = fixture("cert.pem");
const key = fixture("key.pem");
const ca = fixture("ca.pem");

async function* echo(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv()) !== null;) {
    yield* conn.send(chunk);
  }
}

/** A configuration's list, frozen: connect() takes readonly arrays. */
const trusted: readonly string[] = Object.freeze([ca]);

/** Sends `text` over TLS and returns the echoed line. */
function tlsEcho(port: number, text: string, hostname = "127.0.0.1") {
  return run((async function* () {
    const conn = yield* connect({
      hostname,
      port,
      tls: { caCerts: trusted },
      timeout: 5000,
    });
    yield* conn.send(`${text}\n`);
    return yield* conn.recvLine({ timeout: 5000 });
  })());
}

/** A TLS server of `handler` on loopback whose errors go to `errors`. */
function tlsServerReporting(
  errors: unknown[],
  handler: Handler,
) {
  return serve({
    hostname: "127.0.0.1",
    cert,
    key,
    onError: (error) => errors.push(error),
  }, handler);
}

Deno.test("serve() with cert and key echoes over TLS to connect({ tls: { caCerts } })", async () => {
  await using server = serve({ hostname: "127.0.0.1", cert, key }, echo);
  assert.equal(server.addr.transport, "tcp");
  assert.equal(await tlsEcho(server.addr.port, "over tls"), "over tls");
  // The certificate names localhost too; serverName verifies a name other
  // than the address dialled.
  assert.equal(
    await tlsEcho(server.addr.port, "by name", "localhost"),
    "by name",
  );
  const byServerName = await run((async function* () {
    const conn = yield* connect({
      port: server.addr.port,
      tls: { caCerts: [ca], serverName: "localhost" },
      timeout: 5000,
    });
    yield* conn.send("sni\n");
    return yield* conn.recvLine({ timeout: 5000 });
  })());
  assert.equal(byServerName, "sni");
});

Deno.test("connect({ tls: true }) to a server whose CA it does not trust fails quickly with TlsHandshakeError", async () => {
  const errors: unknown[] = [];
  await using server = serve(
    { hostname: "127.0.0.1", cert, key, onError: (e) => errors.push(e) },
    echo,
  );
  const started = performance.now();
  const error = await run((async function* () {
    try {
      yield* connect({ port: server.addr.port, tls: true, timeout: 5000 });
    } catch (error) {
      return error;
    }
  })());
  const took = performance.now() - started;
  assert.ok(error instanceof TlsHandshakeError, String(error));
  assert.ok(error instanceof ConnectError);
  assert.equal(error.name, "TlsHandshakeError");
  assert.equal(error.reason, "tls");
  assert.equal(error.port, server.addr.port);
  assert.match(
    error.message,
    /^Cannot connect to 127\.0\.0\.1:\d+: TLS handshake failed: invalid peer certificate: UnknownIssuer$/,
  );
  assert.ok(error.cause instanceof Deno.errors.InvalidData);
  assert.ok(took < 2000, `took ${took} ms`);
  // The server saw a client gone: its handler failed on its first recv.
  await waitFor(() => server.stats.failed === 1);
  assert.equal(server.stats.acceptErrors, 0);
  assert.ok(errors[0] instanceof ConnectionResetError, String(errors[0]));
  assert.match(
    (errors[0] as Error).message,
    /^Cannot recv from 127\.0\.0\.1:\d+: the TLS handshake failed: received fatal alert: UnknownCA$/,
  );
});

Deno.test("connect({ tls }) with a serverName the certificate does not carry fails with TlsHandshakeError", async () => {
  await using server = serve({ hostname: "127.0.0.1", cert, key }, echo);
  const error = await run((async function* () {
    try {
      yield* connect({
        port: server.addr.port,
        tls: { caCerts: [ca], serverName: "example.com" },
        timeout: 5000,
      });
    } catch (error) {
      return error;
    }
  })());
  assert.ok(error instanceof TlsHandshakeError, String(error));
  assert.match(error.message, /certificate not valid for name "example\.com"/);
  await waitFor(() => server.stats.active === 0);
});

Deno.test("a plain TCP client of a TLS server is no accept error and does not disturb other clients", async () => {
  const errors: unknown[] = [];
  await using server = tlsServerReporting(errors, echo);
  const port = server.addr.port;
  // One that speaks plain text, one that connects and leaves, one that
  // connects and stays silent: none of them holds the others up.
  const plain = await Deno.connect({ hostname: "127.0.0.1", port });
  await plain.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
  const leaver = await Deno.connect({ hostname: "127.0.0.1", port });
  leaver.close();
  const silent = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    assert.equal(await tlsEcho(port, "still served"), "still served");
    await waitFor(() => server.stats.failed === 2);
    // The plain client gets no echo: the server hung up (with an alert).
    const buffer = new Uint8Array(1024);
    const bytes: number[] = [];
    for (let n; (n = await plain.read(buffer)) !== null;) {
      bytes.push(...buffer.subarray(0, n));
    }
    assert.notEqual(new TextDecoder().decode(new Uint8Array(bytes)), "GET");
  } finally {
    plain.close();
    silent.close();
  }
  await waitFor(() => server.stats.active === 0);
  assert.equal(server.stats.acceptErrors, 0);
  assert.equal(server.stats.completed, 1); // the TLS client
  // The silent one left too, mid-handshake: a client gone, like the leaver.
  assert.equal(server.stats.failed, 3);
  const messages = errors.map((error) => {
    assert.ok(error instanceof ConnectionResetError, String(error));
    return error.message.replace(/\d+: /, "PORT: ");
  }).sort();
  assert.deepEqual(messages, [
    "Cannot recv from 127.0.0.1:PORT: the TLS handshake failed: received corrupt message of type InvalidContentType",
    "Cannot recv from 127.0.0.1:PORT: the TLS handshake failed: unexpected end of file",
    "Cannot recv from 127.0.0.1:PORT: the TLS handshake failed: unexpected end of file",
  ]);
});

Deno.test("a handler that marks its connection active before the handshake still has a failed TLS handshake reported as one", async () => {
  const errors: unknown[] = [];
  await using server = tlsServerReporting(
    errors,
    async function* (conn: Connection) {
      conn.markActive(); // a relay's client, as markActive()'s example
      yield* echo(conn);
    },
  );
  const plain = await Deno.connect({
    hostname: "127.0.0.1",
    port: server.addr.port,
  });
  try {
    await plain.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
    await waitFor(() => errors.length === 1);
  } finally {
    plain.close();
  }
  assert.ok(errors[0] instanceof ConnectionResetError, String(errors[0]));
  assert.match(errors[0].message, /the TLS handshake failed/);
});

Deno.test("connect({ tls }) times out on a server that accepts TCP but never completes the handshake", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const started = performance.now();
  const error = await run((async function* () {
    try {
      yield* connect({
        port: listener.addr.port,
        tls: { caCerts: [ca] },
        timeout: 300,
      });
    } catch (error) {
      return error;
    }
  })());
  const took = performance.now() - started;
  assert.ok(error instanceof TimeoutError, String(error));
  assert.equal(error.op, "connect");
  assert.equal(error.timeout, 300);
  assert.match(error.message, /^Cannot connect to 127\.0\.0\.1:\d+:/);
  assert.ok(took >= 290 && took < 3000, `took ${took} ms`);
  // The handshake had begun: the silent server got the ClientHello (a TLS
  // handshake record, 0x16). Deno 2.9.6 keeps a client socket whose
  // handshake was cut short open until the handshake ends (see
  // src/_dial.ts), so the server's close here is what ends it.
  using conn = await accepted;
  const buffer = new Uint8Array(4096);
  const n = await conn.read(buffer);
  assert.ok(n !== null && n > 0 && buffer[0] === 0x16, `read ${n}`);
});

Deno.test("serve() with acceptQueues serves TLS on each queue's socket", async () => {
  await using server = serve(
    { hostname: "127.0.0.1", cert, key, acceptQueues: 2 },
    echo,
  );
  const lines = await Promise.all(
    Array.from({ length: 6 }, (_, i) => tlsEcho(server.addr.port, `q${i}`)),
  );
  assert.deepEqual(lines, ["q0", "q1", "q2", "q3", "q4", "q5"]);
});

Deno.test("serve() refuses cert without key, key without cert, and a cert that is not a string, with TypeError", () => {
  const handler = function* () {};
  const cases: [unknown, RegExp][] = [
    [{ cert }, /^Cannot serve TLS: cert needs its key \(PEM\)$/],
    [{ key }, /^Cannot serve TLS: key needs its cert \(PEM\)$/],
    [{ cert: 42, key }, /cert must be a PEM string/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => serve(options as ServeOptions, handler),
      (error) => error instanceof TypeError && message.test(error.message),
    );
  }
});

Deno.test("connect() refuses bad tls settings with TypeError, before any dial", () => {
  const cases: [unknown, RegExp][] = [
    [{ caCerts: "pem" }, /caCerts must be an array of PEM strings/],
    [{ serverName: "" }, /serverName must be a non-empty string/],
    [{ alpnProtocols: "h2" }, /alpnProtocols must be an array of protocol/],
    [{ alpnProtocols: [""] }, /alpnProtocols must be an array of protocol/],
    ["yes", /tls must be true, false or/],
  ];
  for (const [tls, message] of cases) {
    assert.throws(
      () => connect({ port: 1, tls: tls as true }),
      (error) => error instanceof TypeError && message.test(error.message),
    );
  }
});

Deno.test("ALPN: serve({ alpnProtocols }) and connect({ tls: { alpnProtocols } }) agree on a protocol, which handshake() tells both sides", async () => {
  const seen: (string | null)[] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    cert,
    key,
    alpnProtocols: ["h2", "http/1.1"],
  }, async function* (conn) {
    const { alpnProtocol } = yield* conn.handshake({ timeout: 5000 });
    seen.push(alpnProtocol);
    yield* conn.send(`${alpnProtocol}\n`);
  });
  const agreed = await run((async function* () {
    const agreed: (string | null)[] = [];
    for (const offer of [["http/1.1"], ["h2", "http/1.1"], undefined]) {
      const conn = yield* connect({
        hostname: "127.0.0.1",
        port: server.addr.port,
        tls: { caCerts: trusted, alpnProtocols: offer },
        timeout: 5000,
      });
      agreed.push((yield* conn.handshake()).alpnProtocol);
      agreed.push(yield* conn.recvLine({ timeout: 5000 }));
      conn.close();
    }
    return agreed;
  })());
  // Offered nothing, the client gets no protocol, and the server none.
  assert.deepEqual(agreed, ["http/1.1", "http/1.1", "h2", "h2", null, "null"]);
  assert.deepEqual(seen, ["http/1.1", "h2", null]);
});

Deno.test("ALPN: no protocol in common fails the handshake on both sides, typed", async () => {
  const errors: unknown[] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    cert,
    key,
    alpnProtocols: ["h2"],
    onError: (error) => errors.push(error),
  }, async function* (conn) {
    yield* conn.handshake({ timeout: 5000 });
  });
  const error = await run((async function* () {
    try {
      yield* connect({
        hostname: "127.0.0.1",
        port: server.addr.port,
        tls: { caCerts: trusted, alpnProtocols: ["smtp"] },
        timeout: 5000,
      });
    } catch (error) {
      return error;
    }
  })());
  assert.ok(error instanceof TlsHandshakeError, String(error));
  assert.equal(error.reason, "tls");
  await waitFor(() => errors.length === 1);
  assert.ok(errors[0] instanceof ConnectionResetError, String(errors[0]));
  assert.equal(errors[0].op, "handshake");
  assert.match(errors[0].message, /TLS handshake failed/);
});

Deno.test("handshake() with a client that never sends its hello times out, op handshake; on a plain TCP connection it gives no protocol at once", async () => {
  const outcomes: string[] = [];
  await using server = serve({
    hostname: "127.0.0.1",
    cert,
    key,
    alpnProtocols: ["h2"],
  }, async function* (conn) {
    try {
      yield* conn.handshake({ timeout: 100 });
      outcomes.push("agreed");
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
      outcomes.push(`${error.name} ${error.op} ${error.timeout}`);
    }
  });
  await using plain = serve({ hostname: "127.0.0.1" }, async function* (conn) {
    outcomes.push(`plain ${(yield* conn.handshake()).alpnProtocol}`);
  });
  const silent = await Deno.connect({ port: server.addr.port });
  const tcp = await Deno.connect({ port: plain.addr.port });
  try {
    await waitFor(() => outcomes.length === 2);
  } finally {
    silent.close();
    tcp.close();
  }
  assert.deepEqual(outcomes.sort(), [
    "TimeoutError handshake 100",
    "plain null",
  ]);
});

Deno.test("serve() refuses alpnProtocols without cert, or not a list of names, with TypeError", () => {
  const handler = function* () {};
  const cases: [unknown, RegExp][] = [
    [{ alpnProtocols: ["h2"] }, /alpnProtocols is for TLS servers/],
    [{ cert, key, alpnProtocols: "h2" }, /alpnProtocols must be an array/],
    [{ cert, key, alpnProtocols: [1] }, /alpnProtocols must be an array/],
  ];
  for (const [options, message] of cases) {
    assert.throws(
      () => serve(options as ServeOptions, handler),
      (error) => error instanceof TypeError && message.test(error.message),
    );
  }
});

/** Waits (a bounded number of turns, 5 s at most) until `condition()`. */
async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = performance.now() + 5000;
  while (!condition()) {
    assert.ok(performance.now() < deadline, "condition not met in 5 s");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
