import type { X509Certificate } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { decodeExtHeader, routeOnly } from '../codec/ext-header.js';
import { HEADER_SIZE, PacketFlag, PacketType, type MsgTransPacket } from '../codec/packet.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';
import type { IncomingMessage } from '../session/incoming-message.interface.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';
import type { GatedSession, PacketGate } from './gated-session.js';

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
  // packets as received, each in its own buffer: what `bytes` counts is what is held
  queue: MsgTransPacket[];
  bytes: number;
  running: boolean;
  timer: NodeJS.Timeout;
}

/** How much a peer that is not accepted yet may make the server hold. */
export interface PreAuthLimits {
  maxMessages: number;
  maxBytes: number;
}

const REFUSED = { status: 'error', message: 'Authentication failed', code: MsgTransErrorCode.AUTH_FAILED };

/**
 * Holds new sessions until the `authenticate` hook accepts them. The hook runs
 * on the client's `msgtrans.auth` request, or (for peers that present
 * nothing but a certificate, headers or an address) on their first other
 * packet or after `timeoutMs` of silence. Nothing reaches a handler before.
 *
 * While a session is held its packets are routed from the header and the
 * extension header alone and queued undecoded, within `limits`; they are
 * decompressed and decoded only once the session is accepted (or, for
 * requests of a refused session, answered with the refusal unread).
 */
export class SessionAuthenticator implements PacketGate {
  private readonly waiting = new Map<MsgTransSession, Waiting>();

  constructor(
    private readonly authenticate: MsgTransAuthenticate,
    private readonly timeoutMs: number,
    private readonly limits: PreAuthLimits,
    private readonly accepted: (session: MsgTransSession, queued: MsgTransPacket[]) => void,
    private readonly refused: (session: MsgTransSession, reason: string) => void,
    /** A route answered before authentication (the health probe, when the server allows it). */
    private readonly openRoute: string | undefined = undefined,
  ) {}

  /** Starts holding a new session. */
  begin(session: GatedSession): void {
    const timer = setTimeout(() => void this.decide(session, undefined, undefined), this.timeoutMs);
    timer.unref();
    this.waiting.set(session, { queue: [], bytes: 0, running: false, timer });
    session.gate = this;
  }

  /** @internal packet gate of held sessions */
  take(session: GatedSession, packet: MsgTransPacket): boolean {
    const waiting = this.waiting.get(session);
    if (waiting === undefined) {
      session.gate = null;
      return false;
    }
    // replies answer nothing (a held session was never asked anything): the session drops them unread
    if (packet.packetType === PacketType.RESPONSE) return false;
    // a CANCEL is no message of its own (QUIC clients open their stream with one)
    if (packet.flags & PacketFlag.CANCEL) return this.cancelQueued(waiting, packet.messageId);
    // the credentials: decoded by the session, they come back through onRequest
    const route = requestRoute(packet);
    if (!waiting.running && route === AUTH_ROUTE) return false;
    // an allowed probe is answered at once, outside the queue and its limits
    if (route !== undefined && route === this.openRoute) return false;
    const size = HEADER_SIZE + packet.extHeader.length + packet.payload.length;
    // the first packet is always held, whatever its size (maxPacketSize bounds it)
    if (waiting.queue.length > 0 && (waiting.queue.length >= this.limits.maxMessages || waiting.bytes + size > this.limits.maxBytes)) {
      session.close(
        new MsgTransLimitError(
          MsgTransErrorCode.PRE_AUTH_LIMIT,
          `More than ${this.limits.maxMessages} messages or ${this.limits.maxBytes} bytes before authentication`,
        ),
      );
      return true;
    }
    waiting.queue.push(detached(packet));
    waiting.bytes += size;
    if (!waiting.running) void this.decide(session, undefined, undefined);
    return true;
  }

  /** Drops a queued request the peer no longer wants (true); other CANCELs are the session's. */
  private cancelQueued(waiting: Waiting, messageId: number): boolean {
    const index = waiting.queue.findIndex((p) => p.packetType === PacketType.REQUEST && p.messageId === messageId);
    if (index < 0) return false;
    const [dropped] = waiting.queue.splice(index, 1);
    waiting.bytes -= HEADER_SIZE + dropped.extHeader.length + dropped.payload.length;
    return true;
  }

