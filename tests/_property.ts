// How the property tests pick their cases. `deno task test` runs each with
// one fixed seed, so every run of CI checks the same cases: a new random
// schedule that fails there would block a change that did not cause it.
// `deno task fuzz` explores: fresh seeds (CORIO_SEED=random) and ten times
// the runs (CORIO_RUNS_FACTOR). A failure prints its seed; run again with
// CORIO_SEED=<that seed> to replay it.

const SEED = Deno.env.get("CORIO_SEED") ?? "20261206";
const FACTOR = Number(Deno.env.get("CORIO_RUNS_FACTOR") ?? 1);
if (SEED !== "random" && !Number.isSafeInteger(Number(SEED))) {
  throw new RangeError(
    `CORIO_SEED must be an integer or "random", got ${SEED}`,
  );
}
if (!(FACTOR > 0)) {
  throw new RangeError(`CORIO_RUNS_FACTOR must be > 0, got ${FACTOR}`);
}

/**
 * fast-check's parameters for a property of `numRuns` runs (times
 * CORIO_RUNS_FACTOR): the fixed seed, a given one, or none (random).
 */
export function runs(numRuns: number): { numRuns: number; seed?: number } {
  const scaled = Math.max(1, Math.round(numRuns * FACTOR));
  if (SEED === "random") return { numRuns: scaled };
  return { numRuns: scaled, seed: Number(SEED) };
}
