// The examples' command-line flags: `--name value` (or `--name=value`) for
// each name an example declares with its default, `--name` alone for a
// boolean. A flag it does not know, a missing value or a number that is not
// one prints what went wrong and the usage line, and exits with status 2, as
// a command-line tool does, instead of an uncaught error and its stack.

import { parseArgs } from "node:util";

/**
 * An example's flags by name, each with its default (its type, too).
 *
 * @example
 * ```ts ignore
 * const defaults: FlagDefaults = { port: 5060, transport: "udp", "no-ringing": false };
 * ```
 */
export type FlagDefaults = Record<string, number | string | boolean>;

/**
 * The parsed flags: a number flag is a number, a boolean a boolean.
 *
 * @example
 * ```ts ignore
 * const flags: Flags<{ port: number; hostname: string }> = parseFlags({
 *   port: 9999,
 *   hostname: "0.0.0.0",
 * });
 * ```
 */
export type Flags<D extends FlagDefaults> = {
  [K in keyof D]: D[K] extends number ? number
    : D[K] extends boolean ? boolean
    : string;
};

/**
 * Parses `args` against `defaults`; on a bad flag prints the error and the
 * usage line to stderr and exits with status 2.
 *
 * @example
 * ```ts ignore
 * const flags = parseFlags({ port: 9999, hostname: "0.0.0.0" });
 * serve({ port: flags.port, hostname: flags.hostname }, handler);
 * ```
 */
export function parseFlags<const D extends FlagDefaults>(
  defaults: D,
  args: string[] = Deno.args,
): Flags<D> {
  try {
    return parseFlagsOrThrow(defaults, args);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    console.error(`${error.message}\n${usage(defaults)}`);
    Deno.exit(2);
  }
}

/**
 * {@linkcode parseFlags}, throwing a `TypeError` where it would exit.
 *
 * @example
 * ```ts ignore
 * parseFlagsOrThrow({ port: 9999 }, ["--port=7000"]); // { port: 7000 }
 * parseFlagsOrThrow({ port: 9999 }, ["--port", "abc"]); // TypeError
 * ```
 */
export function parseFlagsOrThrow<const D extends FlagDefaults>(
  defaults: D,
  args: string[],
): Flags<D> {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [name, value] of Object.entries(defaults)) {
    options[name] = { type: typeof value === "boolean" ? "boolean" : "string" };
  }
  const { values } = parseArgs({ args, options, strict: true });
  const flags: Record<string, number | string | boolean> = { ...defaults };
  for (const [name, value] of Object.entries(values)) {
    if (typeof defaults[name] !== "number") {
      flags[name] = value as string | boolean;
      continue;
    }
    // "Infinity" is a number: corio's timeouts take it for "none".
    const number = Number(value);
    if (value === "" || Number.isNaN(number)) {
      throw new TypeError(`--${name} must be a number, got "${value}"`);
    }
    flags[name] = number;
  }
  return flags as Flags<D>;
}

/** "usage: echo_server.ts [--port 9999] [--hostname 0.0.0.0]". */
function usage(defaults: FlagDefaults): string {
  const script = new URL(Deno.mainModule).pathname.split("/").pop();
  const flags = Object.entries(defaults).map(([name, value]) =>
    typeof value === "boolean" ? `[--${name}]` : `[--${name} ${value}]`
  );
  return `usage: ${script} ${flags.join(" ")}`;
}
