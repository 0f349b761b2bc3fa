import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';

export type { OtelApi };

/**
 * `@opentelemetry/api` if it is installed, else null. It is an optional
 * peer dependency: loaded once, synchronously, on first use; without it
 * every instrumentation point stays on its no-op path. The API keeps its
 * registered providers on a process-wide global, so this copy sees the SDK
 * the application registered whichever way it imported the API.
 */
let loaded: typeof OtelApi | null | undefined;

export function otelApi(): typeof OtelApi | null {
  if (loaded === undefined) {
    try {
      loaded = createRequire(import.meta.url)('@opentelemetry/api') as typeof OtelApi;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}
