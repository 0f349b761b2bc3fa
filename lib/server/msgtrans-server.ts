import { Logger } from '@nestjs/common';
import { isObservable } from 'rxjs';
import type { MessageHandler } from '@nestjs/microservices';
import { Server, type CustomTransportStrategy } from '@nestjs/microservices';
import { MSGTRANS_DEFAULTS, MSGTRANS_TRANSPORT, NO_MESSAGE_HANDLER } from '../constants.js';
import { PacketType } from '../codec/packet.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import type { MsgTransError } from '../errors/msgtrans-error.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';
import {
  assertKnownOptions,
  positiveInteger,
  protocolFor,
  protocolTable,
  resolveHeartbeat,
  resolveSessionOptions,
} from '../common/resolve-options.js';
import { MsgTransContext } from '../ctx-host/msgtrans-context.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import { MsgTransProtocolError } from '../errors/msgtrans-protocol-error.js';
import {
  MsgTransStatus,
  type MsgTransServerEvents,
} from '../interfaces/msgtrans-events.interface.js';
import type { MsgTransListenInput, MsgTransServerOptions } from '../interfaces/msgtrans-options.interface.js';
import type { IncomingMessage } from '../session/incoming-message.interface.js';
import {
  MsgTransSession,
  type MsgTransSessionHandler,
  type MsgTransSessionOptions,
} from '../session/msgtrans-session.js';
import { assertTlsOptions, parseEndpoint } from '../transport/endpoint.js';
import { MsgTransSessions } from './msgtrans-sessions.js';
import { AUTH_ROUTE, SessionAuthenticator } from './session-authenticator.js';
import { EventListeners } from '../transport/event-listeners.js';
import type {
  MsgTransConnection,
  MsgTransListener,
  MsgTransListenerAddress,
} from '../transport/msgtrans-connection.interface.js';

/** Nest's wording for an event nobody handles (its constant is not exported). */
const NO_EVENT_HANDLER = 'There is no matching event handler defined in the remote service. Event pattern: ';

// Distinct routes remembered by the handler lookup; past this, lookups still
// work but are not cached, so a peer sending random routes cannot grow memory.
const ROUTE_CACHE_LIMIT = 10_000;

/** Errors that mean the peer misbehaved (as opposed to going away). */
function isViolation(error: Error | undefined): error is MsgTransError {
  return error instanceof MsgTransProtocolError || error instanceof MsgTransLimitError;
}

function isListener(input: MsgTransListenInput): input is MsgTransListener {
  return typeof input === 'object' && typeof (input as MsgTransListener).listen === 'function';
}

/**
 * Nest microservice strategy serving `@MessagePattern` / `@EventPattern`
 * handlers over msgtrans on every endpoint in `listen`.
 *
 * ```ts
 * NestFactory.createMicroservice(AppModule, {
 *   strategy: new MsgTransServer({ listen: ['tcp://0.0.0.0:8001'] }),
 * });
 * ```
 */
