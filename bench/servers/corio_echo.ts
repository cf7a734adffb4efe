// corio's echo server in the forms the benchmarks compare. All but `copy`
// receive with { borrow: true }, as examples/echo_server.ts does:
//   async    - the documented form: async function* with yield*
//   copy     - async, but recv() copies each chunk out (the default recv)
//   sync     - function* with yield* (no awaits inside)
//   untyped  - async function* driving each operation with plain `yield`
//              (yield* written out). Every operation then goes through the
//              scheduler and back, where yield* parks in place: since that
//              change this is the slower form, kept for B4.
// --recv-timeout MS puts that timeout on every recv (B3).

import { type Connection, type Effect, serve } from "@corio/corio";
import { answerCommands, flags } from "./_control.ts";

const borrow = { borrow: true };

async function* asyncEcho(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
    yield* conn.send(chunk);
  }
}

async function* copyEcho(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv()) !== null;) {
    yield* conn.send(chunk);
  }
}

function* syncEcho(conn: Connection) {
  for (let chunk; (chunk = yield* conn.recv(borrow)) !== null;) {
    yield* conn.send(chunk);
  }
}

async function* untypedEcho(
  conn: Connection,
): AsyncGenerator<Effect, void, unknown> {
  for (;;) {
    const recv = conn.recv(borrow)[Symbol.iterator]();
    let r = recv.next();
    while (!r.done) r = recv.next(yield r.value);
    const chunk = r.value;
    if (chunk === null) return;
    const send = conn.send(chunk)[Symbol.iterator]();
    let s = send.next();
    while (!s.done) s = send.next(yield s.value);
  }
}

const HANDLERS = {
  async: asyncEcho,
  copy: copyEcho,
  sync: syncEcho,
  untyped: untypedEcho,
};

const options = flags();
const handler = HANDLERS[options.variant as keyof typeof HANDLERS];
if (!handler) throw new TypeError(`unknown variant ${options.variant}`);
const server = serve({
  hostname: "127.0.0.1",
  port: Number(options.port),
  maxConnections: Number(options["max-connections"]),
  acceptQueues: Number(options["accept-queues"]),
  recvTimeout: options["recv-timeout"]
    ? Number(options["recv-timeout"])
    : undefined,
}, handler);
console.log(`listening on 127.0.0.1:${server.addr.port}`);
answerCommands();
await server.finished;
