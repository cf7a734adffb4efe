// Internal: how corio calls a user's `onError`.

/**
 * Calls `onError` with `args`. If it throws, that is logged instead: it
 * runs in the middle of corio's own bookkeeping (a timer firing, a
 * coroutine ending, an accept loop), which must not be cut short.
 */
export function callOnError<A extends unknown[]>(
  onError: (...args: A) => void,
  ...args: A
): void {
  try {
    onError(...args);
  } catch (failure) {
    console.error("corio: onError threw", failure);
  }
}
