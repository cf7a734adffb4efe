// Baseline: the echo server a user would write by hand on Deno.listen, with
// corio's read-buffer policy (start at 1 KiB, double when a read fills it,
// up to 64 KiB) so both hold the same bytes per connection.

import { acceptEach, INITIAL_READ_SIZE, MAX_READ_SIZE } from "./_control.ts";

async function echo(conn: Deno.Conn): Promise<void> {
  let buf = new Uint8Array(INITIAL_READ_SIZE);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      for (let offset = 0; offset < n;) {
        offset += await conn.write(buf.subarray(offset, n));
      }
      if (n === buf.length && buf.length < MAX_READ_SIZE) {
        buf = new Uint8Array(buf.length * 2);
      }
    }
  } catch {
    // reset by the peer: done
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

await acceptEach(echo);
