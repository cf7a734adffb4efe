// The `function*` floor's handler, shared by `floor_echo.ts --sync` (on a
// socket) and `echo_js_bench.ts` (in process): a bare generator whose plain
// `yield`s name a read or a write; the loop that drives it performs each.

/** What the handler yields: read into its buffer, or write bytes. */
export interface Io {
  isRead: boolean;
  bytes: Uint8Array;
}

/** Echoes through `buf`: yields reads and writes, resumed with their n. */
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
  }
}
