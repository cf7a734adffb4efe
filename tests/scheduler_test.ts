import assert from "node:assert/strict";
import { AsyncLocalStorage } from "node:async_hooks";
import { handClock } from "./_hand_clock.ts";
import {
  CancelledError,
  type Coroutine,
  delay,
  type Effect,
  Inbox,
  now,
  type Operation,
  Pool,
  run,
  Scheduler,
  spawn,
  systemClock,
  type Task,
  TimeoutError,
  wait,
} from "@corio/corio";
import { memoryConnPair, VirtualClock } from "@corio/corio/testing";

Deno.test("run() resolves with the coroutine's return value, function* and async function*", async () => {
  assert.equal(
    await run((function* () {
      yield* delay(1);
      return 1;
    })()),
    1,
  );
  assert.equal(
    await run((async function* () {
      yield* delay(1);
      return 2;
    })()),
    2,
  );
});

Deno.test("run() rejects with the coroutine's error", async () => {
  await assert.rejects(
    run((function* () {
      yield* delay(1);
      throw new Error("boom");
    })()),
    { message: "boom" },
  );
});

Deno.test("a bare yield is a TypeError thrown into the coroutine, which names what it yielded", async () => {
  const cases: [unknown, string][] = [
    [5, "5"],
    [undefined, "undefined (a bare `yield`)"],
    ["recv", '"recv"'],
    [Promise.resolve(1), "a Promise (use yield* wait(promise))"],
    [{}, "[object Object]"],
    [delay(5), "the operation delay itself (yield without *)"],
    [(function* () {})(), "a generator (yield without *)"],
    [
      { [Symbol.iterator]() {}, [Symbol.asyncIterator]() {} },
      "an operation (yield without *)",
    ],
    [new Uint8Array(1), "[object Uint8Array]"],
  ];
  for (const [value, named] of cases) {
    const caught = await run((function* () {
      try {
        yield value as never;
      } catch (error) {
        return error;
      }
    })() as unknown as Coroutine<unknown>);
    assert.ok(caught instanceof TypeError);
    assert.equal(
      caught.message,
      `Cannot run coroutine: it yielded ${named}; use yield* with an operation (yield* conn.recv(), yield* delay(ms))`,
    );
  }
});

/** Cancels a child waiting in `delay(Infinity)`: what its code and join saw. */
async function cancelLog(
  child: (log: string[]) => Coroutine<void>,
): Promise<string[]> {
  const log: string[] = [];
  await run((function* () {
    const task = yield* spawn(child(log));
    yield* delay(5);
    task.cancel();
    try {
      yield* task.join();
    } catch (error) {
      assert.ok(error instanceof CancelledError);
      log.push("join: cancelled");
    }
  })());
  return log;
}

Deno.test("a coroutine closes everything it owns when it ends, one resource or three", async () => {
  for (const count of [1, 3]) {
    const closed: number[] = [];
    const owns = Array.from({ length: count }, (_, i) => ({
      close: () => void closed.push(i),
    }));
    const scheduler = new Scheduler();
    await scheduler.spawn(
      (function* () {
        yield* delay(1);
      })(),
      { owns },
    ).finished;
    assert.deepEqual(closed, owns.map((_, i) => i), `${count} owned`);
  }
});

Deno.test("an owned Deno.Listener the coroutine closed itself is not an error when it ends; another close() error is reported", async () => {
  const reported: unknown[] = [];
  const scheduler = new Scheduler({ onError: (error) => reported.push(error) });
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const failing = new Error("close failed");
  await scheduler.spawn(
    (function* () {
      yield* delay(1);
      listener.close(); // a second close() throws BadResource
    })(),
    {
      owns: [listener, {
        close: () => {
          throw failing;
        },
      }],
    },
  ).finished;
  assert.deepEqual(reported, [failing]);
});

Deno.test("cancel() runs finally blocks and cannot be swallowed", async () => {
  const log = await cancelLog(function* (log) {
    try {
      yield* delay(Infinity);
    } catch {
      log.push("caught"); // never: cancellation is not an error
    } finally {
      log.push("finally");
    }
    log.push("after");
  });
  assert.deepEqual(log, ["finally", "join: cancelled"]);
});

Deno.test("children are cancelled when their parent ends, and the parent waits for their finally", async () => {
  const log: string[] = [];
  await run((async function* () {
    for (const name of ["a", "b"]) {
      yield* spawn((async function* () {
        try {
          yield* delay(Infinity);
        } finally {
          log.push(`${name} finally`);
        }
      })());
    }
    yield* delay(1);
    log.push("parent returns");
  })());
  assert.deepEqual(log, ["parent returns", "a finally", "b finally"]);
});

Deno.test("cancelling a parent cancels its whole tree", async () => {
  const finished: string[] = [];
  const controller = new AbortController();
  const reason = new Error("stop");
  const outcome = run(
    (function* () {
      yield* spawn((function* () {
        try {
          yield* spawn((function* () {
            try {
              yield* delay(Infinity);
            } finally {
              finished.push("grandchild");
            }
          })());
          yield* delay(Infinity);
        } finally {
          finished.push("child");
        }
      })());
      try {
        yield* delay(Infinity);
      } finally {
        finished.push("parent");
      }
    })(),
    { signal: controller.signal },
  );
  setTimeout(() => controller.abort(reason), 5);
  await assert.rejects(outcome, (error) => error === reason);
  assert.deepEqual(finished.sort(), ["child", "grandchild", "parent"]);
});

Deno.test("a child's unjoined error fails the parent", async () => {
  await assert.rejects(
    run((function* () {
      yield* spawn((function* () {
        yield* delay(1);
        throw new Error("child failed");
      })());
      yield* delay(10);
    })()),
    { message: "child failed" },
  );
});

Deno.test("join() delivers a child's error to the joiner, once", async () => {
  const message = await run((function* () {
    const child = yield* spawn((function* () {
      yield* delay(1);
      throw new Error("child failed");
    })());
    try {
      yield* child.join();
    } catch (error) {
      return (error as Error).message;
    }
  })());
  assert.equal(message, "child failed");
});

