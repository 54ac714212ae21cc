/**
 * Conversion between NATS message headers ({@link MsgHdrs}) and the plain `Map<string, string>`
 * the CloudEvents NATS binding of `@meshroute/mesh` works on.
 */

import { ErrorCode, MeshError } from '@meshroute/mesh';
import { type MsgHdrs, headers as natsHeaders } from '@nats-io/nats-core';

/**
 * NATS headers from a map. Keys are kept as given (NATS header keys are case-sensitive by
 * default); values must not contain CR or LF, and the NATS client trims surrounding whitespace.
 * @throws MeshError `INVALID_MESSAGE` naming the header whose name or value cannot be carried
 */
export function headersFromMap(map: ReadonlyMap<string, string> | Record<string, string>): MsgHdrs {
  const h = natsHeaders();
  const entries = map instanceof Map ? map.entries() : Object.entries(map);
  for (const [k, v] of entries) {
    if (k.length === 0 || !/^[\x21-\x39\x3b-\x7e]+$/.test(k)) {
      throw new MeshError(
        ErrorCode.INVALID_MESSAGE,
        `header name ${JSON.stringify(k)} cannot be carried by NATS (printable ASCII, no ':' or space)`,
        {
          details: { header: k, rule: 'header-name' },
        },
      );
    }
    if (/[\r\n]/.test(v)) {
      throw new MeshError(
        ErrorCode.INVALID_MESSAGE,
        `header ${k}: value contains CR or LF, which NATS headers cannot carry`,
        {
          details: { header: k, rule: 'header-value' },
        },
      );
    }
    h.set(k, v);
  }
  return h;
}

/**
 * A map from NATS headers (`undefined` gives an empty map). A header with several values maps
 * to the values joined by `,` (as HTTP does).
 */
export function mapFromHeaders(h: MsgHdrs | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (h === undefined) return out;
  for (const k of h.keys()) {
    out.set(k, h.values(k).join(','));
  }
  return out;
}
