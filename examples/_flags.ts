// The examples' command-line flags: `--name value` (or `--name=value`) for
// each name an example declares with its default, `--name` alone for a
// boolean. A flag it does not know, a missing value, a number that is not
// one or a number out of the flag's range prints what went wrong and the
// usage line, and exits with status 2, as a command-line tool does, instead
// of an uncaught error and its stack. `-h` or `--help` prints the usage line
// and what the example does, and exits with status 0.

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

/** The names of the number flags in `D`. */
export type NumberFlag<D extends FlagDefaults> =
  & {
    [K in keyof D]: D[K] extends number ? K : never;
  }[keyof D]
  & string;

/**
 * The values a number flag takes. A bound is a number or the name of
 * another number flag (`t2: { min: "t1" }`). Infinity, which corio's
 * timeouts take for "none", passes only with `orInfinity`.
 *
 * @example
 * ```ts ignore
 * const calls: FlagRange = { integer: true, min: 1 };
 * const timeout: FlagRange = { above: 0, orInfinity: true };
 * ```
 */
export interface FlagRange<N extends string = string> {
  /** Whole numbers only. @default {false} */
  integer?: boolean;
  /** The least value allowed. */
  min?: number | N;
  /** A value the flag must exceed: `above: 0` for a duration that cannot be 0. */
  above?: number | N;
  /** The greatest value allowed. */
  max?: number | N;
  /** Infinity passes too. @default {false} */
  orInfinity?: boolean;
}

/**
 * The ranges of an example's number flags. A flag without one takes any
 * number, except `port`, which takes a port number (an integer 0-65535).
 *
 * @example
 * ```ts ignore
 * const ranges: FlagRanges<{ calls: number; t1: number; t2: number }> = {
 *   calls: { integer: true, min: 1 },
 *   t1: { above: 0 },
 *   t2: { min: "t1" },
 * };
 * ```
 */
export type FlagRanges<D extends FlagDefaults> = {
  [K in NumberFlag<D>]?: FlagRange<NumberFlag<D>>;
};

/** What a `port` flag takes unless its example says otherwise (0: any free port). */
export const PORT_RANGE: FlagRange<never> = {
  integer: true,
  min: 0,
  max: 65535,
};

/** A port to connect to: no server listens on port 0. */
export const SERVER_PORT_RANGE: FlagRange<never> = {
  integer: true,
  min: 1,
  max: 65535,
};

/**
 * What `--help` shows besides the usage line, and how the usage line names
 * the value of a string flag that has no default.
 *
 * @example
 * ```ts ignore
 * const options: FlagOptions<{ cert: string }> = {
 *   about: "Echoes what it receives.",
 *   placeholders: { cert: "FILE" },
 * };
 * ```
 */
export interface FlagOptions<D extends FlagDefaults = FlagDefaults> {
  /** What the example does and what its flags mean, for `--help`. */
  about?: string;
  /**
   * The word shown for the value of a string flag whose default is `""`
   * (`[--cert FILE]`); others show their default.
   * @default {the flag's name in upper case}
   */
  placeholders?: { [K in keyof D]?: string };
  /** The arguments to parse. @default {Deno.args} */
  args?: string[];
}

/**
 * Thrown by {@linkcode parseFlagsOrThrow} for `-h` or `--help`: not a
 * mistake, so no `TypeError`; {@linkcode parseFlags} answers it with the
 * usage on stdout and exit status 0.
 */
export class HelpRequested extends Error {
  /** Creates it. */
  constructor() {
    super("-h/--help asks for the usage");
    this.name = "HelpRequested";
  }
}

/**
 * Parses `Deno.args` against `defaults` and `ranges`; on a bad flag prints
 * the error and the usage line to stderr and exits with status 2; for `-h`
 * or `--help` prints the usage line and `about` to stdout and exits with
 * status 0.
 *
 * @example
 * ```ts ignore
 * const flags = parseFlags({ port: 9999, count: 5 }, { count: { integer: true, min: 0 } }, {
 *   about: "Sends --count messages to the echo server on --port.",
 * });
 * serve({ port: flags.port }, handler);
 * ```
 */
export function parseFlags<const D extends FlagDefaults>(
  defaults: D,
  ranges: FlagRanges<D> = {},
  { about = "", placeholders = {}, args = Deno.args }: FlagOptions<D> = {},
): Flags<D> {
  try {
    return parseFlagsOrThrow(defaults, ranges, args);
  } catch (error) {
    const line = usage(defaults, placeholders);
    if (error instanceof HelpRequested) {
      console.log(about === "" ? line : `${line}\n\n${about.trim()}`);
      Deno.exit(0);
    }
    if (!(error instanceof TypeError)) throw error;
    console.error(`${error.message}\n${line}`);
    Deno.exit(2);
  }
}

