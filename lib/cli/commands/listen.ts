import { parseArgs } from 'node:util';
import { filter } from 'rxjs';
import { dispatchRoute } from '../../envelope/route.js';
import { MsgTransStatus } from '../../interfaces/msgtrans-events.interface.js';
import { CONNECTION_FLAGS, clientOptionsOf, metadataOf, usageErrors } from '../cli-options.js';
import { connectClient } from '../cli-client.js';
import { ExitCode, UsageError } from '../exit-code.js';
import type { CliOutput } from '../cli-output.js';

/** `msgtrans listen`: prints pushed events until SIGINT/SIGTERM (exit 0) or the connection is lost (exit 3). */
export async function listenCommand(args: string[], out: CliOutput): Promise<ExitCode> {
  const { values, positionals } = usageErrors(() => parseArgs({ args, options: CONNECTION_FLAGS, allowPositionals: true, strict: true }));
  if (values.help) return out.usage('listen');
  const [url, ...patterns] = positionals;
  if (!url) throw new UsageError('missing <url>');
  if (patterns.length === 0) throw new UsageError('missing <pattern>');
  const routes = new Map(patterns.map((pattern) => [dispatchRoute(pattern), pattern]));
  const client = await connectClient({ ...clientOptionsOf(url, values), requestTimeout: 0 }, metadataOf(values));
  try {
    return await new Promise<ExitCode>((resolve) => {
      const stop = (): void => resolve(ExitCode.OK);
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      client
        .incomingMessages()
        .pipe(filter((message) => routes.has(message.route)))
        .subscribe((message) => {
          const data = Buffer.isBuffer(message.data) ? message.data.toString('hex') : (message.data ?? null);
          out.line(JSON.stringify({ pattern: routes.get(message.route), data, ...(message.metadata ? { metadata: message.metadata } : {}) }));
        });
      client.status.pipe(filter((status) => status === MsgTransStatus.DISCONNECTED)).subscribe(() => {
        out.error('connection lost');
        resolve(ExitCode.CANNOT_CONNECT);
      });
      out.error(`listening on ${url} for ${patterns.join(', ')}`);
    });
  } finally {
    client.close();
  }
}