Deno.test("join() with a timeout throws TimeoutError and leaves the child running", async () => {
  const clock = new VirtualClock();
  const result = await run(
    (function* () {
      const child = yield* spawn((function* () {
        yield* delay(500);
        return "late";
      })());
      try {
        yield* child.join({ timeout: 100 });
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
      }
      return [clock.now(), yield* child.join(), clock.now()];
    })(),
    { clock },
  );
  assert.deepEqual(result, [100, "late", 500]);
});

Deno.test("a cancelled coroutine may still do cleanup I/O in finally", async () => {
  const [a, b] = memoryConnPair();
  const said = await run((function* () {
    const task = yield* spawn((function* () {
      try {
        yield* a.recv();
      } finally {
        yield* a.send("bye\n");
      }
    })());
    yield* delay(1);
    task.cancel();
    return yield* b.recvLine();
  })());
  assert.equal(said, "bye");
  a.close();
  b.close();
});

Deno.test("wait() gives the promise's value, or TimeoutError at its deadline", async () => {
  const value = await run((function* () {
    return yield* wait(
      new Promise<number>((resolve) => setTimeout(() => resolve(7), 5)),
    );
  })());
  assert.equal(value, 7);
  let resolveLater!: (value: number) => void;
  const never = new Promise<number>((resolve) => resolveLater = resolve);
  await assert.rejects(
    run((function* () {
      yield* wait(never, { timeout: 10 });
    })()),
    { name: "TimeoutError", op: "wait" },
  );
  resolveLater(1);
});

for (const form of ["function*", "async function*"]) {
  Deno.test(`wait() in a ${form} gives a promise already settled its value or rejection, even with timeout 0 or a deadline already past`, async () => {
    for (const clock of [systemClock, new VirtualClock()]) {
      const got = await run(
        (function* () {
          const out: unknown[] = [];
          const cases = [
            () => wait(Promise.resolve("now"), { timeout: 0 }),
            () => wait(Promise.resolve("past"), { deadline: clock.now() - 1 }),
            () => wait(Promise.reject(new Error("no")), { timeout: 0 }),
          ];
          for (const op of cases) {
            const child = form === "function*"
              ? (function* () {
                return yield* op();
              })()
              : (async function* () {
                return yield* op();
              })();
            try {
              out.push(yield* (yield* spawn(child)).join());
            } catch (error) {
              out.push((error as Error).message);
            }
          }
          return out;
        })(),
        { clock },
      );
      assert.deepEqual(got, ["now", "past", "no"]);
    }
  });
}

Deno.test("wait() for a pending promise with timeout 0 times out a timer turn later, on the virtual clock too", async () => {
  for (const clock of [systemClock, new VirtualClock()]) {
    let resolveLater!: (value: number) => void;
    const pending = new Promise<number>((resolve) => resolveLater = resolve);
    const started = clock.now();
    await assert.rejects(
      run(
        (async function* () {
          yield* wait(pending, { timeout: 0 });
        })(),
        { clock },
      ),
      { name: "TimeoutError", op: "wait" },
    );
    resolveLater(1);
    if (clock !== systemClock) assert.equal(clock.now(), started);
  }
});

Deno.test("wait() throws the promise's rejection, whether it came before the wait or during it", async () => {
  const before = wait(Promise.reject(new Error("before")));
  let rejectDuring!: (error: Error) => void;
  const during = new Promise<never>((_, reject) => rejectDuring = reject);
  const messages = await run((function* () {
    const out: string[] = [];
    yield* delay(1); // the first rejection has reached its operation by now
    try {
      yield* before;
    } catch (error) {
      out.push((error as Error).message);
    }
    setTimeout(() => rejectDuring(new Error("during")), 1);
    try {
      yield* wait(during);
    } catch (error) {
      out.push((error as Error).message);
    }
    return out;
  })());
  assert.deepEqual(messages, ["before", "during"]);
  const inAsync = run((async function* () {
    yield* wait(Promise.reject(new Error("async")));
  })());
  await assert.rejects(inAsync, { message: "async" });
});

Deno.test("an operation a second coroutine runs while the first still waits in it throws TypeError there, and the first gets its result", async () => {
  // The real clock: a virtual one stands still while a promise is awaited.
  const cases: (() => [Operation<string>, () => void])[] = [
    () => {
      let resolve!: (value: string) => void;
      const promise = new Promise<string>((r) => resolve = r);
      return [wait(promise), () => resolve("promised")];
    },
    () => {
      const inbox = new Inbox<string>();
      return [inbox.recv(), () => inbox.push("pushed")];
    },
  ];
  const outcomes = await run((async function* () {
    const out: string[] = [];
    for (const make of cases) {
      // One in a function*, one in an async function*, each way round.
      for (const kinds of [["sync", "async"], ["async", "sync"]]) {
        const [op, finish] = make();
        const tasks = [];
        for (const kind of kinds) {
          const body = kind === "sync"
            ? function* () {
              return yield* op;
            }
            : async function* () {
              return yield* op;
            };
          tasks.push(yield* spawn(body()));
          yield* delay(1);
        }
        finish();
        for (const task of tasks) {
          try {
            out.push(yield* task.join({ timeout: 1000 }));
          } catch (error) {
            out.push(`${(error as Error).name}: ${(error as Error).message}`);
          }
        }
      }
    }
    return out;
  })());
  // Before, the second run took the first one's place as the waiter: the
  // first waited until its join timed out.
  const refused = (op: string) =>
    `TypeError: Cannot run ${op}: the operation is already running in another coroutine; make one for each (call ${op}() in each coroutine)`;
  assert.deepEqual(outcomes, [
    "promised",
    refused("wait"),
    "promised",
    refused("wait"),
    "pushed",
    refused("recv"),
    "pushed",
    refused("recv"),
  ]);
});

