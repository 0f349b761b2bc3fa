import { transformPatternToRoute } from '@nestjs/microservices/utils/transform-pattern.utils.js';

/** The wire route for a message: a biz_type, or a route entry in the extension header. */
export interface WireRoute {
  readonly bizType: number;
  /** Undefined when the pattern travels as `bizType` alone. */
  readonly route: string | undefined;
}

/** True for patterns that travel as biz_type: integers 0–255. */
export function isBizTypePattern(pattern: unknown): pattern is number {
  return typeof pattern === 'number' && Number.isInteger(pattern) && pattern >= 0 && pattern <= 255;
}

// Routes for packets without a route entry: one string per biz_type, made once.
const BIZ_TYPE_ROUTES: readonly string[] = Array.from({ length: 256 }, (_, i) => String(i));

const BIZ_TYPE_WIRE: readonly WireRoute[] = Array.from({ length: 256 }, (_, bizType) => ({ bizType, route: undefined }));
const STRING_WIRE = new Map<string, WireRoute>();
// patterns are few; the bound keeps callers with unbounded routes from growing memory
const WIRE_CACHE_LIMIT = 1024;

/** The route a receiver dispatches on when a packet has no `route` entry. */
export function routeOfBizType(bizType: number): string {
  return BIZ_TYPE_ROUTES[bizType];
}

/**
 * How a Nest pattern travels (PROTOCOL.md Part B): integers 0–255 as
 * biz_type, anything else normalised the way Nest normalises patterns
 * (objects become their canonical JSON) as the route.
 */
export function toWireRoute(pattern: unknown): WireRoute {
  if (isBizTypePattern(pattern)) return BIZ_TYPE_WIRE[pattern];
  if (typeof pattern !== 'string') return { bizType: 0, route: transformPatternToRoute(pattern as any) };
  // called for every message sent: string patterns map to one shared object each
  let wire = STRING_WIRE.get(pattern);
  if (wire === undefined) {
    wire = { bizType: 0, route: pattern };
    if (STRING_WIRE.size < WIRE_CACHE_LIMIT) STRING_WIRE.set(pattern, wire);
  }
  return wire;
}

/** The route string a receiver dispatches on for a pattern: what `toWireRoute` sends, as received. */
export function dispatchRoute(pattern: unknown): string {
  const wire = toWireRoute(pattern);
  return wire.route ?? routeOfBizType(wire.bizType);
}
