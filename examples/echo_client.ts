/**
 * Seed 001's client model against `echo_server.ts`: one coroutine that
 * connects (and reconnects on failure, with back-off), sends, receives,
 * processes the reply, and closes when done — all in blocking style.
 *
 *     deno run --allow-net examples/echo_client.ts [--host 127.0.0.1] [--port 9999] [--count 5]
 *
 * Flags: `--retries N` connection attempts in a row before giving up
 * (default 10); `--timeout MS` for connect and each reply (default 3000);
 * `--pause MS` between messages (default 0: past the server's 3 s receive
 * timeout, it drops the connection, and the client reconnects).
 * Prints one line per step; exits 1 if it gave up.
 *
 * A connection that breaks (refused, reset, timed out, or closed by the
 * server before the whole echo line came back) is replaced and the message
 * sent again, after a back-off that doubles from 100 ms up to 1 s for each
 * failure in a row; an echo ends the run of failures.
 *
 * @module
 */

import {
  connect,
  ConnectError,
  type Connection,
  ConnectionClosedError,
  ConnectionResetError,
  delay,
  IncompleteReadError,
  run,
  TimeoutError,
} from "@corio/corio";
import { parseFlags, SERVER_PORT_RANGE } from "./_flags.ts";

/** What the client is asked to do. */
export interface EchoClientOptions {
  hostname: string;
  port: number;
  count: number;
  retries: number;
  timeout: number;
  pause: number;
  log: (line: string) => void;
}

/**
 * Failures after which a new connection may succeed. An echo cut off by
 * the end of the stream (`IncompleteReadError`) is a connection closed
 * mid-reply: as broken as one closed before its first byte.
 */
function isTransient(error: unknown): boolean {
  return error instanceof ConnectError || error instanceof TimeoutError ||
    error instanceof ConnectionResetError ||
    error instanceof ConnectionClosedError ||
    error instanceof IncompleteReadError;
}

/**
 * The failures since the last echo: `attempts` the connects (a connection
 * that broke before an echo counts too), `backoffs` the waits.
 */
interface Failures {
  attempts: number;
  backoffs: number;
}

/** The next back-off: 100 ms, doubling with each one in a row, up to 1 s. */
function nextBackoff(failures: Failures): number {
  return Math.min(100 * 2 ** failures.backoffs++, 1000);
}

/** Connects, retrying with back-off. */
function* connectWithRetry(
  options: EchoClientOptions,
  failures: Failures = { attempts: 0, backoffs: 0 },
) {
  const { hostname, port, timeout } = options;
  for (;;) {
    failures.attempts++;
    try {
      const conn = yield* connect({ hostname, port, timeout });
      options.log(`connected to ${conn.peer}`);
      return conn;
    } catch (error) {
      if (!isTransient(error) || failures.attempts >= options.retries) {
        throw error;
      }
      const backoff = nextBackoff(failures);
      options.log(
        `connect failed (${
          (error as Error).message
        }); retrying in ${backoff} ms`,
      );
      yield* delay(backoff);
    }
  }
}

/**
 * The client coroutine: sends `count` messages, one at a time, and checks
 * each echo. A broken connection is replaced and the message sent again.
 * Returns how many messages were echoed and how often it reconnected.
 */
export async function* echoClient(options: EchoClientOptions) {
  let current: Connection | null = null;
  let reconnects = 0;
  let failures: Failures = { attempts: 0, backoffs: 0 };
  // A connection that breaks before an echo is a failed attempt: it counts
  // against --retries and waits its back-off, or a server that accepts and
  // closes at once would have us reconnect for ever, as fast as we can.
  function* reconnectAfter(conn: Connection, why: string, error: unknown) {
    if (failures.attempts >= options.retries) throw error;
    const backoff = nextBackoff(failures);
    options.log(`${why}; reconnecting in ${backoff} ms`);
    conn.close();
    current = null;
    reconnects++;
    yield* delay(backoff);
  }
  for (let i = 1; i <= options.count;) {
    const conn: Connection = current ??= yield* connectWithRetry(
      options,
      failures,
    );
    const message = `message ${i} of ${options.count}`;
    try {
      const started = performance.now();
      yield* conn.send(message + "\n"); // send
      const reply = yield* conn.recvLine({ // receive: a whole line, or throw
        timeout: options.timeout,
        requireNewline: true,
      });
      if (reply === null) {
        const closed = new ConnectionClosedError(
          "recvLine",
          `from ${conn.peer}`,
        );
        yield* reconnectAfter(conn, "the server closed the connection", closed);
        continue; // send the same message again
      }
      // process: check the echo and time the round trip
      const ms = (performance.now() - started).toFixed(2);
      if (reply !== message) throw new Error(`bad echo: ${reply}`);
      options.log(`sent "${message}", got it back in ${ms} ms`);
      failures = { attempts: 0, backoffs: 0 };
      i++;
      if (options.pause > 0 && i <= options.count) yield* delay(options.pause);
    } catch (error) {
      if (!isTransient(error)) throw error;
      const why = `connection lost (${(error as Error).message})`;
      yield* reconnectAfter(conn, why, error); // then send the message again
    }
  }
  current?.close(); // close when done (run() would close it too)
  return { echoed: options.count, reconnects };
}

if (import.meta.main) {
  const flags = parseFlags({
    host: "127.0.0.1",
    port: 9999,
    count: 5,
    retries: 10,
    timeout: 3000,
    pause: 0,
  }, {
    port: SERVER_PORT_RANGE,
    count: { integer: true, min: 0 },
    retries: { integer: true, min: 1, orInfinity: true },
    // A connect with no time at all never succeeds.
    timeout: { above: 0, orInfinity: true },
    pause: { min: 0 },
  }, {
    about:
      `Seed 001's client model against echo_server.ts: connects (again, with
back-off, when the connection breaks), sends each message, checks its echo,
closes.

  --host ADDR    the server's address
  --port N       the server's port
  --count N      messages to send
  --retries N    connection attempts in a row before giving up
  --timeout MS   for the connect and for each reply
  --pause MS     between messages

Back-off: 100 ms, doubling for each failure in a row, up to 1 s. Exits 1 if
it gave up.`,
  });
  try {
    const result = await run(echoClient({
      hostname: flags.host,
      port: flags.port,
      count: flags.count,
      retries: flags.retries,
      timeout: flags.timeout,
      pause: flags.pause,
      log: (line) => console.log(line),
    }));
    console.log(
      `done: ${result.echoed} messages echoed, ${result.reconnects} reconnects`,
    );
  } catch (error) {
    console.error(`gave up: ${(error as Error).message}`);
    Deno.exit(1);
  }
}