Deno.test("coroutines may wait in one join operation together", async () => {
  const clock = new VirtualClock({ start: 0 });
  const got = await run(
    (function* () {
      const worker = yield* spawn((function* () {
        yield* delay(25);
        return "done";
      })());
      const join = worker.join();
      const waiters = [];
      for (let i = 0; i < 3; i++) {
        waiters.push(
          yield* spawn((async function* () {
            const started = clock.now();
            return `${started} ${yield* join} ${clock.now()}`;
          })()),
        );
        yield* delay(10);
      }
      const out = [];
      for (const waiter of waiters) out.push(yield* waiter.join());
      return out;
    })(),
    { clock },
  );
  assert.deepEqual(got, ["0 done 25", "10 done 25", "20 done 25"]);
});

Deno.test("delay(NaN) and a NaN deadline are RangeErrors, not waits that never end", () => {
  assert.throws(() => delay(NaN), {
    name: "RangeError",
    message: "Cannot delay: ms is NaN",
  });
  assert.throws(() => wait(Promise.resolve(1), { deadline: NaN }), {
    name: "RangeError",
    message: "Cannot start operation: deadline is NaN",
  });
});

Deno.test("run() with a signal already aborted rejects with its reason and never starts the coroutine", async () => {
  const abort = new AbortController();
  abort.abort(new Error("not wanted"));
  let hasStarted = false;
  await assert.rejects(
    run(
      (function* () {
        hasStarted = true;
        yield* delay(1);
      })(),
      { signal: abort.signal },
    ),
    { message: "not wanted" },
  );
  assert.equal(hasStarted, false);
});

Deno.test("delay() sleeps on the virtual clock exactly, without real time", async () => {
  const clock = new VirtualClock();
  const started = performance.now();
  const times = await run(
    (function* () {
      const out: number[] = [];
      for (const ms of [1000, 0, -5, 60_000]) {
        yield* delay(ms);
        out.push(clock.now());
      }
      return out;
    })(),
    { clock },
  );
  assert.deepEqual(times, [1000, 1000, 1000, 61_000]);
  assert.ok(performance.now() - started < 1000);
});

Deno.test("the virtual clock fires concurrent delays in deadline order", async () => {
  const clock = new VirtualClock();
  const order = await run(
    (function* () {
      const log: number[] = [];
      const tasks = [];
      for (const ms of [300, 100, 200, 100]) {
        tasks.push(
          yield* spawn((function* () {
            yield* delay(ms);
            log.push(clock.now());
          })()),
        );
      }
      for (const task of tasks) yield* task.join();
      return log;
    })(),
    { clock },
  );
  assert.deepEqual(order, [100, 100, 200, 300]);
});

for (const form of ["function*", "async function*"]) {
  Deno.test(`${form} coroutines delayed to the same instant wake in the order they began waiting`, async () => {
    const clock = new VirtualClock();
    const woke = await run(
      (function* () {
        const log: number[] = [];
        const tasks = [];
        for (let i = 0; i < 12; i++) {
          tasks.push(
            yield* spawn(
              form === "function*"
                ? (function* () {
                  yield* delay(10);
                  log.push(i);
                })()
                : (async function* () {
                  yield* delay(10);
                  log.push(i);
                })(),
            ),
          );
        }
        for (const task of tasks) yield* task.join();
        return log;
      })(),
      { clock },
    );
    assert.deepEqual(woke, Array.from({ length: 12 }, (_, i) => i));
    assert.equal(clock.now(), 10);
  });
}

Deno.test("coroutines waiting the same delay each wake at their own deadline", async () => {
  const clock = new VirtualClock();
  const log = await run(
    (function* () {
      const log: string[] = [];
      const at = (name: string) => log.push(`${name} ${clock.now()}`);
      const a = yield* spawn((function* () {
        yield* delay(100);
        at("a");
      })());
      const b = yield* spawn((async function* () {
        yield* delay(30);
        yield* delay(100);
        at("b");
      })());
      const c = yield* spawn((async function* () {
        try {
          yield* delay(100);
        } finally {
          at("c ended");
        }
      })());
      const d = yield* spawn((function* () {
        const wait = delay(100);
        yield* wait;
        yield* wait;
        at("d");
      })());
      yield* delay(50);
      c.cancel();
      for (const task of [a, b, d]) yield* task.join();
      return log;
    })(),
    { clock },
  );
  assert.deepEqual(log, ["c ended 50", "a 100", "b 130", "d 200"]);
});

Deno.test("a timeout renewed by each message fires at the last one's deadline, and a shorter one after it at its own", async () => {
  const timeouts = [1000, 1000, 150, 1000, 1000];
  for (const isAsync of [false, true]) {
    const clock = new VirtualClock();
    const inbox = new Inbox<string>();
    const log: string[] = [];
    const got = (message: string) => log.push(`${message} ${clock.now()}`);
    const timedOut = (error: unknown) => {
      assert.ok(error instanceof TimeoutError);
      log.push(`timeout ${clock.now()}`);
    };
    const scheduler = new Scheduler({ clock });
    scheduler.spawn((function* () {
      for (const at of [100, 500, 700]) {
        yield* delay(at - clock.now());
        inbox.push(`m${at}`);
      }
    })());
    await scheduler.spawn(
      isAsync
        ? (async function* () {
          for (const timeout of timeouts) {
            try {
              got(yield* inbox.recv({ timeout }));
            } catch (error) {
              timedOut(error);
            }
          }
        })()
        : (function* () {
          for (const timeout of timeouts) {
            try {
              got(yield* inbox.recv({ timeout }));
            } catch (error) {
              timedOut(error);
            }
          }
        })(),
    ).finished;
    assert.deepEqual(
      log,
      ["m100 100", "m500 500", "timeout 650", "m700 700", "timeout 1700"],
      isAsync ? "async function*" : "function*",
    );
  }
});

Deno.test("VirtualClock fires a timer armed for the current time a macrotask later, even while a scheduler is busy; time does not move", async () => {
  const clock = new VirtualClock({ start: 50 });
  clock.poke(() => false); // a scheduler that never goes idle
  const fired: string[] = [];
  clock.setTimer(50, () => fired.push("now"));
  clock.setTimer(40, () => fired.push("past"));
  clock.setTimer(60, () => fired.push("later"));
  assert.deepEqual(fired, []);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(fired, ["past", "now"]);
  assert.equal(clock.now(), 50);
  assert.equal(clock.pending, 1);
  clock.advance(10);
  assert.deepEqual(fired, ["past", "now", "later"]);
});

