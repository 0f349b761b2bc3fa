import { parseArgs } from 'node:util';
import { lastValueFrom } from 'rxjs';
import { AUTH_ROUTE } from '../../server/session-authenticator.js';
import { CONNECTION_FLAGS, DATA_FLAGS, clientOptionsOf, messageOf, metadataOf, usageErrors } from '../cli-options.js';
import { connectClient } from '../cli-client.js';
import { ExitCode, UsageError } from '../exit-code.js';
import type { CliOutput } from '../cli-output.js';

/**
 * `msgtrans emit`: one event. A request follows it on the same connection and
 * its reply (whatever it says) shows the event arrived: events have no reply,
 * and closing straight after writing could lose one still in flight.
 */
export async function emitCommand(args: string[], out: CliOutput): Promise<ExitCode> {
  const { values, positionals } = usageErrors(() => parseArgs({ args, options: { ...CONNECTION_FLAGS, ...DATA_FLAGS }, allowPositionals: true, strict: true }));
  if (values.help) return out.usage('emit');
  const [url, ...rest] = positionals;
  if (!url) throw new UsageError('missing <url>');
  const { pattern, data } = messageOf(rest, values);
  const client = await connectClient(clientOptionsOf(url, values), metadataOf(values));
  try {
    await lastValueFrom(client.emit(pattern, data), { defaultValue: undefined });
    await lastValueFrom(client.send(AUTH_ROUTE, {}), { defaultValue: undefined }).catch((err: unknown) => {
      // an error reply is a reply too; only a lost connection or a timeout says the event may not have arrived
      if (err instanceof Error) throw err;
    });
    return ExitCode.OK;
  } finally {
    client.close();
  }
}
