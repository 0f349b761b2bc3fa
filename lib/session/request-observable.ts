import { Observable } from 'rxjs';
import type { WireRoute } from '../envelope/route.js';
import type { MsgTransSession } from './msgtrans-session.js';

/** What a request carries, built when it is subscribed. */
export interface RequestParts {
  wire: WireRoute;
  data: unknown;
  metadata: Record<string, string> | undefined;
}

/**
 * A request as a cold Observable: `build` runs and the request is sent on
 * subscribe, replies arrive as values, and CANCEL goes to the peer if the
 * subscriber leaves before the reply ends. `session` may be a function
 * returning a promise, for callers that connect first.
 */
export function requestObservable<T>(
  session: MsgTransSession | (() => MsgTransSession | Promise<MsgTransSession>),
  build: () => RequestParts,
): Observable<T> {
  return new Observable<T>((subscriber) => {
    const parts = build();
    let target: MsgTransSession | null = null;
    let id = 0;
    const start = (s: MsgTransSession) => {
      if (subscriber.closed) return;
      target = s;
      id = s.request(parts.wire.bizType, parts.wire.route, parts.data, parts.metadata, subscriber);
    };
    const resolved = typeof session === 'function' ? session() : session;
    if (resolved instanceof Promise) resolved.then(start).catch((err) => subscriber.error(err));
    else start(resolved);
    return () => {
      if (id !== 0) target?.cancel(id);
    };
  });
}