Deno.test("VirtualClock jumps to a timer armed after every scheduler on it went idle (no poke comes after it)", async () => {
  const clock = new VirtualClock();
  const inbox = new Inbox<number>();
  const waiting = run(
    (function* () {
      return yield* inbox.recv(); // idle, with no deadline
    })(),
    { clock },
  );
  await new Promise((resolve) => setTimeout(resolve, 0));
  clock.setTimer(100, () => inbox.push(clock.now()));
  assert.equal(await waiting, 100);
});

Deno.test("VirtualClock: a test that awaits a timer armed for now acts before time jumps", async () => {
  for (let i = 0; i < 5; i++) {
    const clock = new VirtualClock();
    const [a, b] = memoryConnPair();
    const got = run(
      (function* () {
        const line = yield* b.recvLine({ timeout: 100 });
        return `${line} at ${clock.now()}`;
      })(),
      { clock },
    );
    for (let j = 0; j < 10; j++) await Promise.resolve(); // it has parked
    await new Promise<void>((resolve) => clock.setTimer(clock.now(), resolve));
    const seen = clock.now();
    await run(
      (function* () {
        yield* a.send("x\n");
      })(),
      { clock },
    );
    assert.deepEqual([seen, await got], [0, "x at 0"]);
    a.close();
    b.close();
  }
});

Deno.test("VirtualClock holds time still for a scheduler whose only waits are real, while another sleeps", async () => {
  const clock = new VirtualClock();
  const sleeper = run(
    (function* () {
      yield* delay(10_000);
    })(),
    { clock },
  );
  const real = new Promise<string>((resolve) =>
    setTimeout(() => resolve("real"), 30)
  );
  const waiter = run(
    (function* () {
      return yield* wait(real, { timeout: 1000 });
    })(),
    { clock },
  );
  assert.equal(await waiter, "real");
  assert.equal(clock.now(), 0);
  await sleeper;
  assert.equal(clock.now(), 10_000);
});

Deno.test("VirtualClock does not jump to the deadline of a wait that has ended", async () => {
  const clock = new VirtualClock();
  const [conn, peer] = memoryConnPair();
  const stamps: number[] = [];
  const handler = run(
    (function* () {
      yield* conn.recvLine({ timeout: 5000 });
      stamps.push(clock.now());
      yield* conn.recvLine(); // no deadline: nothing waits on time now
      stamps.push(clock.now());
    })(),
    { clock },
  );
  await run(
    (function* () {
      yield* peer.send("hello\n");
    })(),
    { clock },
  );
  await new Promise((resolve) => setTimeout(resolve, 5));
  const before = clock.now();
  assert.equal(clock.pending, 0);
  await run(
    (function* () {
      yield* peer.send("second\n");
    })(),
    { clock },
  );
  await handler;
  conn.close();
  peer.close();
  assert.deepEqual([before, ...stamps], [0, 0, 0]);
});

Deno.test("VirtualClock without autojump moves only with advance()", async () => {
  const clock = new VirtualClock({ autojump: false });
  let isDone = false;
  const outcome = run(
    (function* () {
      yield* delay(1000);
      isDone = true;
    })(),
    { clock },
  );
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(isDone, false);
  clock.advance(999);
  assert.equal(isDone, false);
  clock.advance(1);
  await outcome;
  assert.equal(isDone, true);
});

Deno.test("the scheduler arms one host timer for many deadlines", async () => {
  const armed: number[] = [];
  let live = 0;
  let maxLive = 0;
  const clock = new VirtualClock();
  const counting = {
    now: () => clock.now(),
    setTimer(at: number, callback: () => void) {
      armed.push(at);
      maxLive = Math.max(maxLive, ++live);
      return clock.setTimer(at, () => {
        live--;
        callback();
      });
    },
    clearTimer(handle: unknown) {
      live--;
      clock.clearTimer(handle);
    },
    poke: (isIdle: () => boolean) => clock.poke(isIdle),
  };
  await run(
    (function* () {
      const tasks = [];
      for (let i = 0; i < 1000; i++) {
        tasks.push(
          yield* spawn((function* () {
            yield* delay(1000 + (i % 50));
          })()),
        );
      }
      for (const task of tasks) yield* task.join();
    })(),
    { clock: counting },
  );
  assert.equal(maxLive, 1);
  assert.ok(armed.length <= 51, `armed ${armed.length} times`);
});

Deno.test("Scheduler.spawn() runs top-level tasks side by side", async () => {
  const scheduler = new Scheduler({ clock: new VirtualClock() });
  const a = scheduler.spawn((function* () {
    yield* delay(20);
    return "a";
  })());
  const b = scheduler.spawn((function* () {
    yield* delay(10);
    return "b";
  })());
  assert.equal(scheduler.size, 2);
  assert.deepEqual(await Promise.all([a.finished, b.finished]), ["a", "b"]);
  assert.equal(scheduler.size, 0);
});

Deno.test("a failed top-level task nobody awaits goes to onError", async () => {
  const errors: unknown[] = [];
  const scheduler = new Scheduler({ onError: (error) => errors.push(error) });
  const task = scheduler.spawn((function* () {
    yield* delay(1);
    throw new Error("unseen");
  })());
  while (!task.isDone) await new Promise((resolve) => setTimeout(resolve, 1));
  assert.equal((errors[0] as Error).message, "unseen");
});

Deno.test("an onError that throws while timers fire is logged, and later deadlines still fire", async () => {
  // fire() runs the armed host timer here, so anything thrown out of it
  // would reach the test instead of the event loop.
  const { host, clock, fire } = handClock();
  const scheduler = new Scheduler({
    clock,
    onError: (error) => {
      throw error;
    },
  });
  scheduler.spawn((function* () {
    yield* delay(10);
    throw new Error("boom");
  })());
  const later = scheduler.spawn((function* () {
    yield* delay(20);
    return "later";
  })());
  await Promise.resolve(); // both start and park
  const logged: unknown[][] = [];
  const consoleError = console.error;
  console.error = (...args: unknown[]) => logged.push(args);
  try {
    fire();
  } finally {
    console.error = consoleError;
  }
  assert.equal(logged[0][0], "corio: onError threw");
  assert.equal((logged[0][1] as Error).message, "boom");
  assert.equal(host.pending?.at, 20);
  fire();
  assert.equal(await later.finished, "later");
});

