/**
 * How a pattern travels (PROTOCOL.md Part B), without `@nestjs/microservices`:
 * integers 0–255 as biz_type, anything else as the `route` entry, objects
 * normalised exactly as Nest 12's `transformPatternToRoute` does (the Node
 * side's `lib/envelope/route.ts` calls Nest's; a test checks both agree).
 */
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransWebError } from './msgtrans-web-error.js';

/** The wire route for a message: a biz_type, or a route entry. */
export interface WebWireRoute {
  bizType: number;
  /** Undefined when the pattern travels as `bizType` alone. */
  route: string | undefined;
}

const MAX_DEPTH = 5;
const MAX_KEYS = 20;

const quote = (s: string): string => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');

/** Nest's pattern normalisation: sorted keys, canonical JSON-like text, bounded depth and width. */
export function patternToRoute(pattern: unknown, depth = 0): string {
  if (typeof pattern !== 'object' || pattern === null) return `${pattern as string}`;
  if (depth > MAX_DEPTH) return '[MAX_DEPTH_REACHED]';
  const keys = Object.keys(pattern);
  if (keys.length > MAX_KEYS) return '[TOO_MANY_KEYS]';
  const parts = keys
    .sort((a, b) => a.localeCompare(b))
    .map((key) => {
      const value = (pattern as Record<string, unknown>)[key];
      const text = patternToRoute(value, depth + 1);
      return `"${quote(key)}":${typeof value === 'string' ? `"${quote(text)}"` : text}`;
    });
  return `{${parts.join(',')}}`;
}

/** The wire route of a pattern; a missing pattern is a caller error. */
export function toWebWireRoute(pattern: unknown): WebWireRoute {
  if (pattern === null || pattern === undefined) {
    throw new MsgTransWebError(MsgTransErrorCode.INVALID_OPTION, 'A pattern is required');
  }
  if (typeof pattern === 'number' && Number.isInteger(pattern) && pattern >= 0 && pattern <= 255) {
    return { bizType: pattern, route: undefined };
  }
  return { bizType: 0, route: patternToRoute(pattern) };
}

/** The route a receiver dispatches on: the route entry, else the biz_type as a decimal string. */
export function dispatchRouteOf(pattern: unknown): string {
  const wire = toWebWireRoute(pattern);
  return wire.route ?? String(wire.bizType);
}
