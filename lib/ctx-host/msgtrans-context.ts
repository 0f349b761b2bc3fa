import type { X509Certificate } from 'node:crypto';
import { BaseRpcContext } from '@nestjs/microservices';
import type { IncomingMessage } from '../session/incoming-message.interface.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';

/** Session, message and (when the caller sent its budget) the local deadline in ms since the epoch. */
type MsgTransContextArgs = [MsgTransSession, IncomingMessage, number?];

/**
 * What `@Ctx()` gives a handler served by {@link MsgTransServer}: who sent the
 * message, over which protocol, and the packet's wire details.
 */
export class MsgTransContext extends BaseRpcContext<MsgTransContextArgs> {
  constructor(args: MsgTransContextArgs) {
    super(args);
  }

  /** The session (connection) the message arrived on; it can also send to the peer. */
  getSession(): MsgTransSession {
    return this.args[0];
  }

  /** Id of the session, unique for the server's lifetime. */
  getSessionId(): string {
    return this.args[0].id;
  }

  /** Protocol the message came in on: `tcp`, `tls`, `ws`, `wss`, `quic`, … */
  getProtocol(): string {
    return this.args[0].protocol;
  }

  /** The peer's address, when the protocol has one. */
  getRemoteAddress(): string | undefined {
    return this.args[0].connection.remoteAddress;
  }

  /** The peer's port, when the protocol has one. */
  getRemotePort(): number | undefined {
    return this.args[0].connection.remotePort;
  }

  /** The pattern as received: the route entry, or the biz_type in decimal. */
  getPattern(): string {
    return this.args[1].route;
  }

  /** The packet's message_id (per connection, per sender). */
  getMessageId(): number {
    return this.args[1].messageId;
  }

  /** The packet's biz_type (0 when the pattern travelled as a route). */
  getBizType(): number {
    return this.args[1].bizType;
  }

  /** The packet's flags word. */
  getFlags(): number {
    return this.args[1].flags;
  }

  /** What the server's `authenticate` hook returned for this connection. */
  getPrincipal<T = unknown>(): T {
    return this.args[0].principal as T;
  }

  /** The certificate the client presented (mutual TLS), if any. `subject` names it. */
  getPeerCertificate(): X509Certificate | undefined {
    return this.args[0].connection.peerCertificate;
  }

  /** Extension-header entries other than `route`: what the client's dispatch hook set. */
  getMetadata(): Record<string, string> | undefined {
    return this.args[1].metadata;
  }

  /**
   * When the caller stops waiting, in ms since the epoch on this machine's
   * clock: the time the request arrived plus the budget the caller sent
   * (docs/PROTOCOL.md, "Deadlines"). At that moment the handler's Observable
   * is unsubscribed and no reply is sent. For a streamed reply it is the
   * deadline of the first value; each value grants the next the same budget
   * again. Undefined when the caller sent no budget (no deadline).
   * `new Date(ctx.getDeadline())` gives it as a Date.
   */
  getDeadline(): number | undefined {
    return this.args[2];
  }
}
