import { parseArgs } from 'node:util';
import { lastValueFrom } from 'rxjs';
import { AUTH_ROUTE } from '../../server/session-authenticator.js';
import { CONNECTION_FLAGS, clientOptionsOf, metadataOf, usageErrors, parseJson } from '../cli-options.js';
import { connectClient } from '../cli-client.js';
import { ExitCode, UsageError } from '../exit-code.js';
import type { CliOutput } from '../cli-output.js';

/**
 * `msgtrans health`: connect and one `msgtrans.auth` round trip, which every
 * msgtrans server answers (PROTOCOL.md, Authentication): a server without an
 * authenticate hook replies `{"authenticated":true}`, one with a hook decides
 * on the credentials given. The client presents them itself here (not through
 * the `credentials` option) so that the timed request is that answer.
 */
export async function healthCommand(args: string[], out: CliOutput): Promise<ExitCode> {
  const { values, positionals } = usageErrors(() => parseArgs({ args, options: CONNECTION_FLAGS, allowPositionals: true, strict: true }));
  if (values.help) return out.usage('health');
  const [url, extra] = positionals;
  if (!url) throw new UsageError('missing <url>');
  if (extra !== undefined) throw new UsageError(`unexpected argument ${JSON.stringify(extra)}`);
  const credentials = values.credentials === undefined ? {} : parseJson(values.credentials, '--credentials');
  const started = performance.now();
  const client = await connectClient({ ...clientOptionsOf(url, { ...values, credentials: undefined }) }, metadataOf(values));
  try {
    const connectedMs = performance.now() - started;
    const sent = performance.now();
    const reply = await lastValueFrom(client.send(AUTH_ROUTE, credentials));
    const roundTripMs = performance.now() - sent;
    out.line(
      JSON.stringify({
        status: 'ok',
        url,
        connectMs: Number(connectedMs.toFixed(3)),
        roundTripMs: Number(roundTripMs.toFixed(3)),
        reply,
      }),
    );
    return ExitCode.OK;
  } finally {
    client.close();
  }
}
