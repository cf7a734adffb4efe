import assert from "node:assert/strict";
import {
  BusyError,
  Connection,
  ConnectionClosedError,
  ConnectionResetError,
  delay,
  type Effect,
  IncompleteReadError,
  LineTooLongError,
  type Operation,
  type RecvOptions,
  run,
  spawn,
  TimeoutError,
  type Transport,
} from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";
import { pairMakers, text } from "./_pairs.ts";

/** Whether two byte arrays hold the same bytes (cheaper than a diff). */
function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** Runs each operation in turn: each must throw ConnectionClosedError. */
function* eachThrowsClosed(ops: (() => Operation<unknown>)[]) {
  for (const op of ops) {
    try {
      yield* op();
      assert.fail("expected ConnectionClosedError");
    } catch (error) {
      assert.ok(error instanceof ConnectionClosedError, String(error));
    }
  }
}

/**
 * Runs each operation in a coroutine of its own, lets them all start, then
 * runs `feed`; gives what each run returned (bytes as text) or the name of
 * what it threw, in order.
 */
/** What `conn` receives until the peer's end of stream, as text. */
function* recvToEnd(conn: Connection) {
  let received = "";
  for (let chunk; (chunk = yield* conn.recv()) !== null;) {
    received += text(chunk);
  }
  return received;
}

async function* runsOf(
  ops: Operation<unknown>[],
  feed: () => Operation<unknown> | Generator<Effect, void, unknown>,
): AsyncGenerator<Effect, string[], unknown> {
  const runs = [];
  for (const op of ops) {
    runs.push(
      yield* spawn((async function* () {
        try {
          const got = yield* op;
          return got instanceof Uint8Array ? text(got)! : String(got);
        } catch (error) {
          return (error as Error).name;
        }
      })()),
    );
  }
  yield* delay(5);
  yield* feed();
  const out: string[] = [];
  for (const task of runs) out.push(yield* task.join({ timeout: 2000 }));
  return out;
}

