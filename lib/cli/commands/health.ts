import { parseArgs } from 'node:util';
import { lastValueFrom } from 'rxjs';
import { HEALTH_ROUTE, type MsgTransHealthReply } from '../../health/msgtrans-health.js';
import { CONNECTION_FLAGS, clientOptionsOf, metadataOf, usageErrors } from '../cli-options.js';
import { connectClient } from '../cli-client.js';
import { ExitCode, UsageError } from '../exit-code.js';
import type { CliOutput } from '../cli-output.js';

const HEALTH_FLAGS = { ...CONNECTION_FLAGS, service: { type: 'string' } } as const;

/**
 * `msgtrans health`: connect (presenting `--credentials` when given) and one
 * `msgtrans.health` round trip, the reserved route every msgtrans server
 * answers. Exit 0 when the service is SERVING, 1 otherwise.
 */
export async function healthCommand(args: string[], out: CliOutput): Promise<ExitCode> {
  const { values, positionals } = usageErrors(() => parseArgs({ args, options: HEALTH_FLAGS, allowPositionals: true, strict: true }));
  if (values.help) return out.usage('health');
  const [url, extra] = positionals;
  if (!url) throw new UsageError('missing <url>');
  if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
  const service = values.service ?? '';
  const started = performance.now();
  const client = await connectClient(clientOptionsOf(url, values), metadataOf(values));
  try {
    const connectedMs = performance.now() - started;
    const sent = performance.now();
    const reply = await lastValueFrom(client.send<MsgTransHealthReply>(HEALTH_ROUTE, { service }));
    const roundTripMs = performance.now() - sent;
    out.line(
      JSON.stringify({
        status: reply.status,
        url,
        service,
        connectMs: Number(connectedMs.toFixed(3)),
        roundTripMs: Number(roundTripMs.toFixed(3)),
        ...(reply.reason === undefined ? {} : { reason: reply.reason }),
      }),
    );
    return reply.status === 'SERVING' ? ExitCode.OK : ExitCode.ERROR_REPLY;
  } finally {
    client.close();
  }
}
