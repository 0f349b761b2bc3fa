import { ExitCode } from './exit-code.js';
import { USAGE } from './usage.js';

/** Where a command writes: lines of results to stdout, help and diagnostics to stderr. */
export class CliOutput {
  constructor(
    private readonly stdout: NodeJS.WritableStream = process.stdout,
    private readonly stderr: NodeJS.WritableStream = process.stderr,
  ) {}

  line(text: string): void {
    this.stdout.write(`${text}\n`);
  }

  error(text: string): void {
    this.stderr.write(`msgtrans: ${text}\n`);
  }

  /** Prints a command's help (asked for, so to stdout) and returns success. */
  usage(command: string): ExitCode {
    this.stdout.write(USAGE[command] ?? USAGE.main);
    return ExitCode.OK;
  }
}
