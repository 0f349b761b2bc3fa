import type { MsgTransSession } from '../session/msgtrans-session.js';

/** How a client with several replicas picks the one for each call and event. */
export type MsgTransLoadBalancing = 'round-robin' | 'least-pending';

/**
 * Picks a session among the connected ones. Round-robin spreads calls
 * evenly; least-pending sends each to the replica with the fewest requests
 * awaiting a reply (ties: the one after the last pick), which steers work
 * away from a replica that is slow or busy.
 */
export class LoadBalancer {
  private next = 0;

  constructor(private readonly policy: MsgTransLoadBalancing) {}

  /** One of `sessions` (non-empty). */
  pick(sessions: MsgTransSession[]): MsgTransSession {
    const count = sessions.length;
    const start = this.next++ % count;
    if (this.next >= Number.MAX_SAFE_INTEGER) this.next = 0;
    if (this.policy === 'round-robin' || count === 1) return sessions[start];
    let best = sessions[start];
    for (let i = 1; i < count; i++) {
      const candidate = sessions[(start + i) % count];
      if (candidate.pendingRequests < best.pendingRequests) best = candidate;
    }
    return best;
  }
}
