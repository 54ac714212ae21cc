/**
 * `policy fmt`: the canonical layout of a policy file: top-level keys in documentation order,
 * two-space indentation, comments kept. Idempotent.
 */
import { isMap, parseDocument } from 'yaml';

/** Canonical order of top-level keys in a policy file. */
export const POLICY_KEY_ORDER = [
  'metadata',
  'mode',
  'selector',
  'variables',
  'constraints',
  'preferences',
  'tenants',
  'exceptions',
  'tests',
];
const METADATA_ORDER = ['name', 'version', 'owner', 'description'];

/**
 * Format a policy (or tests, schema, fixture) YAML file. Returns the formatted text, or
 * `undefined` when the file does not parse (run `policy validate` for the errors).
 */
export function formatPolicySource(content: string): string | undefined {
  const doc = parseDocument(content);
  if (doc.errors.length > 0) return undefined;
  const order = (map: unknown, keys: readonly string[]) => {
    if (!isMap(map)) return;
    const rank = (k: unknown) => {
      const i = keys.indexOf(String((k as { value?: unknown })?.value ?? k));
      return i < 0 ? keys.length : i;
    };
    map.items.sort((x, y) => rank(x.key) - rank(y.key));
  };
  order(doc.contents, POLICY_KEY_ORDER);
  if (isMap(doc.contents)) order(doc.contents.get('metadata', true), METADATA_ORDER);
  return doc.toString({ indent: 2, indentSeq: true, lineWidth: 0 });
}
