import assert from "node:assert/strict";
import {
  type Connection,
  ConnectionClosedError,
  ConnectionResetError,
  serve,
} from "@corio/corio";
import {
  canRun,
  encoder,
  fixture,
  readLine,
  until,
  writeAll,
} from "./_helpers.ts";

const hasNode = await canRun("node", ["--version"]);
if (!hasNode) {
  console.warn(
    "R7 reset test skipped: node is not installed (Deno cannot send a bare RST)",
  );
}

const N = 100;

Deno.test({
  name:
    "R7: a peer reset in the middle of a line is a ConnectionResetError, never a truncated line",
  ignore: !hasNode,
  async fn() {
    const outcomes: string[] = [];
    await using server = serve(
      { hostname: "127.0.0.1", port: 0, onError() {} },
      async function* (conn: Connection) {
        try {
          const line = yield* conn.recvLine();
          outcomes.push(`line: ${line}`);
        } catch (error) {
          outcomes.push((error as Error).name);
        }
      },
    );
    const { stdout, success } = await new Deno.Command("node", {
      args: [fixture("reset_client.mjs"), String(server.addr.port), String(N)],
    }).output();
    assert.ok(success, new TextDecoder().decode(stdout));
    await until(
      () => outcomes.length === N,
      10_000,
      "every handler to see the reset",
    );
    const resets = outcomes.filter((o) => o === "ConnectionResetError").length;
    console.log("R7 reset mid-line:", resets, "of", N);
    assert.deepEqual(outcomes, Array(N).fill("ConnectionResetError"));
  },
});

Deno.test("R7: after a half-close the request is read to EOF and the reply still arrives", async () => {
  await using server = serve(
    { hostname: "127.0.0.1", port: 0 },
    async function* (conn: Connection) {
      const request = yield* conn.recvLine();
      assert.equal(yield* conn.recvLine(), null); // the peer's FIN
      yield* conn.send(`reply to ${request}\n`);
    },
  );
  let replies = 0;
  await Promise.all(Array.from({ length: N }, async (_, i) => {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    await writeAll(conn, encoder.encode(`request ${i}\n`));
    await conn.closeWrite();
    if (await readLine(conn) === `reply to request ${i}`) replies++;
    assert.equal(await readLine(conn), null);
    conn.close();
  }));
  console.log("R7 half-close:", replies, "of", N);
  assert.equal(replies, N);
});

Deno.test("R7: writing after the peer closed fails with typed errors, within three sends", async () => {
  const outcomes: { sendsBeforeError: number; first: string; after: string }[] =
    [];
  await using server = serve(
    { hostname: "127.0.0.1", port: 0, onError() {} },
    async function* (conn: Connection) {
      assert.equal(yield* conn.recv(), null); // the peer is gone
      let sends = 0;
      let first = "none";
      try {
        for (; sends < 100; sends++) yield* conn.send(new Uint8Array(1024));
      } catch (error) {
        first = (error as Error).name;
        assert.ok(error instanceof ConnectionResetError);
      }
      let after = "none";
      try {
        yield* conn.send("again");
      } catch (error) {
        after = (error as Error).name;
        assert.ok(
          error instanceof ConnectionResetError ||
            error instanceof ConnectionClosedError,
        );
      }
      outcomes.push({ sendsBeforeError: sends, first, after });
    },
  );
  for (let i = 0; i < N; i++) {
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: server.addr.port,
    });
    conn.close();
  }
  await until(() => outcomes.length === N, 10_000, "every handler to finish");
  const worst = Math.max(...outcomes.map((o) => o.sendsBeforeError));
  console.log(
    "R7 write after close:",
    JSON.stringify({ worst, sample: outcomes[0] }),
  );
  assert.ok(outcomes.every((o) => o.first === "ConnectionResetError"));
  assert.ok(
    worst <= 3,
    `a send succeeded ${worst} times after the peer closed`,
  );
});