Deno.test("an operation's signal ends delay() with the reason", async () => {
  const controller = new AbortController();
  const reason = new Error("enough");
  setTimeout(() => controller.abort(reason), 5);
  await assert.rejects(
    run((function* () {
      yield* delay(60_000, { signal: controller.signal });
    })()),
    (error) => error === reason,
  );
});

Deno.test("spawn() rejects what is not a generator object", async () => {
  await assert.rejects(
    run((function* () {
      yield* spawn((() => 5) as unknown as Coroutine<number>);
    })()),
    TypeError,
  );
});

Deno.test("a coroutine with a next() of its own is stepped through it, sync and async", async () => {
  const clock = new VirtualClock();
  const seen: unknown[] = [];
  // A hand-written iterator around a generator.
  const inner = (function* () {
    yield* delay(5);
    return "wrapped";
  })();
  const wrapper = {
    next: (input: unknown) => (seen.push("wrapper"), inner.next(input)),
    return: (value: string) => inner.return(value),
    throw: (error: unknown) => inner.throw(error),
    [Symbol.iterator]() {
      return this;
    },
  };
  assert.equal(
    await run(wrapper as unknown as Coroutine<string>, { clock }),
    "wrapped",
  );
  // Generator objects whose next was replaced after they were made.
  const gen = (function* () {
    yield* delay(5);
    return "sync";
  })();
  const genNext = gen.next;
  gen.next = (input) => (seen.push("sync"), genNext.call(gen, input));
  assert.equal(await run(gen, { clock }), "sync");
  const agen = (async function* () {
    yield* delay(5);
    return "async";
  })();
  const agenNext = agen.next;
  agen.next = (input) => (seen.push("async"), agenNext.call(agen, input));
  assert.equal(await run(agen, { clock }), "async");
  // Each function* took two steps: to its delay, and on from it; the
  // async function* one, as its delay parks in place.
  assert.deepEqual(seen, ["wrapper", "wrapper", "sync", "sync", "async"]);
  assert.equal(clock.now(), 15);
});

Deno.test("delay(0) lets the coroutines already started run first", async () => {
  const order = await run((function* () {
    const log: string[] = [];
    yield* spawn((function* () {
      log.push("child");
      yield* delay(1);
    })());
    log.push("parent before");
    yield* delay(0);
    log.push("parent after");
    return log;
  })());
  assert.deepEqual(order, ["parent before", "child", "parent after"]);
});

for (const form of ["function*", "async function*"]) {
  Deno.test(`${form === "function*" ? "a" : "an"} ${form} looping on delay(0) lets the event loop run: a host timer and a socket read complete`, async () => {
    const LIMIT = 100_000;
    let timerFired = false;
    const timer = setTimeout(() => timerFired = true, 0);
    // A read whose bytes are on their way, completed by the event loop.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const client = await Deno.connect({
      hostname: "127.0.0.1",
      port: listener.addr.port,
    });
    const server = await listener.accept();
    let readDone = false;
    const read = server.read(new Uint8Array(1)).then(() => readDone = true);
    await client.write(new Uint8Array([1]));
    const spin = form === "function*"
      ? (function* () {
        let turns = 0;
        while (!(timerFired && readDone) && turns < LIMIT) {
          turns++;
          yield* delay(0);
        }
        return turns;
      })()
      : (async function* () {
        let turns = 0;
        while (!(timerFired && readDone) && turns < LIMIT) {
          turns++;
          yield* delay(0);
        }
        return turns;
      })();
    try {
      const turns = await run(spin);
      assert.ok(turns < LIMIT, `${turns} delay(0)s without an event loop turn`);
    } finally {
      clearTimeout(timer);
      await read;
      for (const c of [client, server, listener]) c.close();
    }
  });
}

Deno.test("a hand-written async iterator that throws from next() instead of rejecting, or returns a plain result, is run like an async generator; the scheduler's timers go on", async () => {
  const throwsAtOnce = {
    [Symbol.asyncIterator]() {
      return this;
    },
    next(): never {
      throw new Error("thrown, not rejected");
    },
  };
  await assert.rejects(run(throwsAtOnce as unknown as Coroutine), {
    message: "thrown, not rejected",
  });
  const plainResult = {
    [Symbol.asyncIterator]() {
      return this;
    },
    next: () => ({ done: true, value: 42 }),
  };
  assert.equal(await run(plainResult as unknown as Coroutine<number>), 42);
  // Stepped by the scheduler's timer: the throw must not leave it unarmed.
  const errors: unknown[] = [];
  const scheduler = new Scheduler({ onError: (error) => errors.push(error) });
  const wait = delay(5)[Symbol.iterator]();
  let steps = 0;
  const throwsAfterDelay = {
    [Symbol.asyncIterator]() {
      return this;
    },
    next(input: unknown) {
      if (steps++ === 0) return Promise.resolve(wait.next(input));
      throw new Error("thrown after a delay");
    },
  };
  scheduler.spawn(throwsAfterDelay as unknown as Coroutine);
  const later = scheduler.spawn((function* () {
    yield* delay(10);
    yield* delay(10);
    return "fired";
  })());
  assert.equal(await later.finished, "fired");
  assert.deepEqual(errors.map((e) => (e as Error).message), [
    "thrown after a delay",
  ]);
});

for (const form of ["function*", "async function*"]) {
  Deno.test(`${form === "function*" ? "a" : "an"} ${form} cancelled while delay(0) yields to the host runs its finally at once, as a parked one does`, async () => {
    const log: string[] = [];
    const scheduler = new Scheduler();
    const body = function* () {
      try {
        log.push("before");
        yield* delay(0);
        log.push("after");
      } finally {
        log.push("finally");
      }
    };
    const task = scheduler.spawn(
      form === "function*" ? body() : (async function* () {
        yield* body();
      })(),
    );
    for (let i = 0; i < 10; i++) await Promise.resolve(); // reach delay(0)
    task.cancel();
    task.cancel();
    if (form === "function*") assert.deepEqual(log, ["before", "finally"]);
    await assert.rejects(task.finished, CancelledError);
    assert.deepEqual(log, ["before", "finally"]);
  });
}

