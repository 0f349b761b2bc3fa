#!/usr/bin/env node
import { Logger } from '@nestjs/common';
import { CliOutput } from './cli-output.js';
import { benchCommand } from './commands/bench.js';
import { callCommand } from './commands/call.js';
import { emitCommand } from './commands/emit.js';
import { healthCommand } from './commands/health.js';
import { listenCommand } from './commands/listen.js';
import { ExitCode, UsageError, describeError, exitCodeOf } from './exit-code.js';

type Command = (args: string[], out: CliOutput) => Promise<ExitCode>;

const COMMANDS: Readonly<Record<string, Command>> = {
  call: callCommand,
  emit: emitCommand,
  listen: listenCommand,
  bench: benchCommand,
  health: healthCommand,
};

/** Runs `msgtrans <command> …` and resolves with the exit status. */
export async function runCli(argv: string[], out = new CliOutput()): Promise<ExitCode> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    if (name === undefined) {
      out.error('missing <command>');
      return ExitCode.USAGE;
    }
    return out.usage('main');
  }
  const command = COMMANDS[name];
  if (!command) {
    out.error(`unknown command ${JSON.stringify(name)} (msgtrans --help lists them)`);
    return ExitCode.USAGE;
  }
  try {
    return await command(args, out);
  } catch (err) {
    out.error(describeError(err));
    if (err instanceof UsageError) out.error(`see msgtrans ${name} --help`);
    return exitCodeOf(err);
  }
}

// The client's own logs (connection lost, …) would mix with results on stdout: the command reports errors itself.
Logger.overrideLogger(false);
const code = await runCli(process.argv.slice(2));
// stdout may be a pipe still draining: exit once it has taken everything
process.stdout.write('', () => process.exit(code));
