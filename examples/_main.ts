// What the examples' main code shares beyond flags: a start-up step that
// fails (a port in use, a missing --cert file, a host that does not
// resolve) ends the program as a command-line tool does, with one line that
// names what failed and where, and exit status 1, instead of an uncaught
// error and its stack.

/**
 * Runs `step`; if it throws, prints `cannot <what>: <why>` to stderr (or
 * the error's own message alone, when it already starts with "Cannot" and
 * so names the address) and exits with status 1.
 *
 * @example
 * ```ts ignore
 * const server = orExit("listen on 0.0.0.0:9999", () => serve({ port: 9999 }, echo));
 * // cannot listen on 0.0.0.0:9999: address already in use
 * ```
 */
export function orExit<T>(what: string, step: () => T): T {
  try {
    return step();
  } catch (error) {
    console.error(describeFailure(what, error));
    Deno.exit(1);
  }
}

/**
 * The line {@linkcode orExit} prints: Deno's "Address already in use (os
 * error 98)" becomes "address already in use", without the error number or
 * the file name Deno appends (the caller names the file in `what`).
 */
export function describeFailure(what: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (/^Cannot /.test(message)) return message;
  const why = message.replace(/ \(os error \d+\)(: .*)?$/, "");
  return `cannot ${what}: ${why.charAt(0).toLowerCase()}${why.slice(1)}`;
}