Deno.test("an async function* child in delay(0)'s host turn, cancelled by its parent ending in the same turn, ends once", async () => {
  const scheduler = new Scheduler();
  const log: string[] = [];
  const parent = scheduler.spawn((function* () {
    yield* spawn((async function* () {
      try {
        for (;;) yield* delay(0);
      } finally {
        log.push("child finally");
      }
    })());
    yield* delay(0); // the parent's host turn comes first in the batch
    return "parent done";
  })());
  assert.equal(await parent.finished, "parent done");
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(log, ["child finally"]);
  assert.equal(scheduler.size, 0);
});

Deno.test("a coroutine that loops on inbox.poll({ timeout: 0 }) or recv({ timeout: 0 }) does not yield to the host each time, as delay(0) does", async () => {
  let hostTimerFired = false;
  const timer = setTimeout(() => hostTimerFired = true, 0);
  const [a, b] = memoryConnPair();
  const seen = await run((function* () {
    const inbox = new Inbox<number>();
    let timeouts = 0;
    for (let i = 0; i < 100; i++) {
      // poll() gives undefined at its deadline; recv() throws.
      if ((yield* inbox.poll({ timeout: 0 })) === undefined) timeouts++;
      try {
        yield* a.recv({ timeout: 0 });
      } catch (error) {
        if (error instanceof TimeoutError) timeouts++;
      }
    }
    return [timeouts, hostTimerFired];
  })());
  clearTimeout(timer);
  a.close();
  b.close();
  assert.deepEqual(seen, [200, false]);
});

for (const kind of ["system", "virtual"]) {
  Deno.test(`equal deadlines wake first come, first served even when the first to wait had an earlier deadline left queued (${kind} clock)`, async () => {
    const clock = kind === "virtual" ? new VirtualClock() : undefined;
    const scheduler = new Scheduler({ clock });
    const inbox = new Inbox<number>();
    const order: string[] = [];
    const t0 = scheduler.now();
    function* sleepUntil(at: number) {
      try {
        yield* new Inbox<never>().recv({ deadline: at });
      } catch (error) {
        if (!(error instanceof TimeoutError)) throw error;
      }
    }
    const a = scheduler.spawn((function* () {
      // Woken at once: its deadline at t0 + 20 stays queued.
      yield* inbox.recv({ timeout: 20 });
      yield* sleepUntil(t0 + 60);
      order.push("A");
    })());
    const b = scheduler.spawn((function* () {
      yield* delay(0);
      inbox.push(1);
      yield* delay(1); // A is in its second wait by now
      yield* sleepUntil(t0 + 60);
      order.push("B");
    })());
    await Promise.all([a.finished, b.finished]);
    assert.deepEqual(order, ["A", "B"]);
  });
}

Deno.test("wait(pending, { timeout: 0 }) times out on a VirtualClock without autojump too, and whenIdle() lets a test step a delay(0) loop by hand", async () => {
  const clock = new VirtualClock({ autojump: false });
  await assert.rejects(
    run(
      (function* () {
        yield* wait(new Promise(() => {}), { timeout: 0 });
      })(),
      { clock },
    ),
    TimeoutError,
  );
  const ticks: number[] = [];
  const done = run(
    (async function* () {
      for (let i = 0; i < 5; i++) {
        yield* delay(0);
        yield* delay(100);
        ticks.push(clock.now());
      }
    })(),
    { clock },
  );
  for (let i = 0; i < 5; i++) {
    await clock.whenIdle();
    clock.advance(100);
  }
  await done;
  assert.deepEqual(ticks, [100, 200, 300, 400, 500]);
});

// async function* coroutines park in place (no yield to the scheduler) and
// find their record through the async context across plain awaits: the
// same guarantees must hold there.

Deno.test("async function*: cancel runs finally and cannot be swallowed, even after a plain await", async () => {
  const log = await cancelLog(async function* (log) {
    await Promise.resolve(); // plain await: not a scheduler wait
    try {
      yield* delay(Infinity);
    } catch {
      log.push("caught"); // never: cancellation is not an error
    } finally {
      log.push("finally");
    }
    log.push("after");
  });
  assert.deepEqual(log, ["finally", "join: cancelled"]);
});

Deno.test("async function*: a child's waits are its own, not its parent's", async () => {
  const clock = new VirtualClock();
  const log: string[] = [];
  const result = await run(
    (async function* () {
      const child = yield* spawn((async function* () {
        try {
          await null;
          yield* delay(1000);
          log.push("child woke");
        } finally {
          log.push(`child finally at ${clock.now()}`);
        }
      })());
      await null;
      yield* delay(10);
      child.cancel(); // the child is parked; the parent is not
      await null;
      yield* delay(5);
      log.push(`parent at ${clock.now()}`);
      return "parent done";
    })(),
    { clock },
  );
  assert.equal(result, "parent done");
  assert.deepEqual(log, ["child finally at 10", "parent at 15"]);
});

Deno.test("async function*: a timeout after a plain await fires exactly, and the next recv gets the bytes", async () => {
  const clock = new VirtualClock();
  const [a, b] = memoryConnPair();
  const got = await run(
    (async function* () {
      await Promise.resolve();
      try {
        yield* a.recv({ timeout: 250 });
        assert.fail("recv should time out");
      } catch (error) {
        assert.ok(error instanceof TimeoutError);
        assert.equal(clock.now(), 250);
      }
      yield* spawn((async function* () {
        yield* b.send("late");
      })());
      return new TextDecoder().decode((yield* a.recv())!);
    })(),
    { clock },
  );
  a.close();
  b.close();
  assert.equal(got, "late");
});

