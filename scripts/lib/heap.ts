/**
 * A gc() without --expose-gc on the command line: the flag can be set at
 * run time, and a fresh context then exposes the function.
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

let cached: (() => void) | undefined;

export function getGc(): () => void {
  if (cached) return cached;
  const global = globalThis as { gc?: () => void };
  if (typeof global.gc === 'function') {
    cached = global.gc;
  } else {
    v8.setFlagsFromString('--expose-gc');
    cached = vm.runInNewContext('gc') as () => void;
  }
  return cached;
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Heap in use after a few full collections with idle time between them (bytes). */
export async function settledHeapUsed(rounds = 4): Promise<number> {
  const gc = getGc();
  for (let i = 0; i < rounds; i++) {
    gc();
    await pause(30);
  }
  gc();
  return process.memoryUsage().heapUsed;
}

export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}
