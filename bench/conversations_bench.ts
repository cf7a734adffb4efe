/**
 * What a conversation costs in time, start to end: a message with a new
 * key starts it, a second one reaches its inbox, and its handler returns.
 * This is the work `Conversations` adds to every SIP call (B13) beside the
 * call's own parsing and sending.
 *
 *     deno bench bench/conversations_bench.ts   # ns per 1000 conversations
 *
 * @module
 */

import { setImmediate } from "node:timers";
import { type ConversationHandler, Conversations } from "@corio/corio";

const PER_BENCH = 1000;
type Message = { key: number; n: number };

function churn(
  name: string,
  handler: ConversationHandler<Message, number>,
): void {
  const calls = new Conversations<Message, number>({
    key: (message) => message.key,
    handler,
    maxConversations: PER_BENCH,
    idleTimeout: 60_000,
  });
  let base = 0;
  Deno.bench(`${name} ×${PER_BENCH}`, { group: "conversation" }, async () => {
    for (let i = 0; i < PER_BENCH; i++) calls.dispatch({ key: base + i, n: 0 });
    await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < PER_BENCH; i++) calls.dispatch({ key: base + i, n: 1 });
    await new Promise((resolve) => setImmediate(resolve));
    if (calls.size !== 0) throw new Error(`${calls.size} conversations left`);
    base += PER_BENCH;
  });
}

churn("function* handler", function* (inbox) {
  yield* inbox.recv({ timeout: 32_000 });
});
churn("async function* handler", async function* (inbox) {
  yield* inbox.recv({ timeout: 32_000 });
});
