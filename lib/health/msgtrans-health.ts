import type { IncomingMessage } from '../session/incoming-message.interface.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';

/**
 * The reserved route every server answers with its health, without a user
 * handler (docs/PROTOCOL.md, "Health"). The request payload is
 * `{ service?: string }`; `''` (or none) is the whole server.
 */
export const HEALTH_ROUTE = 'msgtrans.health';

/** A health status, as in grpc.health.v1. */
export type MsgTransHealthStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

/** The reply to `msgtrans.health`. */
export interface MsgTransHealthReply {
  status: MsgTransHealthStatus;
  /** The service asked about (`''`: the whole server). */
  service: string;
  /** Why a named check said NOT_SERVING, when it threw. */
  reason?: string;
}

/**
 * A named check: true (or a promise of true) while that part of the service
 * can serve. A throw or rejection counts as NOT_SERVING, with its message as
 * the reason.
 */
export type MsgTransHealthCheck = () => boolean | Promise<boolean>;

/** Answers `msgtrans.health` for a server, from its drain state and the user's named checks. */
export class MsgTransHealth {
  constructor(private readonly checks: Readonly<Record<string, MsgTransHealthCheck>>) {}

  /** Replies to a health request on `session`; never throws. */
  answer(session: MsgTransSession, message: IncomingMessage, draining: boolean): void {
    const data = message.data as { service?: unknown } | null | undefined;
    const service = typeof data?.service === 'string' ? data.service : '';
    void this.status(service, draining).then((reply) => {
      if (!session.closed) session.reply(message, reply);
    });
  }

  /** The status of `service` ('' is the whole server). */
  async status(service: string, draining: boolean): Promise<MsgTransHealthReply> {
    if (service !== '' && !Object.hasOwn(this.checks, service)) return { status: 'SERVICE_UNKNOWN', service };
    // a draining server serves nothing new, whatever its checks say
    if (draining) return { status: 'NOT_SERVING', service };
    if (service === '') return { status: 'SERVING', service };
    try {
      return { status: (await this.checks[service]()) === true ? 'SERVING' : 'NOT_SERVING', service };
    } catch (err) {
      return { status: 'NOT_SERVING', service, reason: err instanceof Error ? err.message : String(err) };
    }
  }
}