export class MsgTransServer
  extends Server<MsgTransServerEvents, MsgTransStatus>
  implements CustomTransportStrategy, MsgTransSessionHandler
{
  override transportId = MSGTRANS_TRANSPORT;
  protected override readonly logger = new Logger(MsgTransServer.name);
  private readonly sessionOptions: MsgTransSessionOptions;
  private readonly listeners: MsgTransListener[];
  /** Open sessions, rooms and server push. */
  readonly sessions = new MsgTransSessions();
  private readonly events = new EventListeners<MsgTransServerEvents>();
  private readonly routeCache = new Map<string, MessageHandler | null>();
  private boundAddresses: MsgTransListenerAddress[] = [];
  private accepting = false;
  private draining = false;
  private readonly maxConnections: number;
  private readonly shutdownTimeout: number;
  private readonly authenticator: SessionAuthenticator | null;
  // sessions waiting for the authenticate hook: not yet in `sessions`
  private readonly held = new Set<MsgTransSession>();
  private readonly violationCounts = new Map<string, number>();
  // Nest's own no-op start hook, to tell when instrumentation replaced it
  private readonly defaultStartHook = this.onProcessingStartHook;

  constructor(options: MsgTransServerOptions) {
    super();
    assertKnownOptions(options, 'server');
    assertTlsOptions(options.tls, 'server');
    this.sessionOptions = resolveSessionOptions(
      options,
      positiveInteger('requestTimeout', options.requestTimeout, MSGTRANS_DEFAULTS.requestTimeout),
    );
    this.listeners = this.createListeners(options);
    this.maxConnections = positiveInteger('maxConnections', options.maxConnections, MSGTRANS_DEFAULTS.maxConnections);
    this.shutdownTimeout = positiveInteger('shutdownTimeout', options.shutdownTimeout, MSGTRANS_DEFAULTS.shutdownTimeout);
    this.authenticator = options.authenticate
      ? new SessionAuthenticator(
          options.authenticate,
          positiveInteger('authTimeout', options.authTimeout, MSGTRANS_DEFAULTS.authTimeout),
          (session, queued) => this.admit(session, queued),
          (session, reason) => this.countViolation(session, new MsgTransConnectionError(MsgTransErrorCode.AUTH_FAILED, reason)),
        )
      : null;
  }

  /**
   * Binds every endpoint. If one fails, the others are released and
   * `callback` receives the error.
   */
  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      this.accepting = true;
      const onConnection = (connection: MsgTransConnection) => this.accept(connection);
      const onError = (error: Error) => {
        this.logger.error(`Listener error: ${error.message}`);
        this.events.emit('error', error, undefined);
      };
      const results = await Promise.allSettled(this.listeners.map((l) => l.listen(onConnection, onError)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        this.accepting = false;
        await Promise.all(this.listeners.map((l) => l.close().catch(() => undefined)));
        this._status$.next(MsgTransStatus.DISCONNECTED);
        this.events.emit('error', failed.reason as Error, undefined);
        callback(failed.reason);
        return;
      }
      this.boundAddresses = results.map((r) => (r as PromiseFulfilledResult<MsgTransListenerAddress>).value);
      for (const address of this.boundAddresses) this.logger.log(`Listening on ${address.url}`);
      this._status$.next(MsgTransStatus.CONNECTED);
      this.events.emit('listening', this.boundAddresses);
      callback();
    } catch (err) {
      callback(err);
    }
  }

  /**
   * Stops accepting, lets requests in flight finish (up to `shutdownTimeout`;
   * new requests meanwhile get an `ERR_MSGTRANS_SHUTTING_DOWN` error), then
   * closes every session, leaving no socket or timer behind.
   */
  async close(): Promise<void> {
    // New connections are refused from here on (accept() checks); listeners
    // close last because closing a QUIC server ends its connections at once.
    this.accepting = false;
    this.draining = true;
    const deadline = Date.now() + this.shutdownTimeout;
    // bounded by shutdownTimeout; a poll keeps per-request bookkeeping off the hot path
    while (Date.now() < deadline && this.sessions.all().some((s) => s.activeRequests > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (const session of [...this.held, ...this.sessions.all()]) session.close();
    this.held.clear();
    await Promise.all(this.listeners.map((l) => l.close()));
    this.draining = false;
    this._status$.next(MsgTransStatus.DISCONNECTED);
  }

  /** Open sessions and the limit and protocol violations seen so far, by error code. */
  stats(): { sessions: number; violations: Record<string, number> } {
    return { sessions: this.sessions.size, violations: Object.fromEntries(this.violationCounts) };
  }

  /** The bound address of every endpoint (port 0 resolved), once listening. */
  addresses(): MsgTransListenerAddress[] {
    return [...this.boundAddresses];
  }

  /** Sessions currently open, by id. */
  getSessions(): ReadonlyMap<string, MsgTransSession> {
    return new Map(this.sessions.all().map((s) => [s.id, s]));
  }

  on<K extends keyof MsgTransServerEvents>(event: K, callback: MsgTransServerEvents[K]): void {
    this.events.on(event, callback);
  }

  /** The listeners (one per endpoint); each one's `unwrap()` gives the raw server. */
  unwrap<T = MsgTransListener[]>(): T {
    return this.listeners as T;
  }

  override addHandler(pattern: any, callback: MessageHandler, isEventHandler?: boolean, extras?: Record<string, any>): void {
    super.addHandler(pattern, callback, isEventHandler, extras);
    this.routeCache.clear();
  }

  /**
   * Nest's lookup runs JSON.parse in a try/catch on every message; a direct
   * map hit needs none of that, and the fallback (object patterns from peers
   * that order keys differently) runs once per distinct route.
   */
  override getHandlerByPattern(route: string): MessageHandler | null {
    const cached = this.routeCache.get(route);
    if (cached !== undefined) return cached;
    const handler = this.messageHandlers.get(route) ?? super.getHandlerByPattern(route);
    if (this.routeCache.size < ROUTE_CACHE_LIMIT) this.routeCache.set(route, handler);
    return handler;
  }

  /** @internal session callback */
  onRequest(session: MsgTransSession, message: IncomingMessage): void {
    if (this.authenticator) {
      if (this.authenticator.intercept(session, message)) return;
    } else if (message.route === AUTH_ROUTE) {
      // without a hook everyone is accepted, credentials or not
      session.reply(message, { authenticated: true });
      return;
    }
    if (this.draining) {
      session.replyError(message, { status: 'error', message: 'Server is shutting down', code: MsgTransErrorCode.SHUTTING_DOWN });
      return;
    }
    const handler = this.getHandlerByPattern(message.route);
    if (!handler) {
      session.replyError(message, NO_MESSAGE_HANDLER);
      return;
    }
    const context = new MsgTransContext([session, message]);
    if (this.hooksUnset()) {
      void this.invoke(handler, session, message, context);
      return;
    }
    try {
      this.onProcessingStartHook(this.transportId, context, () => this.invoke(handler, session, message, context));
    } catch (err) {
      session.replyError(message, err);
    }
  }

  /** @internal session callback */
  onEvent(session: MsgTransSession, message: IncomingMessage): void {
    if (this.authenticator?.intercept(session, message)) return;
    const context = new MsgTransContext([session, message]);
    if (!this.hooksUnset()) {
      this.handleEvent(message.route, { pattern: message.route, data: message.data }, context).catch((err) =>
        this.logger.error(err),
      );
      return;
    }
    // Same as Nest's handleEvent without the processing-hook plumbing nobody set:
    // several promises and closures less per event.
    const handler = this.getHandlerByPattern(message.route);
    if (!handler) {
      this.logger.error(`${NO_EVENT_HANDLER}${message.route}`);
      return;
    }
    handler(message.data, context).then(this.onEventResult, this.logError);
  }

  // shared by every event: no closures per message
  private readonly logError = (err: unknown): void => this.logger.error(err);
  private readonly onEventResult = (result: unknown): void => {
    // an Observable result runs even though nobody waits for it, as in Nest
    if (isObservable(result)) result.subscribe({ error: this.logError });
  };

  /** True while no instrumentation has set processing hooks, so requests can skip them. */
  private hooksUnset(): boolean {
    return this.onProcessingStartHook === this.defaultStartHook && !(this.onProcessingEndHook as unknown);
  }

  /** @internal session callback: a reply went out as an ERROR because what the handler produced could not be sent */
  onReplyFailure(session: MsgTransSession, message: IncomingMessage, error: MsgTransError): void {
    this.logger.error(`Reply to "${message.route}" on session ${session.id} sent as an error: [${error.code}] ${error.message}`);
  }

  /** @internal session callback */
  onClose(session: MsgTransSession, error: Error | undefined): void {
    this.authenticator?.forget(session);
    if (this.held.delete(session)) {
      if (isViolation(error)) this.countViolation(session, error);
      return;
    }
    this.sessions.remove(session, error);
    if (isViolation(error)) this.countViolation(session, error);
    this.events.emit('disconnect', session, error);
  }

  /**
   * Calls the handler and answers with what it produces. Not an async
   * function: on the hot path (no processing hooks) a request costs the
   * handler's own promise and nothing more.
   */
  private invoke(
    handler: MessageHandler,
    session: MsgTransSession,
    message: IncomingMessage,
    context: MsgTransContext,
  ): Promise<void> {
    // the end hook is optional (unset unless instrumentation sets one): skip its closure when absent
    const end = (this.onProcessingEndHook as unknown) ? this.createProcessingEndHookRunner(context) : undefined;
    const fail = (err: unknown) => {
      end?.();
      this.replyFailure(session, message, err);
    };
    let result: unknown;
    try {
      result = handler(message.data, context);
    } catch (err) {
      fail(err);
      return Promise.resolve();
    }
    // Nest's handlers return promises (resolve() passes those through); a hand-registered one may not
    return Promise.resolve(result).then((value) => {
      try {
        session.reply(message, value, end);
      } catch (err) {
        fail(err);
      }
    }, fail);
  }

  private replyFailure(session: MsgTransSession, message: IncomingMessage, err: unknown): void {
    if (session.closed) return;
    try {
      session.replyError(message, err);
    } catch (unsendable) {
      this.logger.error(unsendable);
    }
  }

  private accept(connection: MsgTransConnection): void {
    if (!this.accepting) {
      connection.close();
      return;
    }
    if (this.sessions.size + this.held.size >= this.maxConnections) {
      const error = new MsgTransLimitError(
        MsgTransErrorCode.TOO_MANY_CONNECTIONS,
        `Refused a ${connection.protocol} connection from ${connection.remoteAddress}: ${this.maxConnections} sessions already open`,
      );
      this.countViolation(undefined, error);
      connection.close(error);
      return;
    }
    const session = new MsgTransSession(connection, this.sessionOptions, this);
    // a connection may die before open() returns; then onClose has already run
    if (session.closed) return;
    if (this.authenticator) {
      this.held.add(session);
      this.authenticator.begin(session);
      return;
    }
    this.admit(session, []);
  }

  /** A session that may talk to handlers: announced, then its held messages dispatched. */
  private admit(session: MsgTransSession, queued: IncomingMessage[]): void {
    this.held.delete(session);
    this.sessions.add(session);
    this.events.emit('connect', session);
    for (const message of queued) {
      if (session.closed) return;
      try {
        if (message.packetType === PacketType.REQUEST) this.onRequest(session, message);
        else this.onEvent(session, message);
      } catch (err) {
        // data is decoded on first read: a bad payload held since before authentication closes this session only
        session.close(err as Error);
      }
    }
  }

  /** Logs a violation through Nest's logger, counts it by code and emits `error`. */
  private countViolation(session: MsgTransSession | undefined, error: MsgTransError): void {
    this.violationCounts.set(error.code, (this.violationCounts.get(error.code) ?? 0) + 1);
    const where = session ? `session ${session.id} (${session.protocol} ${session.connection.remoteAddress ?? ''})` : 'connection';
    this.logger.warn(`Closed ${where}: [${error.code}] ${error.message}`);
    this.events.emit('error', error, session);
  }

  private createListeners(options: MsgTransServerOptions): MsgTransListener[] {
    const inputs = Array.isArray(options.listen) ? options.listen : [options.listen];
    if (inputs.length === 0 || inputs[0] === undefined) {
      throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, 'listen needs at least one endpoint');
    }
    const protocols = protocolTable(options.protocols);
    const heartbeatInterval = resolveHeartbeat(options);
    return inputs.map((input) => {
      if (isListener(input)) return input;
      const endpoint = parseEndpoint(input);
      const protocol = protocolFor(protocols, endpoint.protocol);
      const tls = endpoint.tls ?? options.tls;
      return protocol.createListener(endpoint, { limits: this.sessionOptions.limits, tls, heartbeatInterval });
    });
  }
}
