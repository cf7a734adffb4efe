// The `function*` floor's handler, shared by `floor_echo.ts --sync` (on a
// socket) and `echo_js_bench.ts` (in process): a bare generator whose plain
// `yield`s name a read or a write; the loop that drives it performs each.

import { MAX_READ_SIZE } from "./_control.ts";

/** What the handler yields: read into its buffer, or write bytes. */
export interface Io {
  isRead: boolean;
  bytes: Uint8Array;
}

/**
 * Echoes through `buf`, grown as raw_deno_echo.ts grows its own: yields
 * reads and writes, resumed with their n.
 */
export function* syncEcho(
  buf: Uint8Array,
): Generator<Io, void, number | null> {
  const read: Io = { isRead: true, bytes: buf };
  const write: Io = { isRead: false, bytes: buf };
  for (;;) {
    const n = yield read;
    if (n === null) return;
    for (let offset = 0; offset < n;) {
      write.bytes = buf.subarray(offset, n);
      offset += (yield write)!;
    }
    if (n === buf.length && buf.length < MAX_READ_SIZE) {
      read.bytes = buf = new Uint8Array(buf.length * 2);
    }
  }
}