// The contract: every behaviour below holds on memory and TCP connections.
for (const pairs of pairMakers) {
  const name = (what: string) => `${what} [${pairs.name}]`;

  Deno.test(
    name("recv() returns sent bytes, then null after the peer's closeWrite"),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const got = await run((function* () {
        yield* a.send("hello");
        yield* a.closeWrite();
        return [yield* recvToEnd(b), yield* b.recv()];
      })());
      assert.deepEqual(got, ["hello", null]);
      await dispose();
    },
  );

  Deno.test(
    name(
      "a send to a peer that closed succeeds once (its bytes lost), then fails with ConnectionResetError; to a peer that closed with bytes unread it fails at once",
    ),
    async () => {
      const plain = await pairs.make();
      const unread = await pairs.make();
      const got = await run((function* () {
        const out: string[] = [];
        function* attempt(conn: Connection) {
          try {
            yield* conn.send("x");
            out.push("sent");
          } catch (error) {
            out.push((error as Error).name);
          }
        }
        plain.a.close(); // a FIN
        yield* delay(10);
        yield* attempt(plain.b);
        yield* delay(10); // the peer's RST, answering it
        yield* attempt(plain.b);
        yield* unread.b.send("never read");
        yield* delay(10);
        unread.a.close(); // bytes unread: an RST at once
        yield* delay(10);
        yield* attempt(unread.b);
        return out;
      })());
      await plain.dispose();
      await unread.dispose();
      assert.deepEqual(got, [
        "sent",
        "ConnectionResetError",
        "ConnectionResetError",
      ]);
    },
  );

  Deno.test(
    name(
      "a send or closeWrite ended before it could wait (past deadline, timeout 0, aborted signal) writes nothing, and the connection stays open",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const reason = new Error("stop");
      const ends = [
        { deadline: 0 },
        { timeout: 0 },
        { signal: AbortSignal.abort(reason) },
      ];
      const attempts = (async function* () {
        const outcomes: string[] = [];
        for (const options of ends) {
          for (
            const op of [
              () => a.send("early", options),
              () => a.closeWrite(options),
            ]
          ) {
            try {
              yield* op();
              outcomes.push("done");
            } catch (error) {
              outcomes.push(
                error === reason ? "aborted" : (error as Error).name,
              );
            }
          }
        }
        return outcomes;
      })();
      const syncAttempt = (function* () {
        try {
          yield* a.send("early", { timeout: 0 });
        } catch (error) {
          return (error as Error).name;
        }
      })();
      const got = await run((async function* () {
        const outcomes = [...yield* attempts, yield* syncAttempt];
        const isClosed = a.isClosed;
        yield* a.send("late");
        yield* a.closeWrite();
        return [outcomes, isClosed, yield* recvToEnd(b)];
      })());
      assert.deepEqual(got, [
        [
          "TimeoutError",
          "TimeoutError",
          "TimeoutError",
          "TimeoutError",
          "aborted",
          "aborted",
          "TimeoutError",
        ],
        false,
        "late",
      ]);
      await dispose();
    },
  );

  Deno.test(
    name(
      "send() after our own closeWrite() throws ConnectionClosedError; the peer reads what came before, then the end; receiving goes on",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const got = await run((function* () {
        yield* a.send("last");
        yield* a.closeWrite();
        let error = "none";
        try {
          yield* a.send("more");
        } catch (caught) {
          error = (caught as Error).name;
        }
        const received = yield* recvToEnd(b);
        yield* b.send("reply");
        return [error, received, text(yield* a.recv()), a.isClosed];
      })());
      assert.deepEqual(got, ["ConnectionClosedError", "last", "reply", false]);
      await dispose();
    },
  );

  Deno.test(name("recv() after a timeout still gets the bytes"), async () => {
    const { a, b, dispose } = await pairs.make();
    const got = await run((async function* () {
      await assert.rejects(
        run((function* () {
          yield* b.recv({ timeout: 20 });
        })()),
        { name: "TimeoutError", op: "recv" },
      );
      yield* a.send("late bytes");
      return text(yield* b.recv({ timeout: 2000 }));
    })());
    assert.equal(got, "late bytes");
    await dispose();
  });

  Deno.test(
    name(
      "recv() after a recvExact() that timed out with bytes buffered gets every byte once",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const got = await run((function* () {
        yield* a.send("a");
        try {
          yield* b.recvExact(2, { timeout: 20 });
          assert.fail("expected TimeoutError");
        } catch (error) {
          assert.ok(error instanceof TimeoutError);
        }
        // "a" is buffered, and the timed-out recvExact left a read in flight.
        const first = text(yield* b.recv());
        yield* a.send("bc");
        yield* a.closeWrite();
        const rest: string[] = [];
        for (let chunk; (chunk = yield* b.recv()) !== null;) {
          rest.push(text(chunk)!);
        }
        return [first, rest.join("")];
      })());
      assert.deepEqual(got, ["a", "bc"]);
      await dispose();
    },
  );

  Deno.test(
    name("recvExact() waits for all n bytes across chunks"),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const got = await run((function* () {
        const writer = yield* spawn((function* () {
          for (const part of ["ab", "cde", "fghij"]) {
            yield* a.send(part);
            yield* delay(5);
          }
        })());
        const first = text(yield* b.recvExact(4));
        const second = text(yield* b.recvExact(6));
        yield* writer.join();
        return [first, second];
      })());
      assert.deepEqual(got, ["abcd", "efghij"]);
      await dispose();
    },
  );

  Deno.test(
    name(
      "recvExact() throws IncompleteReadError with the partial bytes at EOF",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      await run((function* () {
        yield* a.send("abc");
        yield* a.closeWrite();
        try {
          yield* b.recvExact(10);
          assert.fail("expected IncompleteReadError");
        } catch (error) {
          assert.ok(error instanceof IncompleteReadError);
          assert.equal(text(error.partial), "abc");
          assert.equal(error.expected, 10);
        }
      })());
      await dispose();
    },
  );

  Deno.test(
    name(
      "recvLine() splits LF and CRLF lines and returns a final unterminated line",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const lines = await run((function* () {
        yield* a.send("one\r\ntwo\n\nthree\r\nfour");
        yield* a.closeWrite();
        const out: (string | null)[] = [];
        for (let line; (line = yield* b.recvLine()) !== null;) out.push(line);
        out.push(yield* b.recvLine());
        return out;
      })());
      assert.deepEqual(lines, ["one", "two", "", "three", "four", null]);
      await dispose();
    },
  );

  Deno.test(
    name(
      "recvLine({ requireNewline: true }) throws IncompleteReadError for a line the stream ends before its terminator, and gives whole lines as before",
    ),
    async () => {
      const cut = await pairs.make();
      const whole = await pairs.make();
      const got = await run((function* () {
        const strict = { requireNewline: true };
        yield* cut.a.send("ADD 1\nADD 1"); // cut off: "ADD 12\n" was meant
        yield* cut.a.closeWrite();
        const first = yield* cut.b.recvLine(strict);
        let error: unknown;
        try {
          yield* cut.b.recvLine(strict);
        } catch (caught) {
          error = caught;
        }
        yield* whole.a.send("QUIT\r\n");
        yield* whole.a.closeWrite();
        const lines = [
          yield* whole.b.recvLine(strict),
          yield* whole.b.recvLine(strict),
        ];
        return { first, error, after: yield* cut.b.recvLine(strict), lines };
      })());
      assert.equal(got.first, "ADD 1");
      assert.ok(got.error instanceof IncompleteReadError, String(got.error));
      assert.equal(text(got.error.partial), "ADD 1");
      assert.equal(got.error.expected, undefined);
      assert.match(
        got.error.message,
        /^Cannot receive a line from .+: the peer closed the stream after 5 bytes of it, before its end$/,
      );
      assert.equal(got.after, null); // the partial bytes went with the error
      assert.deepEqual(got.lines, ["QUIT", null]);
      await cut.dispose();
      await whole.dispose();
      // Over the limit it is LineTooLongError, as without the option.
      const long = await pairs.make();
      const tooLong = await run((function* () {
        yield* long.a.send("ABCDE");
        yield* long.a.closeWrite();
        try {
          yield* long.b.recvLine({ maxLineLength: 4, requireNewline: true });
        } catch (error) {
          return error;
        }
      })());
      assert.ok(tooLong instanceof LineTooLongError, String(tooLong));
      await long.dispose();
    },
  );

  Deno.test(
    name("recvLine() throws LineTooLongError past maxLineLength and closes"),
    async () => {
      const { a, b, dispose } = await pairs.make({ maxLineLength: 100 });
      await run((function* () {
        yield* a.send("x".repeat(101) + "\n");
        try {
          yield* b.recvLine();
          assert.fail("expected LineTooLongError");
        } catch (error) {
          assert.ok(error instanceof LineTooLongError);
          assert.equal(error.limit, 100);
        }
        assert.equal(b.isClosed, true);
      })());
      await dispose();
    },
  );

  Deno.test(
    name("recvLine() accepts a line of exactly maxLineLength, CRLF or not"),
    async () => {
      const { a, b, dispose } = await pairs.make({ maxLineLength: 8 });
      const lines = await run((function* () {
        yield* a.send("12345678\r\n12345678\n");
        return [yield* b.recvLine(), yield* b.recvLine()];
      })());
      assert.deepEqual(lines, ["12345678", "12345678"]);
      await dispose();
    },
  );

  Deno.test(name("send() from two coroutines never interleaves"), async () => {
    const { a, b, dispose } = await pairs.make();
    const size = 200_000;
    const received = await run((function* () {
      const senders = [];
      for (const fill of [65, 66, 67]) {
        senders.push(
          yield* spawn((function* () {
            yield* a.send(new Uint8Array(size).fill(fill));
          })()),
        );
      }
      const all = yield* b.recvExact(3 * size);
      for (const sender of senders) yield* sender.join();
      return all;
    })());
    // Each sender's bytes form one contiguous run.
    let runs = 1;
    for (let i = 1; i < received.length; i++) {
      if (received[i] !== received[i - 1]) runs++;
    }
    assert.equal(runs, 3);
    await dispose();
  });

  Deno.test(name("a second concurrent receiver gets BusyError"), async () => {
    const { a, b, dispose } = await pairs.make();
    await run((function* () {
      const reader = yield* spawn((function* () {
        return text(yield* b.recv());
      })());
      yield* delay(5);
      try {
        yield* b.recv();
        assert.fail("expected BusyError");
      } catch (error) {
        assert.ok(error instanceof BusyError);
      }
      yield* a.send("x");
      assert.equal(yield* reader.join(), "x");
    })());
    await dispose();
  });

  Deno.test(
    name(
      "two receives taken before either runs, run by two coroutines at once: one gets the bytes, the other BusyError",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const outcomes = await run((async function* () {
        const out: string[] = [];
        for (
          const take of [
            () => b.recv(),
            () => b.recvLine(),
            () => b.recvExact(2),
          ]
        ) {
          out.push(...yield* runsOf([take(), take()], () => a.send("x\n")));
        }
        return out;
      })());
      // Before, both were one operation object: the second run's wait took
      // the first's place, and the first waited for ever.
      assert.deepEqual(outcomes, [
        "x\n",
        "BusyError",
        "x",
        "BusyError",
        "x\n",
        "BusyError",
      ]);
      await dispose();
    },
  );

  Deno.test(
    name(
      "a receive or a send run by a second coroutine while the first still runs it throws TypeError there; the first completes",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const size = 1024 * 1024; // more than a memory pipe holds
      const outcomes = await run((async function* () {
        const out: string[] = [];
        for (const op of [b.recv(), b.recvLine()]) {
          out.push(...yield* runsOf([op, op], () => a.send("x\n")));
        }
        // The first run waits to write until the peer reads.
        const send = a.send(new Uint8Array(size));
        out.push(
          ...yield* runsOf([send, send], function* () {
            for (let n = 0; n < size;) n += (yield* b.recv())!.length;
          }),
        );
        return out;
      })());
      // Before, the second run's wait took the first one's place, and the
      // first waited until its join timed out.
      assert.deepEqual(outcomes, [
        "x\n",
        "TypeError",
        "x",
        "TypeError",
        "undefined",
        "TypeError",
      ]);
      await dispose();
    },
  );

  Deno.test(
    name("operations on a closed connection throw ConnectionClosedError"),
    async () => {
      const { a, dispose } = await pairs.make();
      a.close();
      await run((function* () {
        yield* eachThrowsClosed([
          () => a.recv(),
          () => a.send("x"),
          () => a.recvLine(),
        ]);
      })());
      await dispose();
    },
  );

  Deno.test(
    name(
      "receives after close() throw ConnectionClosedError, even with bytes buffered",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      await run((function* () {
        yield* a.send("abc\ndef\n");
        assert.equal(text(yield* b.recvExact(1)), "a"); // the rest is buffered
        b.close();
        yield* eachThrowsClosed([
          () => b.recv(),
          () => b.recvExact(2),
          () => b.recvLine(),
        ]);
      })());
      await dispose();
    },
  );

  Deno.test(
    name("close() wakes a parked recv with ConnectionClosedError"),
    async () => {
      const { a, b, dispose } = await pairs.make();
      await run((function* () {
        const reader = yield* spawn((function* () {
          yield* b.recv();
        })());
        yield* delay(5);
        b.close();
        try {
          yield* reader.join();
          assert.fail("expected ConnectionClosedError");
        } catch (error) {
          assert.ok(error instanceof ConnectionClosedError, String(error));
        }
      })());
      void a;
      await dispose();
    },
  );

  Deno.test(name("a sent string arrives as UTF-8"), async () => {
    const { a, b, dispose } = await pairs.make();
    const line = await run((function* () {
      yield* a.send("héllo wörld ✓\n");
      return yield* b.recvLine();
    })());
    assert.equal(line, "héllo wörld ✓");
    await dispose();
  });

  Deno.test(
    name(
      "recvLine({ crlfOnly }) ends a line at CRLF only: a bare LF is part of it, a CR and its LF may come apart",
    ),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const lines = await run((function* () {
        yield* a.send("MAIL\n.\nRCPT\r\n");
        const first = yield* b.recvLine({ crlfOnly: true });
        yield* a.send("\nx\r");
        yield* spawn((function* () {
          yield* delay(5);
          yield* a.send("\ntail\r");
          yield* a.closeWrite();
        })());
        const second = yield* b.recvLine({ crlfOnly: true, timeout: 1000 });
        const last = yield* b.recvLine({ crlfOnly: true, timeout: 1000 });
        const plain = yield* b.recvLine({ timeout: 1000 });
        return [first, second, last, plain];
      })());
      assert.deepEqual(lines, ["MAIL\n.\nRCPT", "\nx", "tail", null]);
      await dispose();
    },
  );

  Deno.test(
    name("recvLine() keeps a U+FEFF (BOM) that starts a line"),
    async () => {
      const { a, b, dispose } = await pairs.make();
      const lines = await run((function* () {
        yield* a.send("\uFEFFfirst\n\uFEFFsecond\n");
        return [yield* b.recvLine(), yield* b.recvLine()];
      })());
      assert.deepEqual(lines, ["\uFEFFfirst", "\uFEFFsecond"]);
      await dispose();
    },
  );
}

