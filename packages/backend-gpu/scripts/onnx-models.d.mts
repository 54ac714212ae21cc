/** Types of onnx-models.mjs. */
export declare const IR_VERSION: number;
export declare const OPSET: number;
export declare const CLASSIFY_DEFAULTS: Readonly<{ features: number; classes: number; seed: number }>;
export declare function mulberry32(seed: number): () => number;
export interface ClassifyModel {
  bytes: Uint8Array;
  features: number;
  classes: number;
  weights: Float32Array;
  bias: Float32Array;
}
export declare function buildClassifyModel(options?: {
  features?: number;
  classes?: number;
  seed?: number;
}): ClassifyModel;
export declare function classifyReference(
  model: Pick<ClassifyModel, 'weights' | 'bias' | 'features' | 'classes'>,
  rows: number[][],
): number[][];
export declare function buildMixedModel(options?: { width?: number }): Uint8Array;
export declare function buildFixedModel(): Uint8Array;
export declare function buildProbeModel(): Uint8Array;
