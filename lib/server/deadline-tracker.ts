import type { IncomingMessage } from '../session/incoming-message.interface.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';

/** A request being answered under the caller's deadline. */
export interface TrackedRequest {
  session: MsgTransSession;
  message: IncomingMessage;
  /** ms since the epoch at which the reply (or its next streamed value) is due. */
  at: number;
  /** The caller's budget in ms, granted again for each streamed value (as the client waits per value). */
  budget: number;
  /** Set once the deadline passed: the handler was stopped and no reply may be sent. */
  expired: boolean;
}

/**
 * The deadlines of the requests a server is answering, on one timer armed
 * for the earliest of them: a request costs a Set entry, not a timer of its
 * own. When a deadline passes the request is abandoned as on CANCEL: its
 * handler's Observable is unsubscribed and no reply is sent.
 */
export class DeadlineTracker {
  private readonly entries = new Set<TrackedRequest>();
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;

  track(session: MsgTransSession, message: IncomingMessage, budget: number, now: number): TrackedRequest {
    const entry: TrackedRequest = { session, message, at: now + budget, budget, expired: false };
    this.entries.add(entry);
    if (entry.at < this.timerAt) this.arm(entry.at);
    return entry;
  }

  /** A streamed value went out: the next one has the whole budget again. */
  refresh(entry: TrackedRequest): void {
    // the timer may fire early for it; the sweep re-arms for the true earliest
    entry.at = Date.now() + entry.budget;
  }

  /** The reply ended (or was cancelled): nothing more to watch. */
  release(entry: TrackedRequest): void {
    this.entries.delete(entry);
  }

  /** Drops every entry and the timer (server closed). */
  clear(): void {
    this.entries.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = at === Infinity ? null : setTimeout(() => this.sweep(), Math.max(0, at - Date.now()) + 1);
    this.timer?.unref();
  }

  private sweep(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const entry of this.entries) {
      if (entry.at > now) {
        if (entry.at < next) next = entry.at;
        continue;
      }
      this.entries.delete(entry);
      entry.expired = true;
      entry.session.abandon(entry.message);
    }
    if (next < this.timerAt) this.arm(next);
  }
}
