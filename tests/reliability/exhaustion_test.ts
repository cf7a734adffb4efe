import assert from "node:assert/strict";
import {
  canRun,
  CONFIG,
  cpuTimeMs,
  encoder,
  fixture,
  LineReader,
  readLine,
  until,
  writeAll,
} from "./_helpers.ts";

const hasPrlimit = await canRun("prlimit", ["--nofile=64:64", "true"]);
if (!hasPrlimit) {
  console.warn("R2 skipped: prlimit is missing or not permitted");
}

const BACKOFF = 100;

/**
 * Starts R2's server (tests/fixtures/exhaustion_server.ts) with 64
 * descriptors and `mode` ("queues=N", "default"); once it listens, gives
 * it, its output readers and its port.
 */
async function startServer(mode: string) {
  const child = new Deno.Command("prlimit", {
    args: [
      "--nofile=64:64",
      Deno.execPath(),
      "run",
      "--allow-net",
      "--config",
      CONFIG,
      fixture("exhaustion_server.ts"),
      String(BACKOFF),
      mode,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const out = new LineReader(child.stdout);
  const err = new LineReader(child.stderr);
  const port = Number(
    /:(\d+)$/.exec(await out.waitFor(/^listening on /))![1],
  );
  return { child, out, err, port };
}

for (const queues of [1, 4]) {
  Deno.test({
    name:
      `R2: out of descriptors (nofile 64, 150 clients, acceptQueues ${queues}), the server backs off idle, recovers within back-off + 50 ms and serves all`,
    ignore: !hasPrlimit,
    async fn() {
      const { child, out, err, port } = await startServer(
        `queues=${queues}`,
      );
      const pid = Number(/^pid (\d+)$/.exec(await out.waitFor(/^pid /))![1]);

      const greetedAt: number[] = [];
      const clients = await Promise.all(
        Array.from(
          { length: 150 },
          () => Deno.connect({ hostname: "127.0.0.1", port }),
        ),
      );
      const greetings = clients.map((conn, i) =>
        readLine(conn).then((line) => {
          assert.equal(line, "hello");
          greetedAt[i] = performance.now();
        })
      );
      const greeted = () => greetedAt.filter((t) => t !== undefined).length;
      // Stuck: the server holds every descriptor it can get and the rest wait.
      await until(
        () => greeted() > 20 && err.lines.length > 0,
        10_000,
        "the server running out of descriptors",
      );
      let count = -1;
      await until(
        () => {
          const now = greeted();
          const isStable = now === count;
          count = now;
          return isStable;
        },
        5000,
        "the greeted count to settle",
      );
      const stuckAt = greeted();
      assert.ok(stuckAt < 150, "expected the limit to bite");

      // CPU while stuck, over one second, from /proc/PID/stat.
      const cpuBefore = await cpuTimeMs(pid);
      const wallBefore = performance.now();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const cpuShare = (await cpuTimeMs(pid) - cpuBefore) /
        (performance.now() - wallBefore);
      const reportsWhileStuck = err.lines.length;

      // Recovery: free one descriptor at a time (a handler ends) and time the
      // next greeting.
      const recoveries: number[] = [];
      const released = new Set<number>();
      for (let k = 0; k < 10; k++) {
        const i = greetedAt.findIndex((t, j) =>
          t !== undefined && !released.has(j)
        );
        released.add(i);
        const before = greeted();
        await writeAll(clients[i], encoder.encode("done\n"));
        assert.equal(await readLine(clients[i]), "bye");
        assert.equal(await readLine(clients[i]), null); // server closed: descriptor free
        const freedAt = performance.now();
        await until(
          () => greeted() > before,
          5000,
          "a waiting client to be accepted",
        );
        recoveries.push(
          Math.max(...greetedAt.filter((t) => t !== undefined)) - freedAt,
        );
      }
      // Then everyone is served: each client answers once greeted. (In
      // the order the server accepts them: with several accept queues that
      // is not the order they connected in, and a client left waiting for
      // its turn while greeted held its descriptor past the handler's 30 s
      // receive timeout.)
      await Promise.all(clients.map(async (conn, i) => {
        if (released.has(i)) return;
        await greetings[i];
        await writeAll(conn, encoder.encode("done\n"));
        assert.equal(await readLine(conn), "bye");
      }));
      await Promise.all(greetings);
      for (const conn of clients) conn.close();
      child.kill("SIGTERM");
      await out.done;
      await err.done;
      await child.status;
      const stats = JSON.parse(out.lines.at(-1)!);
      const figures = {
        stuckAt,
        cpuShare,
        recoveries,
        acceptErrors: stats.acceptErrors,
        reports: err.lines.length,
        reportsWhileStuck,
      };
      console.log("R2:", JSON.stringify(figures));
      assert.equal(stats.completed, 150);
      assert.ok(
        cpuShare < 0.10,
        `CPU while stuck ${(cpuShare * 100).toFixed(1)}%`,
      );
      assert.ok(
        Math.max(...recoveries) <= BACKOFF + 50,
        `recoveries ${recoveries}`,
      );
      // Rate-limited: at most one report per back-off while stuck (+1 slack).
      assert.ok(
        reportsWhileStuck <= 2 + 1000 / BACKOFF + 1,
        `reports ${reportsWhileStuck}`,
      );
    },
  });
}

Deno.test({
  name:
    "R2: out of descriptors with serve()'s own onError, the server prints its reports and serves on (Deno 2.9.6 panics formatting a stack then)",
  ignore: !hasPrlimit,
  async fn() {
    const { child, out, err, port } = await startServer("default");
    const clients = await Promise.all(
      Array.from(
        { length: 150 },
        () => Deno.connect({ hostname: "127.0.0.1", port }),
      ),
    );
    await err.waitFor(/AcceptError: Cannot accept on /);
    // Everyone is served, in turn, as earlier clients leave.
    await Promise.all(clients.map(async (conn) => {
      assert.equal(await readLine(conn), "hello");
      await writeAll(conn, encoder.encode("done\n"));
      assert.equal(await readLine(conn), "bye");
      conn.close();
    }));
    child.kill("SIGTERM");
    await out.done;
    await err.done;
    const status = await child.status;
    assert.ok(
      !err.lines.some((line) => line.includes("panicked")),
      err.lines.join("\n"),
    );
    assert.equal(status.code, 0);
    assert.equal(JSON.parse(out.lines.at(-1)!).completed, 150);
  },
});
