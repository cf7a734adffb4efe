// A UDP server for bench/datagram_flood.ts: serveDatagram with one
// conversation per key (a datagram's first word), sending `--replies N`
// replies to each datagram it receives. On a "stats" line from stdin it
// prints its counters as one JSON line; "exit" ends it.
//
// --corio PATH imports serveDatagram from another checkout's mod.ts, so
// that two versions of corio can be measured side by side.

import { parseArgs } from "node:util";
import type * as Corio from "../../mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    port: { type: "string", default: "0" },
    replies: { type: "string", default: "2" },
    corio: { type: "string", default: "" },
  },
});
const corio: typeof Corio = values.corio
  ? await import(new URL(values.corio, `file://${Deno.cwd()}/`).href)
  : await import("../../mod.ts");
const replies = Number(values.replies);
const decoder = new TextDecoder();

const server = corio.serveDatagram({
  hostname: "127.0.0.1",
  port: Number(values.port),
  key: (datagram) => {
    const text = decoder.decode(datagram.data.subarray(0, 16));
    return text.slice(0, text.indexOf(" "));
  },
  maxConversations: 100_000,
}, function* (inbox, first, server) {
  for (
    let datagram = first;
    datagram !== undefined;
    datagram = yield* inbox.poll({ timeout: 1000 })
  ) {
    for (let i = 0; i < replies; i++) server.send("ok", datagram.remoteAddr);
  }
});
console.log(`listening on 127.0.0.1:${server.addr.port}`);

for await (
  const line of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
) {
  if (line.includes("exit")) break;
  if (line.includes("stats")) {
    console.log(
      JSON.stringify({ ...server.stats, ...server.conversations.stats }),
    );
  }
}
await server.shutdown();