// Virtual-clock behaviour, exact to the millisecond. The contract suite above
// runs the function* form over memory and TCP; these run the documented
// async function* form, whose operations park in place (no yield).

Deno.test("recv() times out at exactly its deadline", async () => {
  const clock = new VirtualClock({ start: 1000 });
  const [a, b] = memoryConnPair();
  const at = await run(
    (async function* () {
      try {
        yield* b.recv({ timeout: 3000 });
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
        assert.equal(error.timeout, 3000);
        return clock.now();
      }
    })(),
    { clock },
  );
  assert.equal(at, 4000);
  a.close();
  b.close();
});

Deno.test("recv() and send() with one options object read its timeout at each call", async () => {
  const clock = new VirtualClock({ start: 0 });
  const [a, b] = memoryConnPair({ capacity: 4 });
  const options = { timeout: 1000 };
  const data = new Uint8Array(4);
  const timedOut = async function* (op: Operation<unknown>) {
    const started = clock.now();
    try {
      yield* op;
    } catch (error) {
      assert.ok(error instanceof TimeoutError);
      return [error.timeout, clock.now() - started];
    }
  };
  const result = await run(
    (async function* () {
      yield* a.send(data, options); // fills the capacity
      yield* b.recv(options);
      options.timeout = 3000;
      const recv = yield* timedOut(b.recv(options));
      yield* a.send(data, options); // into b's read left in flight
      yield* a.send(data, options); // fills the capacity
      options.timeout = 2000;
      const send = yield* timedOut(a.send(data, options)); // capacity full
      return [recv, send];
    })(),
    { clock },
  );
  assert.deepEqual(result, [[3000, 3000], [2000, 2000]]);
  a.close();
  b.close();
});

Deno.test("recv() with one options object reads its deadline and signal at each call", async () => {
  const clock = new VirtualClock({ start: 0 });
  const [a, b] = memoryConnPair({ recvTimeout: 500 });
  const options: RecvOptions = {};
  const controller = new AbortController();
  const reason = new Error("stop reading");
  const ends = await run(
    (async function* () {
      const ends: unknown[] = [];
      const end = async function* () {
        try {
          yield* b.recv(options);
        } catch (error) {
          const what = error instanceof TimeoutError
            ? "timed out"
            : error === reason
            ? "aborted"
            : error;
          ends.push([what, clock.now()]);
        }
      };
      yield* a.send("x");
      yield* b.recv(options); // the connection's 500 ms applied, unused
      // A deadline of its own: the connection's recvTimeout no longer applies.
      options.deadline = 2000;
      yield* end();
      delete options.deadline;
      options.signal = controller.signal;
      yield* spawn((async function* () {
        yield* delay(100);
        controller.abort(reason);
      })());
      yield* end();
      return ends;
    })(),
    { clock },
  );
  assert.deepEqual(ends, [["timed out", 2000], ["aborted", 2100]]);
  a.close();
  b.close();
});

Deno.test("recv() honours an absolute deadline and the earlier of deadline and timeout", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair();
  const times = await run(
    (async function* () {
      const out: number[] = [];
      for (
        const options of [{ deadline: 250 }, { deadline: 900, timeout: 100 }]
      ) {
        try {
          yield* b.recv(options);
        } catch {
          out.push(clock.now());
        }
      }
      return out;
    })(),
    { clock },
  );
  assert.deepEqual(times, [250, 350]);
  a.close();
  b.close();
});

Deno.test("the connection's recvTimeout applies when an operation sets none", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair({ recvTimeout: 3000 });
  const at = await run(
    (async function* () {
      try {
        yield* b.recvLine();
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
        return clock.now();
      }
    })(),
    { clock },
  );
  assert.equal(at, 3000);
  a.close();
  b.close();
});

