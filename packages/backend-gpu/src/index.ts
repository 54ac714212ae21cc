/**
 * @module @meshroute/backend-gpu
 * GPU node backend: ONNX models on onnxruntime-node (CUDA when present, CPU otherwise) with dynamic batching.
 */
export {};
