/**
 * The smallest ONNX model (`x: float32[1]` → `y = Identity(x)`), used by workers to try an execution
 * provider. Built by `buildProbeModel()` in scripts/onnx-models.mjs; a test checks these bytes match it.
 */
export const PROBE_MODEL_BASE64 =
  'CAgSCW1lc2hyb3V0ZRoFMC4xLjA6RQoaCgF4EgF5GghpZGVudGl0eSIISWRlbnRpdHkSBXByb2JlWg8KAXgSCgoICAESBAoCCAFiDwoBeRIKCggIARIECgIIAUIECgAQDQ==';

/** The probe model's bytes. */
export function probeModelBytes(): Uint8Array {
  return new Uint8Array(Buffer.from(PROBE_MODEL_BASE64, 'base64'));
}
