/**
 * A guard against hostile nesting: JSON nested deep enough parses, but later recursive steps
 * (`JSON.stringify`, schema checks) overflow the stack. Ingress paths check depth on the raw bytes
 * before anything recursive touches them.
 */

/** Default deepest nesting (arrays and objects) an ingress accepts: 128 levels. */
export const DEFAULT_MAX_JSON_DEPTH = 128;

/**
 * Whether the JSON text in `body` nests arrays/objects deeper than `maxDepth`, in one pass over the
 * bytes (strings and their escapes skipped). Does not validate the JSON otherwise.
 * @example jsonDeeperThan(new TextEncoder().encode('[[1]]'), 1) // true
 */
export function jsonDeeperThan(body: Uint8Array, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const b = body[i] as number;
    if (inString) {
      if (b === 0x5c) i++;
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) {
      if (++depth > maxDepth) return true;
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return false;
}