Deno.test("a recvTimeout changed between receives applies to the next recv", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair({ recvTimeout: 3000 });
  const times = await run(
    (async function* () {
      const times: number[] = [];
      for (const recvTimeout of [3000, 100]) {
        b.recvTimeout = recvTimeout;
        const started = clock.now();
        try {
          yield* b.recv();
        } catch (error) {
          assert.ok(error instanceof TimeoutError);
          times.push(clock.now() - started);
        }
      }
      return times;
    })(),
    { clock },
  );
  assert.deepEqual(times, [3000, 100]);
  a.close();
  b.close();
});

Deno.test("the same bytes sent from two coroutines at once arrive twice", async () => {
  const [a, b] = memoryConnPair({ capacity: 4 });
  const bytes = new TextEncoder().encode("same");
  const got = await run((async function* () {
    const reader = yield* spawn((async function* () {
      let text = "";
      for (let chunk; (chunk = yield* b.recv()) !== null;) {
        text += new TextDecoder().decode(chunk);
      }
      return text;
    })());
    const first = yield* spawn((async function* () {
      yield* a.send(bytes);
    })());
    yield* a.send(bytes); // queued behind the first, not merged with it
    yield* first.join();
    yield* a.closeWrite();
    return yield* reader.join();
  })());
  assert.equal(got, "samesame");
  a.close();
  b.close();
});

Deno.test("a sendTimeout changed between sends applies to the next send", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair({ capacity: 4 });
  const bytes = new TextEncoder().encode("four");
  const took = await run(
    (async function* () {
      a.sendTimeout = 5000;
      yield* a.send(bytes); // fits the peer's buffer
      a.sendTimeout = 700;
      const started = clock.now();
      try {
        yield* a.send(bytes); // the peer reads nothing: it waits
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
        return clock.now() - started;
      }
    })(),
    { clock },
  );
  assert.equal(took, 700);
  b.close();
});

Deno.test("recvLine() deadline bounds the whole line against a 1-byte trickle", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair();
  const result = await run(
    (async function* () {
      yield* spawn((async function* () {
        try {
          for (let i = 0; i < 100; i++) {
            yield* a.send("x");
            yield* delay(1000);
          }
        } catch (error) {
          // The reader closes `a` when it times out; at 5000 ms the writer
          // may run second and find it closed.
          assert.ok(error instanceof ConnectionClosedError, String(error));
        }
      })());
      try {
        yield* b.recvLine({ timeout: 5000 });
        return "line";
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
        return clock.now();
      } finally {
        a.close();
      }
    })(),
    { clock },
  );
  assert.equal(result, 5000);
  b.close();
});

Deno.test("recvExact() deadline bounds all n bytes, and the bytes stay buffered", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair();
  const result = await run(
    (async function* () {
      yield* a.send("abc");
      try {
        yield* b.recvExact(5, { timeout: 100 });
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
      }
      yield* a.send("de");
      return text(yield* b.recvExact(5));
    })(),
    { clock },
  );
  assert.equal(result, "abcde");
  a.close();
  b.close();
});

Deno.test("send() timeout closes the connection when the peer stops reading", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair({ capacity: 16 });
  const at = await run(
    (async function* () {
      try {
        yield* a.send(new Uint8Array(1000), { timeout: 3000 });
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
        assert.equal(error.op, "send");
        return clock.now();
      }
    })(),
    { clock },
  );
  assert.equal(at, 3000);
  assert.equal(a.isClosed, true);
  b.close();
});

Deno.test("a queued send times out in the queue, and the connection stays open", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair({ capacity: 4 });
  const outcome = await run(
    (async function* () {
      const first = yield* spawn((async function* () {
        yield* a.send(new Uint8Array(100), { timeout: 10_000 });
      })());
      yield* delay(0); // the first send starts and takes the writer slot
      try {
        yield* a.send("second", { timeout: 1000 });
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
      }
      const at = clock.now();
      const isClosedThen = a.isClosed;
      try {
        yield* first.join();
      } catch (error) {
        return [
          at,
          isClosedThen,
          (error as Error).name,
          clock.now(),
          a.isClosed,
        ];
      }
    })(),
    { clock },
  );
  // Nothing of "second" was written, so its timeout closes nothing; the
  // first send, stuck mid-write, closes the connection at its own deadline.
  assert.deepEqual(outcome, [1000, false, "TimeoutError", 10_000, true]);
  b.close();
});

Deno.test("recv() with a signal throws the abort reason unchanged", async () => {
  const [a, b] = memoryConnPair();
  const controller = new AbortController();
  const reason = new Error("stop reading");
  const caught = await run((async function* () {
    yield* spawn((async function* () {
      yield* delay(5);
      controller.abort(reason);
    })());
    try {
      yield* b.recv({ signal: controller.signal });
    } catch (error) {
      return error;
    }
  })());
  assert.equal(caught, reason);
  a.close();
  b.close();
});

Deno.test("recv() with timeout 0 returns buffered bytes and times out when there are none", async () => {
  const [a, b] = memoryConnPair();
  await run((async function* () {
    yield* a.send("know");
    assert.equal(text(yield* b.recvExact(1)), "k");
    assert.equal(text(yield* b.recv({ timeout: 0 })), "now");
    try {
      yield* b.recv({ timeout: 0 });
      assert.fail("expected TimeoutError");
    } catch (error) {
      assert.ok(error instanceof TimeoutError);
    }
  })());
  a.close();
  b.close();
});

Deno.test("recvLine() buffers no more than the limit plus one read", async () => {
  const [a, b] = memoryConnPair({ maxLineLength: 4096 });
  await run((async function* () {
    const writer = yield* spawn((async function* () {
      try {
        for (let i = 0; i < 1000; i++) {
          yield* a.send(new Uint8Array(1024).fill(120));
        }
      } catch {
        // b closes on LineTooLongError: the writer sees a reset.
      }
    })());
    try {
      yield* b.recvLine();
    } catch (error) {
      assert.ok(error instanceof LineTooLongError);
    }
    assert.ok(b.buffered <= 4096 + 1 + 64 * 1024, `buffered ${b.buffered}`);
    yield* writer.join();
  })());
  a.close();
});

Deno.test("bad arguments throw RangeError", () => {
  const [a, b] = memoryConnPair();
  assert.throws(() => a.recv({ timeout: -1 }), RangeError);
  assert.throws(() => a.recvExact(-1), RangeError);
  assert.throws(() => a.recvExact(1.5), RangeError);
  assert.throws(() => a.recvLine({ maxLineLength: 0 }), RangeError);
  assert.throws(() => memoryConnPair({ recvTimeout: -5 }), RangeError);
  a.close();
  b.close();
});

