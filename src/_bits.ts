// Yes/no state kept as bits of one number field: each boolean field costs
// an object 8 B, and some objects live as long as an idle connection.
// Internal.

/** `flags` with `bit` set when `value` is true, cleared when false. */
export function withBit(flags: number, bit: number, value: boolean): number {
  return value ? flags | bit : flags & ~bit;
}
