// Stepping an `async function*` coroutine, and its waits in place: the
// promise its `yield*` awaits while the scheduler holds it parked
// (`Scheduler._parkHere`). Internal: used by the scheduler only.

import { type Coroutine, NEXT, RETURN, running } from "./_coroutine.ts";

// The executor of every wait in place, told its coroutine through
// `holding`: it runs inside `new Promise`, at once. One closure per
// coroutine instead measured 56 B of heap per idle connection.
let holding: Coroutine | null = null;
// Only `resolve` is kept: each function stored is a new object written
// into an old one, a write barrier's slow path (~55 instructions) per wait.
function holdExecutor(
  resolve: (r: IteratorResult<unknown, unknown>) => void,
): void {
  holding!.resolveHeld = resolve;
}

/** The promise `co`'s `yield*` awaits while it waits in place. */
export function hold(co: Coroutine): Promise<IteratorResult<unknown, unknown>> {
  holding = co;
  const promise = new Promise(holdExecutor);
  holding = null;
  return promise;
}

/**
 * A result whose `done` throws `error`: `yield*` reads it first, so the
 * error is thrown at the wait, in the same turn a rejection would take,
 * without a reject function kept per wait (see `holdExecutor`).
 */
class Thrown {
  constructor(readonly error: unknown) {}
  get done(): never {
    throw this.error;
  }
}

/** Ends a wait in place: its `yield*` gets `value`, or `value` thrown. */
export function settleHeld(
  co: Coroutine,
  value: unknown,
  isError = false,
): void {
  const resolve = co.resolveHeld!;
  co.heldBy = co.resolveHeld = null;
  resolve(
    (isError ? new Thrown(value) : value) as IteratorResult<unknown, unknown>,
  );
}

export function stepAsync(co: Coroutine): void {
  const agen = co.gen as AsyncGenerator<unknown, unknown, unknown>;
  let pending: Promise<IteratorResult<unknown, unknown>>;
  try {
    pending = co.mode === NEXT
      ? agen.next(co.input)
      : co.mode === RETURN
      ? agen.return(undefined)
      : agen.throw(co.input);
  } catch (error) {
    // A hand-written async iterator can throw instead of rejecting (or
    // lack `return`): thrown on, it would escape the drain or the timer
    // that stepped it, and end the process or leave the timer unarmed.
    co.input = undefined;
    co.scheduler._afterAsyncFailure(co, error);
    return;
  }
  co.input = undefined;
  // ... or hand back a plain result instead of a promise of one.
  if (!(pending instanceof Promise)) pending = Promise.resolve(pending);
  pending.then(afterAsyncStep, afterAsyncFailure);
}

// A step's callbacks run in the async context `.then()` was called in,
// `co`'s: they find it there, so no coroutine needs closures of its own
// for them (two closures, their context and two fields: 209 B of heap per
// idle connection in a heap snapshot).
function afterAsyncStep(r: IteratorResult<unknown, unknown>): void {
  const co = running.getStore()!;
  co.scheduler._afterAsyncStep(co, r);
}

function afterAsyncFailure(error: unknown): void {
  const co = running.getStore()!;
  co.scheduler._afterAsyncFailure(co, error);
}