  /**
   * A request of a held session that the session decoded: the credentials
   * (the gate lets those through), or a queued request of a refused session
   * being answered with the refusal.
   */
  onHeldRequest(session: MsgTransSession, message: IncomingMessage): void {
    const waiting = this.waiting.get(session);
    if (waiting !== undefined && !waiting.running && message.route === AUTH_ROUTE) {
      void this.decide(session, message.data, message);
      return;
    }
    session.replyError(message, REFUSED);
  }

  /**
   * Credentials from a session already accepted (sent late, after other
   * packets, so the hook was asked without them): the hook decides again
   * with them, never ignoring them. Refused, the session is closed.
   */
  async reauthenticate(session: MsgTransSession, authRequest: IncomingMessage): Promise<void> {
    const { principal, reason } = await this.ask(session, authRequest.data);
    if (session.closed) return;
    if (principal === undefined) {
      this.refuse(session, authRequest, reason, []);
      return;
    }
    session.principal = principal;
    session.reply(authRequest, { authenticated: true });
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
    const { principal, reason } = await this.ask(session, credentials);
    this.waiting.delete(session);
    (session as GatedSession).gate = null;
    if (session.closed) return;
    if (principal === undefined) {
      this.refuse(session, authRequest, reason, waiting.queue);
      return;
    }
    session.principal = principal;
    if (authRequest) session.reply(authRequest, { authenticated: true });
    this.accepted(session, waiting.queue);
  }

  /** Runs the hook; `principal` is undefined when it refused. */
  private async ask(session: MsgTransSession, credentials: unknown): Promise<{ principal: unknown; reason: string }> {
    const connection = session.connection;
    try {
      const principal = await this.authenticate({
        protocol: connection.protocol,
        remoteAddress: connection.remoteAddress,
        remotePort: connection.remotePort,
        credentials,
        peerCertificate: connection.peerCertificate,
        headers: connection.upgradeHeaders,
      });
      const accepted = principal !== undefined && principal !== null && principal !== false;
      return { principal: accepted ? principal : undefined, reason: 'refused by authenticate' };
    } catch (err) {
      return { principal: undefined, reason: (err as Error)?.message ?? String(err) };
    }
  }

  /**
   * Answers the credentials and every queued request with the refusal, then
   * closes gracefully so the answers reach the client. The queued requests go
   * back through the session (it counts them) to `onHeldRequest`, their
   * payloads unread.
   */
  private refuse(session: MsgTransSession, authRequest: IncomingMessage | undefined, reason: string, queued: MsgTransPacket[]): void {
    if (authRequest) session.replyError(authRequest, REFUSED);
    for (const packet of queued) {
      if (session.closed) break;
      if (packet.packetType === PacketType.REQUEST) session.onPacket(packet);
    }
    this.refused(session, reason);
    session.close();
  }
}

/** The route of a request, from its header and extension header alone; undefined for anything else. */
function requestRoute(packet: MsgTransPacket): string | undefined {
  if (packet.packetType !== PacketType.REQUEST || packet.extHeader.length === 0) return undefined;
  try {
    return routeOnly(packet.extHeader) ?? decodeExtHeader(packet.extHeader).route;
  } catch {
    // a malformed extension header is the session's to reject, once the packet is handled
    return undefined;
  }
}

/**
 * The packet in a buffer of its own: a packet may be a view into a larger
 * read buffer, which holding the view would keep whole.
 */
function detached(packet: MsgTransPacket): MsgTransPacket {
  const ext = packet.extHeader;
  const bytes = Buffer.allocUnsafe(ext.length + packet.payload.length);
  ext.copy(bytes, 0);
  packet.payload.copy(bytes, ext.length);
  return { ...packet, extHeader: bytes.subarray(0, ext.length), payload: bytes.subarray(ext.length) };
}