Deno.test("a bad default assigned to recvTimeout, sendTimeout or maxLineLength throws RangeError, as in the options, and keeps the old one", () => {
  const [a, b] = memoryConnPair({ recvTimeout: 3000 });
  // NaN (Number() of an unset variable) would make every receive wait for ever.
  assert.throws(() => a.recvTimeout = NaN, RangeError);
  // `null >= 0` holds in JS: a null timeout timed every receive out at once.
  assert.throws(() => a.recvTimeout = null as unknown as number, RangeError);
  assert.throws(
    () => memoryConnPair({ sendTimeout: null as unknown as number }),
    RangeError,
  );
  assert.throws(() => a.sendTimeout = -1, RangeError);
  assert.throws(() => a.maxLineLength = 0, RangeError);
  assert.throws(() => a.maxLineLength = 1.5, RangeError);
  assert.deepEqual(
    [a.recvTimeout, a.sendTimeout, a.maxLineLength > 0],
    [3000, Infinity, true],
  );
  a.recvTimeout = 50;
  a.sendTimeout = Infinity;
  a.maxLineLength = 10;
  assert.deepEqual([a.recvTimeout, a.sendTimeout, a.maxLineLength], [
    50,
    Infinity,
    10,
  ]);
  a.close();
  b.close();
});

Deno.test("an idle connection's read buffer is small and grows for bulk data", async () => {
  const [a, b] = memoryConnPair({ capacity: 1 << 20 });
  const total = 512 * 1024;
  const [idle, largest] = await run((async function* () {
    const idle = (b as unknown as { buf: Uint8Array }).buf.length;
    yield* a.send(new Uint8Array(total));
    let got = 0;
    let largest = 0;
    while (got < total) {
      const chunk = (yield* b.recv())!;
      got += chunk.length;
      largest = Math.max(largest, chunk.length);
    }
    return [idle, largest];
  })());
  assert.ok(idle <= 4096, `idle buffer ${idle}`);
  // Reads that fill their buffer double it, up to 64 KiB.
  assert.equal(largest, 64 * 1024);
  a.close();
  b.close();
});

Deno.test("a read buffer sized for one large recvExact() is not kept: the connection waits on its read size", async () => {
  const [a, b] = memoryConnPair({ capacity: 8 << 20 });
  const bufferOf = () => (b as unknown as { buf: Uint8Array }).buf.length;
  const sizes = await run((async function* () {
    yield* a.send(new Uint8Array(4 << 20));
    yield* a.send("after\n");
    const value = yield* b.recvExact(4 << 20);
    const line = yield* b.recvLine();
    // Parks with a read in flight.
    const waiting = yield* spawn((function* () {
      return yield* b.recvLine();
    })());
    yield* delay(1);
    const idle = bufferOf();
    yield* a.send("next\n");
    return [value.length, line, idle, yield* waiting.join()];
  })());
  const [length, line, idle, next] = sizes;
  assert.deepEqual([length, line, next], [4 << 20, "after", "next"]);
  assert.ok(Number(idle) <= 64 * 1024, `idle on a buffer of ${idle}`);
  a.close();
  b.close();
});

for (const pairs of pairMakers) {
  Deno.test(`recvExact() of messages over 256 KiB, back to back and after a line: every message intact, and later reads do not write into one already received [${pairs.name}]`, async () => {
    const { a, b, dispose } = await pairs.make();
    const size = 300_000 + 7;
    const message = (seed: number) =>
      Uint8Array.from({ length: size }, (_, i) => (i * seed + seed) % 251);
    const line = new TextEncoder().encode("a line\n");
    // One stream, sent in pieces that straddle every boundary: the line's
    // read takes the start of the next message with it.
    const stream = new Uint8Array(3 * size + 2 * line.length);
    stream.set(message(1));
    stream.set(line, size);
    stream.set(message(2), size + line.length);
    stream.set(message(3), 2 * size + line.length);
    stream.set(line, 3 * size + line.length);
    const got = await run((async function* () {
      const sending = yield* spawn((async function* () {
        for (let at = 0; at < stream.length; at += 70_001) {
          yield* a.send(stream.subarray(at, at + 70_001));
        }
      })());
      const received = [
        yield* b.recvExact(size),
        yield* b.recvLine(),
        yield* b.recvExact(size),
        yield* b.recvExact(size),
        yield* b.recvLine(),
      ];
      yield* sending.join();
      return received;
    })());
    // Compared as names: a diff of 300,000-byte arrays takes minutes.
    const names = got.map((value) =>
      typeof value === "string" || value === null
        ? value
        : [1, 2, 3].find((seed) => equalBytes(value, message(seed))) ??
          "other bytes"
    );
    assert.deepEqual(names, [1, "a line", 2, 3, "a line"]);
    await dispose();
  });
}

Deno.test("recvExact() of a large message that times out keeps every byte: recvExact() again gets the whole message, recv() the part", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair({ capacity: 1 << 20 });
  const size = 512 * 1024;
  const body = Uint8Array.from({ length: size }, (_, i) => i % 253);
  const [first, again, part] = await run(
    (async function* () {
      yield* a.send(body.subarray(0, 100_000));
      let first = "";
      try {
        yield* b.recvExact(size, { timeout: 100 });
      } catch (error) {
        first = (error as Error).name;
      }
      yield* a.send(body.subarray(100_000, 300_000));
      yield* delay(1);
      // Times out again, midway, with a read of the rest in flight.
      try {
        yield* b.recvExact(size, { timeout: 0 });
      } catch (error) {
        first += ` ${(error as Error).name}`;
      }
      yield* a.send(body.subarray(300_000));
      const again = yield* b.recvExact(size);
      yield* a.send(body.subarray(0, 400_000));
      yield* delay(1);
      const part = [];
      for (let got = 0; got < 400_000;) {
        const chunk = (yield* b.recv())!;
        part.push(chunk);
        got += chunk.length;
      }
      return [first, again, part];
    })(),
    { clock },
  );
  assert.equal(first, "TimeoutError TimeoutError");
  assert.ok(equalBytes(again, body), "recvExact() after the timeouts");
  const joined = new Uint8Array(400_000);
  let at = 0;
  for (const chunk of part as Uint8Array[]) {
    joined.set(chunk, at);
    at += chunk.length;
  }
  assert.ok(equalBytes(joined, body.subarray(0, 400_000)), "recv() after");
  a.close();
  b.close();
});

Deno.test("lines that outgrow the read buffer, after shorter ones, come back intact", async () => {
  // Sent at once, 6000 grows the buffer to 8 KiB; 200 straddles a refill
  // and ends early in the full buffer; 50000 then grows it (in place, past
  // the first 1 KiB) while 7991 of its bytes sit at offset 201, which must
  // move to the front. In 777-byte chunks the growth steps differ.
  for (const chunk of [Infinity, 777]) {
    const [a, b] = memoryConnPair({ capacity: 1 << 20 });
    const lengths = [6000, 100, 2000, 200, 50000, 10, 3000, 30000, 5];
    const lines = lengths.map((n, i) =>
      Array.from(
        { length: n },
        (_, k) => String.fromCharCode(97 + (i + k) % 26),
      ).join("")
    );
    const all = new TextEncoder().encode(lines.join("\n") + "\n");
    const got = await run((async function* () {
      const writer = yield* spawn((async function* () {
        for (let at = 0; at < all.length; at += chunk) {
          yield* a.send(all.subarray(at, at + chunk));
        }
      })());
      const got: string[] = [];
      for (const _ of lines) got.push((yield* b.recvLine())!);
      yield* writer.join();
      return got;
    })());
    assert.deepEqual(got.map((l) => l.length), lengths);
    assert.deepEqual(got, lines, `sent in chunks of ${chunk}`);
    a.close();
    b.close();
  }
});