Deno.test("async function*: an aborted signal throws its reason where the coroutine waits", async () => {
  const controller = new AbortController();
  const reason = new Error("enough");
  setTimeout(() => controller.abort(reason), 5);
  await assert.rejects(
    run((async function* () {
      await null;
      yield* delay(60_000, { signal: controller.signal });
    })()),
    (error) => error === reason,
  );
});

Deno.test("async function*: cancelling inside a delegated helper runs both finally blocks", async () => {
  const log: string[] = [];
  async function* helper() {
    try {
      yield* delay(Infinity);
    } finally {
      log.push("helper finally");
    }
  }
  await run((async function* () {
    const task = yield* spawn((async function* () {
      try {
        yield* helper();
      } finally {
        log.push("coroutine finally");
      }
    })());
    yield* delay(1);
    task.cancel();
  })());
  assert.deepEqual(log, ["helper finally", "coroutine finally"]);
});

/** Runs `op` with plain `yield`s: each step goes through the scheduler. */
async function* plainly<T>(
  op: Operation<T>,
): AsyncGenerator<Effect, T, unknown> {
  const it = op[Symbol.iterator]();
  let r = it.next();
  while (!r.done) r = it.next(yield r.value);
  return r.value;
}

Deno.test("async coroutines mixing plain yields and yield* each wait as themselves", async () => {
  const clock = new VirtualClock({ start: 0 });
  const log = await run(
    (async function* () {
      const log: string[] = [];
      const worker = (name: string, step: number) =>
        spawn((async function* () {
          for (let i = 0; i < 3; i++) {
            yield* plainly(delay(step)); // stepped by the scheduler
            log.push(`${name} plain ${clock.now()}`);
            yield* delay(step); // parks in place: must find its own record
            log.push(`${name} yield* ${clock.now()}`);
          }
        })());
      const a = yield* worker("a", 10);
      const b = yield* worker("b", 15);
      yield* a.join();
      yield* b.join();
      return log;
    })(),
    { clock },
  );
  const of = (name: string) => log.filter((line) => line.startsWith(name));
  assert.deepEqual(of("a"), [
    "a plain 10",
    "a yield* 20",
    "a plain 30",
    "a yield* 40",
    "a plain 50",
    "a yield* 60",
  ]);
  assert.deepEqual(of("b"), [
    "b plain 15",
    "b yield* 30",
    "b plain 45",
    "b yield* 60",
    "b plain 75",
    "b yield* 90",
  ]);
});

Deno.test("a caller's AsyncLocalStorage value reaches its coroutines across waits, and theirs only", async () => {
  const request = new AsyncLocalStorage<string>();
  const handle = (id: string, step: number) =>
    request.run(id, () =>
      run((async function* () {
        const seen: (string | undefined)[] = [];
        for (let i = 0; i < 3; i++) {
          yield* plainly(delay(step));
          seen.push(request.getStore());
          yield* delay(step);
          seen.push(request.getStore());
        }
        return seen;
      })()));
  const [one, two] = await Promise.all([handle("one", 1), handle("two", 2)]);
  assert.deepEqual(one, Array(6).fill("one"));
  assert.deepEqual(two, Array(6).fill("two"));
});

Deno.test("an operation whose signal was aborted before it began throws the reason even when its deadline has passed too: delay(0, { signal })", async () => {
  const clock = new VirtualClock();
  const reason = new Error("stop");
  const signal = AbortSignal.abort(reason);
  const outcomes = await run(
    (function* () {
      const out: unknown[] = [];
      for (const ms of [0, 5]) {
        try {
          yield* delay(ms, { signal });
          out.push("slept");
        } catch (error) {
          out.push(error);
        }
      }
      return out;
    })(),
    { clock },
  );
  assert.deepEqual(outcomes, [reason, reason]);
});

Deno.test("a coroutine owning a resource whose settled rejects still ends, and the rejection goes to onError", async () => {
  const reports: unknown[] = [];
  const scheduler = new Scheduler({ onError: (error) => reports.push(error) });
  const failure = new Error("settle failed");
  const settled = Promise.reject(failure);
  settled.catch(() => {}); // rejected before anyone waits on it
  const task = scheduler.spawn(
    (function* () {
      yield* delay(0);
      return 1;
    })(),
    { owns: [{ close() {}, settled }] },
  );
  assert.equal(await task.finished, 1);
  assert.deepEqual(reports, [failure]);
});

Deno.test("an async function* cancelled in a plain await is cancelled at its next yield*, even when that operation's result is at hand", async () => {
  const inbox = new Inbox<number>();
  for (let i = 0; i < 5; i++) inbox.push(i);
  const got: number[] = [];
  let proceed!: () => void;
  const awaited = new Promise<void>((resolve) => proceed = resolve);
  const scheduler = new Scheduler();
  const task = scheduler.spawn((async function* () {
    await awaited; // no cancel reaches a plain await
    for (;;) got.push(yield* inbox.recv());
  })());
  await Promise.resolve();
  task.cancel();
  proceed();
  await assert.rejects(task.finished, CancelledError);
  assert.deepEqual([got, inbox.size], [[], 5]);
});

Deno.test("a function* woken and then cancelled before it runs is cancelled at the wait it leaves: the message stays queued", async () => {
  const inbox = new Inbox<number>();
  const got: number[] = [];
  const outcome = await run(
    (function* () {
      const child = yield* spawn((function* () {
        for (;;) got.push(yield* inbox.recv());
      })());
      yield* delay(1); // the child waits in recv
      inbox.push(1); // wakes it: queued to run after this coroutine
      inbox.push(2);
      child.cancel();
      try {
        yield* child.join();
      } catch (error) {
        return (error as Error).name;
      }
    })(),
    { clock: new VirtualClock() },
  );
  assert.deepEqual([outcome, got, inbox.size], ["CancelledError", [], 2]);
});

Deno.test("now() gives the time on the running coroutine's clock, in function* and async function*", async () => {
  const clock = new VirtualClock({ start: 1_000_000 });
  const seen = await run(
    (async function* () {
      const times = [yield* now()];
      yield* delay(250);
      times.push(yield* now());
      const child = yield* spawn((function* () {
        yield* delay(50);
        return yield* now();
      })());
      times.push(yield* child.join());
      return times;
    })(),
    { clock },
  );
  assert.deepEqual(seen, [1_000_000, 1_000_250, 1_000_300]);
});

