import { RpcException } from '@nestjs/microservices';
import { MsgTransEncodeError } from '../errors/msgtrans-encode-error.js';
import { MsgTransError } from '../errors/msgtrans-error.js';

/** What Nest's exception filter sends for an error it does not know: internals stay home. */
export const INTERNAL_ERROR = Object.freeze({ status: 'error', message: 'Internal server error' });

/**
 * The value an error reply carries. Errors travel as the codec encoding of
 * what Nest's exception filters produced (`{ status, message }` for
 * RpcException, whatever the filter returned otherwise), and that is what
 * normally arrives here. What did not pass a filter is rendered as the
 * filter would: an RpcException as `{ status, message }` or its object, a
 * library error as `{ status, message, code }`, an encode failure as Nest's
 * generic error with its code, and any other Error (a processing hook's, a
 * bug's) as Nest's generic error, so internals stay home, unless
 * `exposeMessages` (the client's `answer()` handlers, which no filter sees)
 * asks for `{ status, message }`.
 */
export function serializeError(error: unknown, exposeMessages = false): unknown {
  if (error instanceof MsgTransEncodeError) return { ...INTERNAL_ERROR, code: error.code };
  if (error instanceof MsgTransError) return { status: 'error', message: error.message, code: error.code };
  if (error instanceof RpcException) {
    const value = error.getError();
    return typeof value === 'object' && value !== null ? value : { status: 'error', message: value };
  }
  if (error instanceof Error) return exposeMessages ? { status: 'error', message: error.message } : INTERNAL_ERROR;
  return error;
}

/**
 * What can be encoded of an error value that cannot be as a whole (a
 * circular `cause`, a BigInt): its own top-level strings, finite numbers and
 * booleans. Nest's generic error when nothing is left.
 */
export function encodableErrorPart(value: unknown): object {
  if (typeof value !== 'object' || value === null) return INTERNAL_ERROR;
  const kept: Record<string, unknown> = {};
  let count = 0;
  for (const key of Object.keys(value)) {
    const field = (value as Record<string, unknown>)[key];
    if (typeof field === 'string' || typeof field === 'boolean' || (typeof field === 'number' && Number.isFinite(field))) {
      // defineProperty: a key such as "__proto__" stays data
      Object.defineProperty(kept, key, { value: field, enumerable: true, writable: true, configurable: true });
      count++;
    }
  }
  return count > 0 ? kept : INTERNAL_ERROR;
}
