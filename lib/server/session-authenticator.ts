import type { X509Certificate } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { PacketType } from '../codec/packet.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';
import type { IncomingMessage } from '../session/incoming-message.interface.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';

/**
 * The route of the request a client sends first to present credentials
 * (docs/PROTOCOL.md, "Authentication").
 */
export const AUTH_ROUTE = 'msgtrans.auth';

/** What a connection presents to the server's `authenticate` hook. */
export interface MsgTransAuthRequest {
  protocol: string;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** What the client sent with its `msgtrans.auth` request (the `credentials` client option); undefined if none. */
  credentials: unknown;
  /** The client's TLS certificate (mutual TLS on tls://, wss://, quic://). */
  peerCertificate: X509Certificate | undefined;
  /** WebSocket only: the upgrade request's headers (cookies, Authorization, …). */
  headers: IncomingHttpHeaders | undefined;
}

/**
 * Decides whether a connection may talk to handlers. Return the principal
 * (anything but `undefined`, `null` or `false`; it is put on the session and
 * `MsgTransContext#getPrincipal()`), or throw / return a falsy value to refuse.
 */
export type MsgTransAuthenticate = (request: MsgTransAuthRequest) => unknown;

interface Waiting {
  queue: IncomingMessage[];
  running: boolean;
  timer: NodeJS.Timeout;
}

// Messages a not-yet-authenticated peer may have queued; a flood closes it.
const MAX_QUEUED = 1024;

const REFUSED = { status: 'error', message: 'Authentication failed', code: MsgTransErrorCode.AUTH_FAILED };

/**
 * Holds new sessions until the `authenticate` hook accepts them. The hook runs
 * on the client's `msgtrans.auth` request, or (for peers that present
 * nothing but a certificate, headers or an address) on their first other
 * packet or after `timeoutMs` of silence. Nothing reaches a handler before.
 */
export class SessionAuthenticator {
  private readonly waiting = new Map<MsgTransSession, Waiting>();

  constructor(
    private readonly authenticate: MsgTransAuthenticate,
    private readonly timeoutMs: number,
    private readonly accepted: (session: MsgTransSession, queued: IncomingMessage[]) => void,
    private readonly refused: (session: MsgTransSession, reason: string) => void,
  ) {}

  /** Starts holding a new session. */
  begin(session: MsgTransSession): void {
    const timer = setTimeout(() => void this.decide(session, undefined, undefined), this.timeoutMs);
    timer.unref();
    this.waiting.set(session, { queue: [], running: false, timer });
  }

  /** True if the session is still held (the message was taken). */
  intercept(session: MsgTransSession, message: IncomingMessage): boolean {
    const waiting = this.waiting.get(session);
    if (!waiting) return false;
    if (!waiting.running && message.packetType === PacketType.REQUEST && message.route === AUTH_ROUTE) {
      void this.decide(session, message.data, message);
      return true;
    }
    if (waiting.queue.length >= MAX_QUEUED) {
      session.close(new MsgTransLimitError(MsgTransErrorCode.TOO_MANY_IN_FLIGHT, 'Too many messages before authentication'));
      return true;
    }
    waiting.queue.push(message);
    if (!waiting.running) void this.decide(session, undefined, undefined);
    return true;
  }

  /** Drops a session that closed while held. */
  forget(session: MsgTransSession): void {
    const waiting = this.waiting.get(session);
    if (!waiting) return;
    clearTimeout(waiting.timer);
    this.waiting.delete(session);
  }

  private async decide(session: MsgTransSession, credentials: unknown, authRequest: IncomingMessage | undefined): Promise<void> {
    const waiting = this.waiting.get(session);
    if (!waiting || waiting.running) return;
    waiting.running = true;
    clearTimeout(waiting.timer);
    const connection = session.connection;
    let principal: unknown;
    let reason = 'refused by authenticate';
    try {
      principal = await this.authenticate({
        protocol: connection.protocol,
        remoteAddress: connection.remoteAddress,
        remotePort: connection.remotePort,
        credentials,
        peerCertificate: connection.peerCertificate,
        headers: connection.upgradeHeaders,
      });
    } catch (err) {
      principal = undefined;
      reason = (err as Error)?.message ?? String(err);
    }
    this.waiting.delete(session);
    if (session.closed) return;
    if (principal === undefined || principal === null || principal === false) {
      if (authRequest) session.replyError(authRequest, REFUSED);
      for (const message of waiting.queue) {
        if (message.packetType === PacketType.REQUEST) session.replyError(message, REFUSED);
      }
      this.refused(session, reason);
      // a graceful close, so the refusal reaches the client before the connection ends
      session.close();
      return;
    }
    session.principal = principal;
    if (authRequest) session.reply(authRequest, { authenticated: true });
    this.accepted(session, waiting.queue);
  }
}