Deno.test("a transport's failed read, write and closeWrite surface as ConnectionResetError with the error as cause", async () => {
  const failure = (what: string) => new Error(`${what} failed`);
  const failing: Transport = {
    read: () => Promise.reject(failure("read")),
    write: () => Promise.reject(failure("write")),
    closeWrite: () => Promise.reject(failure("closeWrite")),
    close() {},
    localAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 2 },
  };
  const causes = await run((function* () {
    const causes: string[] = [];
    for (
      const attempt of [
        (conn: Connection) => conn.recv(),
        (conn: Connection) => conn.send("x"),
        (conn: Connection) => conn.closeWrite(),
      ]
    ) {
      const conn = new Connection(failing, { isExternal: false });
      try {
        yield* attempt(conn);
        causes.push("no error");
      } catch (error) {
        assert.ok(error instanceof ConnectionResetError, String(error));
        causes.push((error.cause as Error).message);
      }
      conn.close();
    }
    return causes;
  })());
  assert.deepEqual(causes, [
    "read failed",
    "write failed",
    "closeWrite failed",
  ]);
});

Deno.test("a transport's read and write results reach recv and send", async () => {
  // The runtime callbacks tell a result from a rejection by its type: a
  // read gives a number or null, a write a number.
  const reads: (number | null)[] = [3, null];
  const writes: string[] = [];
  const transport: Transport = {
    read(buffer) {
      const n = reads.shift()!;
      if (n !== null) buffer.set([1, 2, 3]);
      return Promise.resolve(n);
    },
    write(bytes) {
      writes.push(new TextDecoder().decode(bytes));
      return Promise.resolve(1); // one byte at a time
    },
    closeWrite: () => Promise.resolve(),
    close() {},
    localAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 2 },
  };
  const conn = new Connection(transport, { isExternal: false });
  const got = await run((function* () {
    const first = yield* conn.recv();
    const second = yield* conn.recv();
    yield* conn.send("abcd");
    return [first, second];
  })());
  conn.close();
  assert.deepEqual(got, [new Uint8Array([1, 2, 3]), null]);
  // Each write is handed what the ones before left unwritten.
  assert.deepEqual(writes, ["abcd", "bcd", "cd", "d"]);
});

export type { Connection };

Deno.test("recv({ borrow: true }) returns a view that stays valid until the next receive", async () => {
  const [a, b] = memoryConnPair();
  const result = await run((async function* () {
    yield* a.send("first");
    const borrowed = (yield* b.recv({ borrow: true }))!;
    const before = text(borrowed);
    yield* a.send("SECOND");
    const copied = text(yield* b.recv());
    return [before, copied];
  })());
  assert.deepEqual(result, ["first", "SECOND"]);
  a.close();
  b.close();
});

for (const pairs of pairMakers) {
  Deno.test(`recv({ max }) returns at most max bytes, copied or borrowed, and leaves the rest buffered for the next receive [${pairs.name}]`, async () => {
    const { a, b, dispose } = await pairs.make();
    const got = await run((async function* () {
      yield* a.send("0123456789");
      const got: string[] = [];
      let total = 0;
      while (total < 10) {
        const max = got.length % 2 === 0 ? 3 : 2;
        const chunk = (yield* b.recv({ max, borrow: got.length === 1 }))!;
        assert.ok(chunk.length <= max, `${chunk.length} bytes for max ${max}`);
        got.push(text(chunk)!);
        total += chunk.length;
      }
      yield* a.send("tail");
      got.push(text(yield* b.recv({ max: 100 }))!);
      return got;
    })());
    assert.equal(got.join(""), "0123456789tail");
    assert.equal(got.at(-1), "tail");
    // The first receives found all ten bytes buffered: 3, 2, 3, 2.
    assert.deepEqual(got.slice(0, 4), ["012", "34", "567", "89"]);
    await dispose();
  });
}

for (const pairs of pairMakers) {
  Deno.test(`recvExact(n, { borrow: true }) gives the n bytes as a view into the read buffer, no copy; the rest stay buffered [${pairs.name}]`, async () => {
    const { a, b, dispose } = await pairs.make();
    const got = await run((async function* () {
      yield* a.send(new Uint8Array([0x30, 3, 0x61, 0x62, 0x63, 0x0a]));
      const header = yield* b.recvExact(2, { borrow: true });
      const [type, length] = header;
      const body = yield* b.recvExact(length, { borrow: true });
      const isView = body.buffer === header.buffer;
      const text = new TextDecoder().decode(body);
      const copied = yield* b.recvExact(1);
      return { type, text, isView, rest: copied[0], buffered: b.buffered };
    })());
    assert.deepEqual(got, {
      type: 0x30,
      text: "abc",
      isView: true,
      rest: 0x0a,
      buffered: 0,
    });
    await dispose();
  });
}

for (const pairs of pairMakers) {
  Deno.test(`peek() waits for bytes and returns them without taking them: the next receive gets them; null at the end of the stream [${pairs.name}]`, async () => {
    const { a, b, dispose } = await pairs.make();
    const got = await run((async function* () {
      const peeking = yield* spawn((async function* () {
        return text(yield* b.peek({ timeout: 1000 }));
      })());
      yield* delay(5);
      yield* a.send("GET /\r\n");
      const peeked = yield* peeking.join();
      const again = text(yield* b.peek());
      const line = yield* b.recvLine({ timeout: 1000 });
      yield* a.closeWrite();
      const atEnd = yield* b.peek({ timeout: 1000 });
      return { peeked, again, line, atEnd };
    })());
    assert.deepEqual(got, {
      peeked: "GET /\r\n",
      again: "GET /\r\n",
      line: "GET /",
      atEnd: null,
    });
    await dispose();
  });
}

for (const pairs of pairMakers) {
  Deno.test(`peek({ min }) waits until min bytes arrive in pieces, takes none of them, and gives fewer only at the end of the stream [${pairs.name}]`, async () => {
    const { a, b, dispose } = await pairs.make();
    const got = await run((async function* () {
      const peeking = yield* spawn((async function* () {
        return text(yield* b.peek({ min: 5, timeout: 1000 }));
      })());
      yield* a.send("\x16\x03");
      yield* delay(5);
      yield* a.send("\x01");
      yield* delay(5);
      yield* a.send("\x00*rest");
      const header = yield* peeking.join();
      const all = text(yield* b.recvExact(9, { timeout: 1000 }));
      yield* a.send("ab");
      yield* a.closeWrite();
      const short = text(yield* b.peek({ min: 5, timeout: 1000 }));
      const rest = text(yield* b.recv({ timeout: 1000 }));
      const atEnd = yield* b.peek({ min: 5, timeout: 1000 });
      return { header, all, short, rest, atEnd };
    })());
    // 5 bytes at least: the first piece alone (2 bytes) did not end it.
    const header = got.header ?? "";
    assert.ok(header.length >= 5, JSON.stringify(header));
    assert.ok("\x16\x03\x01\x00*rest".startsWith(header));
    assert.deepEqual({ ...got, header: undefined }, {
      header: undefined,
      all: "\x16\x03\x01\x00*rest",
      short: "ab",
      rest: "ab",
      atEnd: null,
    });
    await dispose();
  });
}

