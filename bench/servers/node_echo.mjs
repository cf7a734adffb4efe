// Baseline: the idiomatic node:net echo server, run under Node, and under
// Deno (B1, B2) to show Deno's own node:net.
// Same stdin "mem" command as the Deno servers (run with --expose-gc).
import net from "node:net";
import readline from "node:readline";
import { getHeapSpaceStatistics } from "node:v8";

const portIndex = process.argv.indexOf("--port");
const port = portIndex > 0 ? Number(process.argv[portIndex + 1]) : 0;
const server = net.createServer((socket) => {
  socket.on("data", (data) => socket.write(data));
  socket.on("error", () => {});
});
server.listen(port, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() !== "mem") return;
  globalThis.gc?.();
  const usage = process.memoryUsage();
  console.log(JSON.stringify({
    rss: usage.rss,
    heapUsed: usage.heapUsed,
    external: usage.external,
    newSpace: getHeapSpaceStatistics()
      .find((space) => space.space_name === "new_space")?.space_size,
  }));
});
