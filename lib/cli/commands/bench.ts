import { parseArgs } from 'node:util';
import { lastValueFrom } from 'rxjs';
import {
  CONNECTION_FLAGS,
  DATA_FLAGS,
  clientOptionsOf,
  integerFlag,
  messageOf,
  metadataOf,
  numberFlag,
  usageErrors,
} from '../cli-options.js';
import { connectClient } from '../cli-client.js';
import { ExitCode, UsageError, describeError } from '../exit-code.js';
import type { CliOutput } from '../cli-output.js';
import { LatencySample } from '../latency-sample.js';

const BENCH_FLAGS = {
  concurrency: { type: 'string' },
  duration: { type: 'string' },
  json: { type: 'boolean' },
} as const;

const DEFAULT_CONCURRENCY = 10;
const DEFAULT_DURATION_S = 5;
const MAX_CONCURRENCY = 100_000;

/** `msgtrans bench`: closed-loop load from `--concurrency` callers on one connection. */
export async function benchCommand(args: string[], out: CliOutput): Promise<ExitCode> {
  const { values, positionals } = usageErrors(() => parseArgs({ args, options: { ...CONNECTION_FLAGS, ...DATA_FLAGS, ...BENCH_FLAGS }, allowPositionals: true, strict: true }));
  if (values.help) return out.usage('bench');
  const [url, ...rest] = positionals;
  if (!url) throw new UsageError('missing <url>');
  const { pattern, data } = messageOf(rest, values);
  const concurrency = integerFlag(values.concurrency, 'concurrency', DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY);
  const durationMs = numberFlag(values.duration, 'duration', DEFAULT_DURATION_S) * 1000;
  const client = await connectClient(clientOptionsOf(url, values), metadataOf(values));
  const latencies = new LatencySample();
  let errors = 0;
  let firstError: unknown;
  try {
    const started = performance.now();
    const deadline = started + durationMs;
    const caller = async (): Promise<void> => {
      while (performance.now() < deadline) {
        const sent = performance.now();
        try {
          await lastValueFrom(client.send(pattern, data), { defaultValue: undefined });
          latencies.add(performance.now() - sent);
        } catch (err) {
          errors++;
          firstError ??= err;
          // a dead connection fails every call at once: stop instead of spinning
          if (err instanceof Error) return;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, caller));
    const seconds = (performance.now() - started) / 1000;
    const result = {
      url,
      pattern,
      concurrency,
      seconds: round(seconds),
      requests: latencies.count,
      errors,
      msgsPerSecond: round(latencies.count / seconds),
      p50Ms: round(latencies.percentile(50)),
      p99Ms: round(latencies.percentile(99)),
    };
    if (values.json) out.line(JSON.stringify(result));
    else {
      out.line(
        `${result.requests} requests in ${result.seconds} s from ${concurrency} callers: ` +
          `${result.msgsPerSecond} msgs/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, ${errors} errors`,
      );
    }
    if (firstError !== undefined) out.error(`first error: ${describeError(firstError)}`);
    return errors > 0 ? ExitCode.ERROR_REPLY : ExitCode.OK;
  } finally {
    client.close();
  }
}

function round(n: number): number {
  return Number.isFinite(n) ? Number(n.toFixed(3)) : 0;
}
