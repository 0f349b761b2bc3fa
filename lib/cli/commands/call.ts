import { parseArgs } from 'node:util';
import { CONNECTION_FLAGS, DATA_FLAGS, clientOptionsOf, formatValue, messageOf, metadataOf, usageErrors } from '../cli-options.js';
import { connectClient } from '../cli-client.js';
import { ExitCode, UsageError } from '../exit-code.js';
import type { CliOutput } from '../cli-output.js';

/** `msgtrans call`: one request, every reply value printed as it arrives. */
export async function callCommand(args: string[], out: CliOutput): Promise<ExitCode> {
  const { values, positionals } = usageErrors(() => parseArgs({ args, options: { ...CONNECTION_FLAGS, ...DATA_FLAGS }, allowPositionals: true, strict: true }));
  if (values.help) return out.usage('call');
  const [url, ...rest] = positionals;
  if (!url) throw new UsageError('missing <url>');
  const { pattern, data } = messageOf(rest, values);
  const client = await connectClient(clientOptionsOf(url, values), metadataOf(values));
  try {
    await new Promise<void>((resolve, reject) => {
      client.send(pattern, data).subscribe({
        next: (value) => out.line(formatValue(value)),
        error: reject,
        complete: resolve,
      });
    });
    return ExitCode.OK;
  } finally {
    client.close();
  }
}