/**
 * {@linkcode parseFlags}, throwing a `TypeError` where it would exit with
 * status 2, and {@linkcode HelpRequested} for `-h` or `--help`.
 *
 * @example
 * ```ts ignore
 * parseFlagsOrThrow({ port: 9999 }, {}, ["--port=7000"]); // { port: 7000 }
 * parseFlagsOrThrow({ port: 9999 }, {}, ["--port", "abc"]); // TypeError
 * parseFlagsOrThrow({ port: 9999 }, {}, ["--port", "99999"]); // TypeError
 * ```
 */
export function parseFlagsOrThrow<const D extends FlagDefaults>(
  defaults: D,
  ranges: FlagRanges<D>,
  args: string[],
): Flags<D> {
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string }
  > = { help: { type: "boolean", short: "h" } };
  for (const [name, value] of Object.entries(defaults)) {
    options[name] = { type: typeof value === "boolean" ? "boolean" : "string" };
  }
  // Mistakes first: `--help --bogus` is answered as `--bogus` is.
  const { values } = parseArgs({ args, options, strict: true });
  if (values.help === true && !("help" in defaults)) throw new HelpRequested();
  const flags: Record<string, number | string | boolean> = { ...defaults };
  for (const [name, value] of Object.entries(values)) {
    if (typeof defaults[name] !== "number") {
      if (name in defaults) flags[name] = value as string | boolean;
      continue;
    }
    // "Infinity" is a number: corio's timeouts take it for "none". Number()
    // reads a blank string as 0: `--port " "` would be any free port.
    const number = Number(value);
    if ((value as string).trim() === "" || Number.isNaN(number)) {
      throw new TypeError(`--${name} must be a number, got "${value}"`);
    }
    flags[name] = number;
  }
  // Defaults too: a bound may name a flag that was given (`--t1 5000`
  // against t2's default of 4000).
  const declared: Record<string, FlagRange | undefined> = ranges;
  for (const name of Object.keys(defaults)) {
    const range = declared[name] ?? (name === "port" ? PORT_RANGE : undefined);
    if (range !== undefined) checkRange(name, flags, range);
  }
  return flags as Flags<D>;
}

/** Throws a `TypeError` unless flag `name` is within `range`. */
function checkRange(
  name: string,
  flags: Record<string, number | string | boolean>,
  range: FlagRange,
): void {
  const value = flags[name] as number;
  const { min, above, max } = range;
  const limit = (bound: number | string) =>
    typeof bound === "string" ? flags[bound] as number : bound;
  const isInRange = value === Infinity
    ? range.orInfinity === true
    : Number.isFinite(value) &&
      (!range.integer || Number.isInteger(value)) &&
      (min === undefined || value >= limit(min)) &&
      (above === undefined || value > limit(above)) &&
      (max === undefined || value <= limit(max));
  if (isInRange) return;
  const text = (bound: number | string) =>
    typeof bound === "string" ? `--${bound} (${flags[bound]})` : `${bound}`;
  const limits: string[] = [];
  if (above !== undefined) limits.push(`> ${text(above)}`);
  if (typeof min === "number" && typeof max === "number") {
    limits.push(`from ${min} to ${max}`);
  } else {
    if (min !== undefined) limits.push(`>= ${text(min)}`);
    if (max !== undefined) limits.push(`<= ${text(max)}`);
  }
  const kind = range.integer ? "an integer" : "a number";
  const what = limits.length > 0 ? `${kind} ${limits.join(" and ")}` : kind;
  const infinity = range.orInfinity ? " or Infinity" : "";
  throw new TypeError(`--${name} must be ${what}${infinity}, got ${value}`);
}

/** "usage: echo_server.ts [--port 9999] [--cert FILE] [-h|--help]". */
function usage(
  defaults: FlagDefaults,
  placeholders: Record<string, string | undefined>,
): string {
  const script = new URL(Deno.mainModule).pathname.split("/").pop();
  const flags = Object.entries(defaults).map(([name, value]) =>
    typeof value === "boolean"
      ? `[--${name}]`
      : `[--${name} ${
        value === "" ? placeholders[name] ?? name.toUpperCase() : value
      }]`
  );
  return `usage: ${script} ${[...flags, "[-h|--help]"].join(" ")}`;
}