Deno.test("one now() operation run again reads the clock again", async () => {
  const clock = new VirtualClock();
  for (const form of ["function*", "async function*"]) {
    const start = clock.now();
    const times = await run(
      form === "function*"
        ? (function* () {
          const time = now();
          const first = yield* time;
          yield* delay(250);
          return [first, yield* time];
        })()
        : (async function* () {
          const time = now();
          const first = yield* time;
          yield* delay(250);
          return [first, yield* time];
        })(),
      { clock },
    );
    assert.deepEqual(times, [start, start + 250], form);
  }
});

Deno.test("spawn(child, { owns }) closes what the child owns when the child ends, while its parent goes on", async () => {
  const [conn, peer] = memoryConnPair();
  const seen = await run((function* () {
    const child = yield* spawn(
      (function* () {
        yield* conn.send("bye\n");
      })(),
      { owns: [conn] },
    );
    yield* child.join();
    const closedAtChildEnd = conn.isClosed;
    yield* delay(1);
    return { closedAtChildEnd, peerGot: yield* peer.recvLine() };
  })());
  peer.close();
  assert.deepEqual(seen, { closedAtChildEnd: true, peerGot: "bye" });
});

Deno.test("an already aborted signal throws its reason at once, even from an operation whose result is at hand", async () => {
  const reason = new Error("stop");
  const controller = new AbortController();
  controller.abort(reason);
  const signal = controller.signal;
  const [conn, peer] = memoryConnPair();
  const [c2, p2] = memoryConnPair();
  const pool = new Pool({
    max: 1,
    // deno-lint-ignore require-yield
    *dial() {
      return c2;
    },
  });
  const got = await run(
    (function* () {
      const out: Record<string, string> = {};
      function* t(
        name: string,
        f: () => Generator<Effect, unknown, unknown>,
      ): Generator<Effect, void, unknown> {
        try {
          yield* f();
          out[name] = "returned";
        } catch (e) {
          out[name] = e === reason ? "reason" : String(e);
        }
      }
      yield* peer.send("abc\ndef\n");
      yield* conn.recvLine({ timeout: 100 }); // both lines now buffered
      yield* t("recvLine (line buffered)", function* () {
        yield* conn.recvLine({ signal });
      });
      const inbox = new Inbox<number>();
      inbox.push(1);
      yield* t("inbox.recv (message queued)", function* () {
        yield* inbox.recv({ signal });
      });
      const child = yield* spawn((function* () {
        return 1;
      })());
      yield* delay(1);
      yield* t("join (task finished)", function* () {
        yield* child.join({ signal });
      });
      yield* t("wait (promise settled)", function* () {
        yield* wait(Promise.resolve(1), { signal });
      });
      yield* t("send (room in the pipe)", function* () {
        yield* conn.send("x", { signal });
      });
      yield* t("delay(0)", function* () {
        yield* delay(0, { signal });
      });
      {
        using _l = yield* pool.acquire();
      }
      yield* t("acquire (idle connection)", function* () {
        using _l = yield* pool.acquire({ signal });
      });
      return out;
    })(),
    { clock: new VirtualClock() },
  );
  await pool.close();
  conn.close();
  peer.close();
  p2.close();
  const notThrown = Object.entries(got).filter(([, v]) => v !== "reason").map((
    [k, v],
  ) => `${k}: ${v}`);
  assert.deepEqual(notThrown, [], JSON.stringify(got, null, 1));
});

Deno.test("a chain of 20,000 nested spawns, each parent ending before its child, settles without overflowing the stack", async () => {
  const clock = new VirtualClock();
  const scheduler = new Scheduler({ clock });
  let deepest = -1;
  function* level(n: number): Generator<Effect, void, unknown> {
    if (n > 0) yield* spawn(level(n - 1));
    yield* delay(1);
    if (n === 0) deepest = clock.now();
  }
  const task = scheduler.spawn(level(20_000));
  await task.finished;
  assert.equal(scheduler.size, 0);
  assert.equal(deepest, -1); // each child was cancelled as its parent ended
});

for (const form of ["function*", "async function*"] as const) {
  Deno.test(`a coroutine that joins its own task gets a TypeError instead of waiting for ever (${form})`, async () => {
    const scheduler = new Scheduler({ clock: new VirtualClock() });
    const self: { task?: Task<unknown> } = {};
    const body = form === "function*"
      ? (function* () {
        yield* delay(1);
        try {
          yield* self.task!.join();
        } catch (error) {
          return error;
        }
      })()
      : (async function* () {
        yield* delay(1);
        try {
          yield* self.task!.join();
        } catch (error) {
          return error;
        }
      })();
    self.task = scheduler.spawn(body);
    const error = await self.task.finished;
    assert.ok(error instanceof TypeError, String(error));
    assert.match(error.message, /^Cannot join task: it is the coroutine/);
  });
}

Deno.test("cleanup that waits, in a helper run as a child: a cancelled parent runs it to its end and does not run on", async () => {
  const clock = new VirtualClock();
  const log: string[] = [];
  function* helper(): Generator<Effect, void, unknown> {
    try {
      yield* delay(100);
    } finally {
      yield* delay(5); // a goodbye, say
      log.push(`helper cleaned up at ${clock.now()}`);
    }
  }
  await run(
    (function* () {
      const parent = yield* spawn((function* () {
        yield* (yield* spawn(helper())).join();
        log.push("parent ran on (wrong)");
        yield* delay(1000);
      })());
      yield* delay(10);
      parent.cancel();
      yield* assertThrowsCancelled(parent);
      log.push(`parent ended at ${clock.now()}`);
    })(),
    { clock },
  );
  assert.deepEqual(log, ["helper cleaned up at 15", "parent ended at 15"]);
});

function* assertThrowsCancelled(
  task: Task<unknown>,
): Generator<Effect, void, unknown> {
  try {
    yield* task.join();
    assert.fail("expected CancelledError");
  } catch (error) {
    assert.ok(error instanceof CancelledError, String(error));
  }
}