for (const pairs of pairMakers) {
  Deno.test(`peek() and skip(): 2,000 frames sent in pieces of random size, decoded where they lie in the buffer, each once [${pairs.name}]`, async () => {
    const { a, b, dispose } = await pairs.make();
    // Frames of a length byte and that many bytes of the frame's number.
    const frames: number[] = [];
    for (let i = 0; i < 2000; i++) frames.push(1 + (i * 7) % 200);
    const stream = frames.flatMap((length, i) => [
      length,
      ...new Array(length).fill(i % 256),
    ]);
    let seed = 7;
    const random = () => (seed = (seed * 48271) % 2147483647) / 2147483647;
    const got = await run((async function* () {
      const sender = yield* spawn((async function* () {
        for (let at = 0; at < stream.length;) {
          const size = 1 + Math.floor(random() * 700);
          yield* a.send(new Uint8Array(stream.slice(at, at + size)));
          at += size;
          if (random() < 0.3) yield* delay(0);
        }
      })());
      const decoded: number[] = [];
      let wanted = 1;
      while (decoded.length < frames.length) {
        const view = (yield* b.peek({ min: wanted, timeout: 5000 }))!;
        let at = 0;
        while (at < view.length && at + 1 + view[at] <= view.length) {
          const body = view.subarray(at + 1, at + 1 + view[at]);
          const number = decoded.length % 256;
          if (body.some((byte) => byte !== number)) {
            throw new Error(`frame ${decoded.length} is wrong`);
          }
          decoded.push(body.length);
          at += 1 + view[at];
        }
        b.skip(at);
        // A frame cut short: wait for all of it.
        wanted = b.buffered > 0 ? 1 + view[at] : 1;
      }
      yield* sender.join();
      return { decoded, left: b.buffered };
    })());
    assert.deepEqual(got, { decoded: frames, left: 0 });
    await dispose();
  });
}

Deno.test("skip() after a peek({ min }) that timed out: the read still in flight fills in behind, and its bytes come next", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair();
  const got = await run(
    (async function* () {
      yield* a.send("abc");
      try {
        yield* b.peek({ min: 5, timeout: 100 });
      } catch (error) {
        if (!(error instanceof TimeoutError)) throw error;
      }
      b.skip(3);
      const empty = b.buffered;
      yield* a.send("def");
      return { empty, next: text(yield* b.recvExact(3)) };
    })(),
    { clock },
  );
  assert.deepEqual(got, { empty: 0, next: "def" });
  a.close();
  b.close();
});

Deno.test("skip() refuses more than is buffered (RangeError), while another coroutine receives (BusyError), and once closed (ConnectionClosedError)", async () => {
  const [a, b] = memoryConnPair();
  const got = await run((function* () {
    const errors: string[] = [];
    const attempt = (n: number) => {
      try {
        b.skip(n);
        errors.push("ok");
      } catch (error) {
        errors.push(`${(error as Error).name}: ${(error as Error).message}`);
      }
    };
    yield* a.send("xy");
    yield* b.peek();
    for (const n of [3, -1, 1.5]) attempt(n);
    attempt(2);
    const reader = yield* spawn((function* () {
      return text(yield* b.recv());
    })());
    yield* delay(1);
    attempt(0);
    yield* a.send("z");
    const read = yield* reader.join();
    b.close();
    attempt(0);
    return { errors, read };
  })());
  assert.equal(got.read, "z");
  assert.deepEqual(got.errors.map((error) => error.split(":")[0]), [
    "RangeError",
    "RangeError",
    "RangeError",
    "ok",
    "BusyError",
    "ConnectionClosedError",
  ]);
  assert.match(
    got.errors[0],
    /Cannot skip: n must be an integer from 0 to the 2 bytes buffered, got 3/,
  );
  a.close();
});

Deno.test("peek({ min }) that times out with fewer bytes takes nothing, and at its deadline exactly", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair();
  const got = await run(
    (async function* () {
      yield* a.send("GE");
      let error: unknown;
      try {
        yield* b.peek({ min: 4, timeout: 100 });
      } catch (caught) {
        error = caught;
      }
      const at = clock.now();
      yield* a.send("T /");
      return { error, at, bytes: text(yield* b.recvExact(5)) };
    })(),
    { clock },
  );
  assert.ok(got.error instanceof TimeoutError);
  assert.equal(got.at, 100);
  assert.equal(got.bytes, "GET /");
  a.close();
  b.close();
});

Deno.test("peek({ min }) refuses a min that is not an integer >= 1, with RangeError", () => {
  const [a, b] = memoryConnPair();
  for (const min of [0, -1, 1.5, NaN]) {
    assert.throws(() => b.peek({ min }), {
      name: "RangeError",
      message: `Cannot peek: min must be an integer >= 1, got ${min}`,
    });
  }
  a.close();
  b.close();
});

Deno.test("peek() that times out takes nothing: the bytes that come later go to the next receive", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair();
  const got = await run(
    (async function* () {
      let error: unknown;
      try {
        yield* b.peek({ timeout: 100 });
      } catch (caught) {
        error = caught;
      }
      const at = clock.now();
      yield* a.send("late");
      return { error, at, bytes: text(yield* b.recv()) };
    })(),
    { clock },
  );
  assert.ok(got.error instanceof TimeoutError);
  assert.equal(got.error.op, "peek");
  assert.equal(got.at, 100);
  assert.equal(got.bytes, "late");
  a.close();
  b.close();
});

Deno.test("recv({ max }) and then recv() without it: each gets what it asked for, the reused operation does not keep the limit", async () => {
  const [a, b] = memoryConnPair();
  const got = await run((async function* () {
    yield* a.send("abcdef");
    const first = text((yield* b.recv({ max: 2 }))!);
    const rest = text((yield* b.recv())!);
    yield* a.send("ghijkl");
    const limited = text((yield* b.recv({ max: 4 }))!);
    return [first, rest, limited, b.buffered];
  })());
  assert.deepEqual(got, ["ab", "cdef", "ghij", 2]);
  a.close();
  b.close();
});

Deno.test("recv({ max }) with max 0, a fraction, NaN or Infinity is a RangeError that names max", () => {
  const [a, b] = memoryConnPair();
  for (const max of [0, 1.5, NaN, Infinity, -1]) {
    assert.throws(
      () => b.recv({ max }),
      (error: unknown) =>
        error instanceof RangeError &&
        error.message ===
          `Cannot receive: max must be an integer >= 1, got ${max}`,
    );
  }
  a.close();
  b.close();
});

