// Baseline for B2: raw_deno_echo.ts made fair by corio's own read-pacing
// rule (src/_io_pacer.ts), with no other library code: past 128 read
// completions in one event-loop iteration, the next reads start on the next
// timer turn. At 1000 connections it shows what fair service costs a
// hand-written Deno server, apart from what corio costs on top.

import { acceptEach, INITIAL_READ_SIZE, MAX_READ_SIZE } from "./_control.ts";
import {
  deferRead,
  isOverBudget,
  readCompleted,
  readIssued,
} from "../../src/_io_pacer.ts";

async function echo(conn: Deno.Conn): Promise<void> {
  let buf = new Uint8Array(INITIAL_READ_SIZE);
  let resume = () => {};
  const reader = { issueRead: () => resume() };
  const held = (resolve: () => void) => {
    resume = resolve;
    deferRead(reader);
  };
  try {
    for (;;) {
      if (isOverBudget()) await new Promise<void>(held);
      readIssued();
      const n = await conn.read(buf).finally(readCompleted);
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
