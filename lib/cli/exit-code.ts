import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransError } from '../errors/msgtrans-error.js';

/** Exit statuses of the `msgtrans` command. */
export const ExitCode = {
  /** The command did what was asked. */
  OK: 0,
  /** The service answered with an error (or refused the credentials). */
  ERROR_REPLY: 1,
  /** The command line is wrong (unknown flag, bad JSON, unreadable file, bad option). */
  USAGE: 2,
  /** The service could not be reached, or the connection was lost. */
  CANNOT_CONNECT: 3,
  /** No reply within `--timeout`. */
  TIMEOUT: 4,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** A mistake on the command line, reported with the command's usage. */
export class UsageError extends Error {}

const CONNECTION_CODES: ReadonlySet<string> = new Set([
  MsgTransErrorCode.CONNECT_FAILED,
  MsgTransErrorCode.CONNECTION_CLOSED,
  MsgTransErrorCode.CLIENT_CLOSED,
  MsgTransErrorCode.QUEUE_FULL,
]);

/** The exit status for an error a command ended with. */
export function exitCodeOf(error: unknown): ExitCode {
  if (error instanceof UsageError || error instanceof MsgTransConfigError) return ExitCode.USAGE;
  if (error instanceof MsgTransError) {
    if (error.code === MsgTransErrorCode.TIMEOUT) return ExitCode.TIMEOUT;
    if (CONNECTION_CODES.has(error.code)) return ExitCode.CANNOT_CONNECT;
  }
  // anything else came from the service: an error reply, a refusal, a protocol violation
  return ExitCode.ERROR_REPLY;
}

/** One line describing an error for stderr: the message and code of our errors, the JSON of an error reply. */
export function describeError(error: unknown): string {
  if (error instanceof MsgTransError) {
    const cause = error.cause instanceof Error && !error.message.includes(error.cause.message) ? ` (${error.cause.message})` : '';
    return `${error.code}: ${error.message}${cause}`;
  }
  if (error instanceof Error) return error.message;
  return `error reply: ${JSON.stringify(error)}`;
}