Deno.test("an aborted send leaves the send queue, and later sends go through", async () => {
  const [a, b] = memoryConnPair({ capacity: 8 });
  const controller = new AbortController();
  const reason = new Error("never mind");
  const received = await run((async function* () {
    const first = yield* spawn((async function* () {
      yield* a.send("0123456789abcdef"); // fills the pipe: the writer slot stays busy
    })());
    yield* delay(1);
    controller.abort(reason);
    try {
      yield* a.send("lost", { signal: controller.signal }); // queued, then aborted
    } catch (error) {
      assert.equal(error, reason);
    }
    const reader = yield* spawn((async function* () {
      return text(yield* b.recvExact(20));
    })());
    yield* a.send("tail");
    yield* first.join();
    return yield* reader.join();
  })());
  assert.equal(received, "0123456789abcdeftail");
  a.close();
  b.close();
});

/**
 * Runs `body` on a virtual clock from 0 with a memory pair, closing the
 * pair after.
 */
async function onVirtualPair<T>(
  body: (
    a: Connection,
    b: Connection,
    clock: VirtualClock,
  ) => AsyncGenerator<Effect, T, unknown>,
): Promise<T> {
  const clock = new VirtualClock({ start: 0 });
  const [a, b] = memoryConnPair();
  try {
    return await run(body(a, b, clock), { clock });
  } finally {
    a.close();
    b.close();
  }
}

Deno.test("each recv() of a loop times out at its own deadline, not the first's", async () => {
  const result = await onVirtualPair(async function* (a, b, clock) {
    yield* spawn((async function* () {
      for (let i = 0; i < 5; i++) {
        yield* delay(30);
        yield* a.send("x");
      }
    })());
    let received = 0;
    try {
      for (;;) {
        yield* b.recv({ timeout: 100 });
        received++;
      }
    } catch (error) {
      assert.ok(error instanceof TimeoutError);
      return [received, clock.now()];
    }
  });
  // The last byte came at 150: the recv after it times out at 250, though
  // the first recv's deadline (100) passed long before.
  assert.deepEqual(result, [5, 250]);
});

Deno.test("a wait with no deadline after a timed one is not timed out by it", async () => {
  const result = await onVirtualPair(async function* (a, b, clock) {
    yield* spawn((async function* () {
      yield* delay(10);
      yield* a.send("first");
      yield* delay(490);
      yield* a.send("second");
    })());
    const first = text(yield* b.recv({ timeout: 100 }));
    const second = text(yield* b.recv()); // past 110, the first's deadline
    return [first, second, clock.now()];
  });
  assert.deepEqual(result, ["first", "second", 500]);
});

Deno.test("a shorter timeout after a longer one fires at its own deadline", async () => {
  const result = await onVirtualPair(async function* (a, b, clock) {
    yield* spawn((async function* () {
      yield* delay(10);
      yield* a.send("first");
    })());
    yield* b.recv({ timeout: 1000 }); // deadline 1000, done at 10
    try {
      yield* b.recv({ timeout: 50 });
    } catch (error) {
      assert.ok(error instanceof TimeoutError);
      return clock.now();
    }
  });
  assert.equal(result, 60);
});

/** A transport that records each write it is handed (partial: `max`). */
function recordingTransport(writes: string[], max = Infinity): Transport {
  return {
    read: () => new Promise(() => {}),
    write(bytes) {
      const n = Math.min(bytes.length, max);
      writes.push(new TextDecoder().decode(bytes.subarray(0, n)));
      return Promise.resolve(n);
    },
    closeWrite: () => Promise.resolve(),
    close() {},
    localAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1 },
    remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 2 },
  };
}

Deno.test("send() of a list up to 64 KiB in all is one write of its chunks in order, empty chunks and strings included", async () => {
  const writes: string[] = [];
  const conn = new Connection(recordingTransport(writes), {
    isExternal: false,
  });
  const bytes = new TextEncoder();
  await run((function* () {
    yield* conn.send([
      "GET ",
      bytes.encode("/index.html"),
      "",
      " HTTP/1.1\r\n",
    ]);
    yield* conn.send([]);
    yield* conn.send(["", new Uint8Array(0)]);
    yield* conn.send(["one chunk"]);
  })());
  conn.close();
  assert.deepEqual(writes, ["GET /index.html HTTP/1.1\r\n", "one chunk"]);
});

Deno.test("send() of a list of many small chunks gathers them, in order, into writes of at most 64 KiB", async () => {
  const writes: string[] = [];
  const conn = new Connection(recordingTransport(writes), {
    isExternal: false,
  });
  const chunks = Array.from(
    { length: 30_000 },
    (_, i) => `VALUE ${String(i).padStart(5, "0")}\r\n`,
  );
  await run((function* () {
    yield* conn.send(chunks);
  })());
  conn.close();
  // 30,000 chunks of 13 bytes: 390,000 bytes in 6 writes, not 30,000.
  assert.equal(writes.length, 6);
  assert.ok(writes.every((write) => write.length <= 64 * 1024));
  assert.equal(writes.join(""), chunks.join(""));
});

Deno.test("send() of a list writes a chunk of 16 KiB or more as it is, the small ones around it gathered, each write handed what the one before left", async () => {
  const writes: string[] = [];
  const conn = new Connection(recordingTransport(writes, 40_000), {
    isExternal: false,
  });
  const big = "b".repeat(70_000);
  await run((function* () {
    yield* conn.send(["head", ":", big, ":", "tail"]);
  })());
  conn.close();
  assert.deepEqual(writes.map((write) => write.length), [
    5,
    40_000,
    30_000,
    5,
  ]);
  assert.equal(writes.join(""), `head:${big}:tail`);
});

for (const pairs of pairMakers) {
  Deno.test(`send() of a list is one send: another coroutine's send never comes between its chunks [${pairs.name}]`, async () => {
    const { a, b, dispose } = await pairs.make();
    const size = 100_000;
    const chunk = (fill: number) => new Uint8Array(size).fill(fill);
    const received = await run((function* () {
      const senders = [
        yield* spawn((function* () {
          yield* a.send([chunk(65), chunk(66), chunk(67)]);
        })()),
        yield* spawn((function* () {
          yield* a.send(chunk(68));
        })()),
        yield* spawn((function* () {
          yield* a.send([chunk(69), "", chunk(70)]);
        })()),
      ];
      const all = yield* b.recvExact(6 * size);
      for (const sender of senders) yield* sender.join();
      return all;
    })());
    // The runs of bytes, in the order they came.
    const runs = [String.fromCharCode(received[0])];
    for (let i = 1; i < received.length; i++) {
      if (received[i] !== received[i - 1]) {
        runs.push(String.fromCharCode(received[i]));
      }
    }
    assert.ok(
      ["ABCDEF", "ABCEFD", "DABCEF", "DEFABC", "EFABCD", "EFDABC"].includes(
        runs.join(""),
      ),
      runs.join(""),
    );
    await dispose();
  });
}

Deno.test("send() of a list that times out after its first chunk closes the connection", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair({ capacity: 16 });
  const outcome = await run(
    (async function* () {
      try {
        yield* a.send([new Uint8Array(16), new Uint8Array(16)], {
          timeout: 100,
        });
      } catch (error) {
        return `${(error as Error).name} at ${clock.now()}`;
      }
    })(),
    { clock },
  );
  assert.equal(outcome, "TimeoutError at 100");
  assert.equal(a.isClosed, true);
  b.close();
});
