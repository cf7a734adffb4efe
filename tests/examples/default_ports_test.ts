// Each server example listens on the port its docs and the README name when
// run without --port. A port already taken on this machine skips its test.

import assert from "node:assert/strict";
import { exchange, startExample } from "./_example.ts";

/** True when nothing listens on `port` at 127.0.0.1 now. */
function isFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

const EXAMPLES = [
  { file: "echo_server.ts", port: 9999, request: "ping", reply: "ping" },
  { file: "line_echo.ts", port: 1234, request: "ping\n", reply: "ping\n" },
  {
    file: "tally_server.ts",
    port: 7000,
    request: "HELLO ada\n",
    reply: "200 hello ada\r\n",
  },
];

for (const { file, port, request, reply } of EXAMPLES) {
  const isPortFree = isFree(port);
  if (!isPortFree) console.warn(`skipped: port ${port} is in use here`);
  Deno.test({
    name: `examples/${file} listens on port ${port} by default`,
    ignore: !isPortFree,
    async fn() {
      const server = await startExample(file, ["--allow-net"], [], {
        isDefaultPort: true,
      });
      try {
        assert.equal(server.port, port);
        const bytes = await exchange(port, request, reply.length);
        assert.equal(new TextDecoder().decode(bytes), reply);
      } finally {
        assert.equal((await server.stop()).code, 0);
      }
    },
  });
}
