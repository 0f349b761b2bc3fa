import { Logger } from '@nestjs/common';
import type { MessageHandler } from '@nestjs/microservices';
import { Server, type CustomTransportStrategy } from '@nestjs/microservices';
import { MSGTRANS_TRANSPORT, NO_MESSAGE_HANDLER } from '../constants.js';
import {
  assertKnownOptions,
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
import { parseEndpoint } from '../transport/endpoint.js';
import { MsgTransSessions } from './msgtrans-sessions.js';
import { EventListeners } from '../transport/event-listeners.js';
import type {
  MsgTransConnection,
  MsgTransListener,
  MsgTransListenerAddress,
} from '../transport/msgtrans-connection.interface.js';

// Distinct routes remembered by the handler lookup; past this, lookups still
// work but are not cached, so a peer sending random routes cannot grow memory.
const ROUTE_CACHE_LIMIT = 10_000;

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

  constructor(private readonly options: MsgTransServerOptions) {
    super();
    assertKnownOptions(options, 'server');
    this.sessionOptions = resolveSessionOptions(options);
    this.listeners = this.createListeners(options);
  }

  /**
   * Binds every endpoint. If one fails, the others are released and
   * `callback` receives the error.
   */
  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      this.accepting = true;
      const onConnection = (connection: MsgTransConnection) => this.accept(connection);
      const results = await Promise.allSettled(this.listeners.map((l) => l.listen(onConnection)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) {
        this.accepting = false;
        await Promise.all(this.listeners.map((l) => l.close().catch(() => undefined)));
        this._status$.next(MsgTransStatus.DISCONNECTED);
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

  /** Stops accepting, closes every session and leaves no socket or timer behind. */
  async close(): Promise<void> {
    this.accepting = false;
    await Promise.all(this.listeners.map((l) => l.close()));
    for (const session of this.sessions.all()) session.close();
    this._status$.next(MsgTransStatus.DISCONNECTED);
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
    const handler = this.getHandlerByPattern(message.route);
    if (!handler) {
      session.replyError(message, NO_MESSAGE_HANDLER);
      return;
    }
    const context = new MsgTransContext([session, message]);
    try {
      this.onProcessingStartHook(this.transportId, context, () => this.invoke(handler, session, message, context));
    } catch (err) {
      session.replyError(message, err);
    }
  }

  /** @internal session callback */
  onEvent(session: MsgTransSession, message: IncomingMessage): void {
    const context = new MsgTransContext([session, message]);
    this.handleEvent(message.route, { pattern: message.route, data: message.data }, context).catch((err) =>
      this.logger.error(err),
    );
  }

  /** @internal session callback */
  onClose(session: MsgTransSession, error: Error | undefined): void {
    this.sessions.remove(session, error);
    if (error instanceof MsgTransProtocolError) {
      const peer = session.connection.remoteAddress ?? session.protocol;
      this.logger.warn(`Closed session ${session.id} (${session.protocol} ${peer}): [${error.code}] ${error.message}`);
      this.events.emit('error', error, session);
    }
    this.events.emit('disconnect', session, error);
  }

  private async invoke(
    handler: MessageHandler,
    session: MsgTransSession,
    message: IncomingMessage,
    context: MsgTransContext,
  ): Promise<void> {
    // the end hook is optional (unset unless instrumentation sets one): skip its closure when absent
    const end = (this.onProcessingEndHook as unknown) ? this.createProcessingEndHookRunner(context) : undefined;
    try {
      session.reply(message, await handler(message.data, context), end);
    } catch (err) {
      end?.();
      if (session.closed) return;
      try {
        session.replyError(message, err);
      } catch (unsendable) {
        this.logger.error(unsendable);
      }
    }
  }

  private accept(connection: MsgTransConnection): void {
    if (!this.accepting) {
      connection.close();
      return;
    }
    const session = new MsgTransSession(connection, this.sessionOptions, this);
    // a connection may die before open() returns; then onClose has already run
    if (session.closed) return;
    this.sessions.add(session);
    this.events.emit('connect', session);
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
