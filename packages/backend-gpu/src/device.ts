/**
 * GPU detection. A GPU is present when `/dev/nvidia0` exists or `nvidia-smi -L` succeeds; then the
 * workers try a CUDA session. Probes are injectable so the decision can be tested on any machine.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** How long `nvidia-smi` may take before it counts as absent. */
export const DEFAULT_NVIDIA_SMI_TIMEOUT_MS = 5_000;

/** The checks {@link detectGpu} runs. Replace them in tests. */
export interface GpuProbes {
  /** Whether a device file exists (called with `/dev/nvidia0`). */
  fileExists(path: string): boolean;
  /** Run `nvidia-smi` with these arguments; its stdout, or `undefined` when it is missing or fails. */
  nvidiaSmi(args: readonly string[]): string | undefined;
}

/** The real probes: `fs.existsSync` and `nvidia-smi` on PATH (with a timeout). */
export const systemGpuProbes: GpuProbes = {
  fileExists: (path) => existsSync(path),
  nvidiaSmi(args) {
    try {
      return execFileSync('nvidia-smi', [...args], {
        encoding: 'utf8',
        timeout: DEFAULT_NVIDIA_SMI_TIMEOUT_MS,
        stdio: ['ignore', 'pipe', 'ignore'],
      });
    } catch {
      return undefined;
    }
  },
};

/** What {@link detectGpu} found. */
export interface GpuDetection {
  /** Whether a GPU looks present (a CUDA session is still to be tried). */
  present: boolean;
  /** Which probe found it. */
  via: 'device-file' | 'nvidia-smi' | undefined;
  /** Model of the first GPU (from `nvidia-smi`). */
  gpuModel: string | undefined;
  /** Memory of the first GPU, bytes (from `nvidia-smi`). */
  gpuMemoryBytes: number | undefined;
  /** Why no GPU was found. */
  reason: string | undefined;
}

const MEMORY_UNITS: Record<string, number> = {
  B: 1,
  KIB: 1024,
  MIB: 1024 ** 2,
  GIB: 1024 ** 3,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
};

/**
 * Parse the first line of `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader`,
 * e.g. `NVIDIA H100 80GB HBM3, 81559 MiB`. Returns `undefined` for anything else.
 */
export function parseNvidiaSmiQuery(csv: string): { gpuModel: string; gpuMemoryBytes: number | undefined } | undefined {
  const line = csv
    .split('\n')
    .map((l) => l.trim())
    .find((l) => l.length > 0);
  if (line === undefined) return undefined;
  const comma = line.lastIndexOf(',');
  const gpuModel = (comma < 0 ? line : line.slice(0, comma)).trim();
  if (gpuModel.length === 0) return undefined;
  const mem = comma < 0 ? undefined : /^([\d.]+)\s*([A-Za-z]+)$/.exec(line.slice(comma + 1).trim());
  const unit = mem?.[2] === undefined ? undefined : MEMORY_UNITS[mem[2].toUpperCase()];
  const gpuMemoryBytes = mem?.[1] === undefined || unit === undefined ? undefined : Math.round(Number(mem[1]) * unit);
  return { gpuModel, gpuMemoryBytes: Number.isFinite(gpuMemoryBytes) ? gpuMemoryBytes : undefined };
}

/** Look for an NVIDIA GPU with the probes; never throws. */
export function detectGpu(probes: GpuProbes = systemGpuProbes): GpuDetection {
  let via: GpuDetection['via'];
  if (safe(() => probes.fileExists('/dev/nvidia0'), false)) via = 'device-file';
  const list = safe(() => probes.nvidiaSmi(['-L']), undefined);
  if (via === undefined && list !== undefined && /\bGPU \d+:/.test(list)) via = 'nvidia-smi';
  if (via === undefined) {
    return {
      present: false,
      via,
      gpuModel: undefined,
      gpuMemoryBytes: undefined,
      reason: 'no NVIDIA GPU: /dev/nvidia0 does not exist and `nvidia-smi -L` lists no GPU',
    };
  }
  const query = safe(() => probes.nvidiaSmi(['--query-gpu=name,memory.total', '--format=csv,noheader']), undefined);
  const parsed = query === undefined ? undefined : parseNvidiaSmiQuery(query);
  return {
    present: true,
    via,
    gpuModel: parsed?.gpuModel,
    gpuMemoryBytes: parsed?.gpuMemoryBytes,
    reason: undefined,
  };
}

function safe<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}
