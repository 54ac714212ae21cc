/**
 * Worker thread entry: parses and simulates one program per message, off the agent's main
 * thread. Message in: {@link WorkerRequest}; message out: {@link WorkerResponse}.
 * @internal
 */
import { parentPort } from 'node:worker_threads';
import { toMeshError } from '@meshroute/mesh';
import { parseQasm } from './compiler.js';
import { simulate } from './simulator.js';
import type { WorkerRequest, WorkerResponse } from './worker-protocol.js';

parentPort?.on('message', (request: WorkerRequest) => {
  let response: WorkerResponse;
  try {
    const program = parseQasm(request.source, request.parseOptions);
    response = { ok: true, result: simulate(program, request.simulateOptions) };
  } catch (err) {
    response = { ok: false, error: toMeshError(err).toJSON() };
  }
  parentPort?.postMessage(response);
});
