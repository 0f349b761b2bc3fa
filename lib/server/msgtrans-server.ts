import { Logger } from '@nestjs/common';
import { isObservable, tap } from 'rxjs';
import type { MessageHandler } from '@nestjs/microservices';
import { BaseRpcExceptionFilter, Server, type CustomTransportStrategy } from '@nestjs/microservices';
import { MSGTRANS_DEFAULTS, MSGTRANS_TRANSPORT, NO_MESSAGE_HANDLER } from '../constants.js';
import type { MsgTransPacket } from '../codec/packet.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import type { MsgTransError } from '../errors/msgtrans-error.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';
import {
  assertKnownOptions,
  flag,
  positiveInteger,
  resolveHealthChecks,
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
import { assertTlsOptions, parseEndpoint, type HttpServer } from '../transport/endpoint.js';
import { MsgTransSessions } from './msgtrans-sessions.js';
import { HEALTH_ROUTE, MsgTransHealth, type MsgTransHealthReply } from '../health/msgtrans-health.js';
import { MsgTransTelemetry, type IncomingCall } from '../otel/msgtrans-telemetry.js';
import type { SessionInstruments } from '../otel/session-instruments.js';
import { TrafficCounters, type MsgTransProtocolStats } from '../otel/traffic-counter.js';
import type { MsgTransTelemetryOptions } from '../otel/telemetry-options.interface.js';
import { DeadlineTracker, type TrackedRequest } from './deadline-tracker.js';
import { deadlinesInheritable, deadlineStorage, takeBudget } from '../deadline/call-deadline.js';
import { GatedSession } from './gated-session.js';
import { assertQuicClusterLayout } from './cluster-layout.js';
import { AUTH_ROUTE, SessionAuthenticator } from './session-authenticator.js';
import { EventListeners } from '../transport/event-listeners.js';
import type {
  MsgTransConnection,
  MsgTransListener,
  MsgTransListenerAddress,
} from '../transport/msgtrans-connection.interface.js';

/** Nest's wording for an event nobody handles (its constant is not exported). */
const NO_EVENT_HANDLER = 'There is no matching event handler defined in the remote service. Event pattern: ';

// Routes the handler lookup remembers, in entries and in characters; past
// either, lookups still work but are not cached. Only routes that found a
// handler are cached: peers can invent any number of the others.
const ROUTE_CACHE_LIMIT = 10_000;
const ROUTE_CACHE_CHARS = 1024 * 1024;

// Nest's own filter, for errors that never passed through one (hand-registered
// handlers, processing hooks): the peer gets what Nest would send, the log the rest.
const EXCEPTION_FILTER = new BaseRpcExceptionFilter();

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
  // endpoints attached to an application's HTTP server (hybrid apps), which may listen later
  private readonly attachedTo = new Map<MsgTransListener, HttpServer>();
  private readonly pendingAnnouncements: (() => void)[] = [];
  private readonly routeCache = new Map<string, MessageHandler>();
  private routeCacheChars = 0;
  private boundAddresses: MsgTransListenerAddress[] = [];
  private accepting = false;
  private draining = false;
  private readonly maxConnections: number;
  private readonly shutdownTimeout: number;
  private readonly authenticator: SessionAuthenticator | null;
  // sessions waiting for the authenticate hook: not yet in `sessions`
  private readonly held = new Set<MsgTransSession>();
  private readonly violationCounts = new Map<string, number>();
  private readonly deadlines = new DeadlineTracker();
  private readonly traffic = new TrafficCounters();
  private readonly telemetryOptions: MsgTransTelemetryOptions | undefined;
  // resolved when listening: null (the common case) means no SDK, and every hook is skipped
  private telemetry: MsgTransTelemetry | null = null;
  private readonly instrumentsOf = new Map<string, SessionInstruments>();
  private readonly health: MsgTransHealth;
  private readonly healthBeforeAuth: boolean;
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
    assertQuicClusterLayout(options);
    this.maxConnections = positiveInteger('maxConnections', options.maxConnections, MSGTRANS_DEFAULTS.maxConnections);
    this.listeners = this.createListeners(options);
    if (options.adapter) this.sessions.useAdapter(options.adapter, this.sessionOptions.codec);
    this.shutdownTimeout = positiveInteger('shutdownTimeout', options.shutdownTimeout, MSGTRANS_DEFAULTS.shutdownTimeout);
    const authTimeout = positiveInteger('authTimeout', options.authTimeout, MSGTRANS_DEFAULTS.authTimeout);
    const preAuthLimits = {
      maxMessages: positiveInteger('maxPreAuthMessages', options.maxPreAuthMessages, MSGTRANS_DEFAULTS.maxPreAuthMessages),
      maxBytes: positiveInteger('maxPreAuthBytes', options.maxPreAuthBytes, MSGTRANS_DEFAULTS.maxPreAuthBytes),
    };
    this.telemetryOptions = options.telemetry;
    this.health = new MsgTransHealth(resolveHealthChecks(options.healthChecks));
    this.healthBeforeAuth = flag('healthBeforeAuth', options.healthBeforeAuth, MSGTRANS_DEFAULTS.healthBeforeAuth);
    this.authenticator = options.authenticate
      ? new SessionAuthenticator(
          options.authenticate,
          authTimeout,
          preAuthLimits,
          (session, queued) => this.admit(session, queued),
          (session, reason) => this.countViolation(session, new MsgTransConnectionError(MsgTransErrorCode.AUTH_FAILED, reason)),
          this.healthBeforeAuth ? HEALTH_ROUTE : undefined,
        )
      : null;
  }

  /**
   * Binds every endpoint. If one fails, the others are released and
   * `callback` receives the error.
   */
  async listen(callback: (error?: unknown) => void): Promise<void> {
    try {
      await this.sessions.startAdapter();
      this.accepting = true;
      this.telemetry ??= MsgTransTelemetry.resolve(
        this.telemetryOptions,
        'server',
        (protocol) => this.boundAddresses.find((a) => a.protocol === protocol),
        this.traffic,
        () => Object.fromEntries(this.violationCounts),
      );
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
        await this.sessions.stopAdapter();
        this._status$.next(MsgTransStatus.DISCONNECTED);
        this.events.emit('error', failed.reason as Error, undefined);
        callback(failed.reason);
        return;
      }
      this.boundAddresses = results.map((r) => (r as PromiseFulfilledResult<MsgTransListenerAddress>).value);
      this.boundAddresses.forEach((address, i) => this.announce(this.listeners[i], address));
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
    for (const cancel of this.pendingAnnouncements.splice(0)) cancel();
    const deadline = Date.now() + this.shutdownTimeout;
    // bounded by shutdownTimeout; a poll keeps per-request bookkeeping off the hot path
    while (Date.now() < deadline && this.sessions.all().some((s) => s.activeRequests > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (const session of [...this.held, ...this.sessions.all()]) session.close();
    this.held.clear();
    this.deadlines.clear();
    this.telemetry?.dispose();
    this.telemetry = null;
    await Promise.all(this.listeners.map((l) => l.close()));
    await this.sessions.stopAdapter();
    this.draining = false;
    this._status$.next(MsgTransStatus.DISCONNECTED);
  }

  /**
   * What `msgtrans.health` answers for `service` (`''`: the whole server):
   * `NOT_SERVING` while the server drains on shutdown.
   */
  healthStatus(service = ''): Promise<MsgTransHealthReply> {
    return this.health.status(service, this.draining || !this.accepting);
  }

  /**
   * Open sessions, the limit and protocol violations seen so far by error
   * code, and per protocol: sessions open (accepted or waiting for
   * `authenticate`), packets and bytes in and out, and connections closed
   * with an error, by code. The same figures OpenTelemetry metrics report.
   */
  stats(): { sessions: number; violations: Record<string, number>; protocols: Record<string, MsgTransProtocolStats> } {
    return { sessions: this.sessions.size, violations: Object.fromEntries(this.violationCounts), protocols: this.traffic.snapshot() };
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
    this.routeCacheChars = 0;
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
    if (handler !== null && this.routeCache.size < ROUTE_CACHE_LIMIT && this.routeCacheChars + route.length <= ROUTE_CACHE_CHARS) {
      this.routeCache.set(route, handler);
      this.routeCacheChars += route.length;
    }
    return handler;
  }

  /** @internal session callback */
  onRequest(session: MsgTransSession, message: IncomingMessage): void {
    if (this.authenticator !== null && this.held.has(session)) {
      if (this.healthBeforeAuth && message.route === HEALTH_ROUTE) {
        this.health.answer(session, message, this.draining);
        return;
      }
      // only the credentials, health probes if allowed, and requests of a refused session get here while held
      this.authenticator.onHeldRequest(session, message);
      return;
    }
    if (message.route === AUTH_ROUTE) {
      // without a hook everyone is accepted, credentials or not
      if (this.authenticator === null) session.reply(message, { authenticated: true });
      else {
        // decoded here, where a bad payload closes the session, not inside the hook's promise (an unhandled rejection)
        void message.data;
        void this.authenticator.reauthenticate(session, message);
      }
      return;
    }
    if (message.route === HEALTH_ROUTE) {
      // reserved: answered here, never by a user handler; NOT_SERVING while draining
      this.health.answer(session, message, this.draining);
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
    const telemetry = this.telemetry;
    if (telemetry === null) {
      this.dispatch(handler, session, message, undefined);
      return;
    }
    // the handler runs under its SERVER span, a child of the caller's
    const call = telemetry.incoming(session.connection, message, false);
    call.run(this.dispatch, handler, session, message, call);
  }

  // bound fields: passed to context runners without a closure per request
  private readonly dispatch = (
    handler: MessageHandler,
    session: MsgTransSession,
    message: IncomingMessage,
    call: IncomingCall | undefined,
  ): void => {
    const budget = takeBudget(message);
    if (budget === undefined) {
      this.start(handler, session, message, new MsgTransContext([session, message]), undefined, call);
      return;
    }
    const tracked = this.deadlines.track(session, message, budget, Date.now());
    const context = new MsgTransContext([session, message, tracked.at]);
    if (!deadlinesInheritable()) {
      this.start(handler, session, message, context, tracked, call);
      return;
    }
    // calls the handler makes inherit what is left of the deadline
    deadlineStorage.run(tracked.at, this.start, handler, session, message, context, tracked, call);
  };

  private readonly start = (
    handler: MessageHandler,
    session: MsgTransSession,
    message: IncomingMessage,
    context: MsgTransContext,
    tracked: TrackedRequest | undefined,
    call: IncomingCall | undefined,
  ): void => {
    if (this.hooksUnset()) {
      void this.invoke(handler, session, message, context, tracked, call);
      return;
    }
    try {
      this.onProcessingStartHook(this.transportId, context, () => this.invoke(handler, session, message, context, tracked, call));
    } catch (err) {
      call?.fail(err);
      call?.end();
      this.replyFailure(session, message, err, tracked);
    }
  };

  /** @internal session callback */
  onEvent(session: MsgTransSession, message: IncomingMessage): void {
    const telemetry = this.telemetry;
    if (telemetry === null) {
      this.deliverEvent(session, message, undefined);
      return;
    }
    // the handler runs under its CONSUMER span, a child of the sender's
    const call = telemetry.incoming(session.connection, message, true);
    call.run(this.deliverEvent, session, message, call);
  }

  private readonly deliverEvent = (session: MsgTransSession, message: IncomingMessage, call: IncomingCall | undefined): void => {
    const context = new MsgTransContext([session, message]);
    if (!this.hooksUnset()) {
      this.handleEvent(message.route, { pattern: message.route, data: message.data }, context).then(
        () => call?.end(),
        (err) => {
          call?.fail(err);
          call?.end();
          this.logger.error(err);
        },
      );
      return;
    }
    // Same as Nest's handleEvent without the processing-hook plumbing nobody set:
    // several promises and closures less per event.
    const handler = this.getHandlerByPattern(message.route);
    if (!handler) {
      call?.end();
      this.logger.error(`${NO_EVENT_HANDLER}${message.route}`);
      return;
    }
    let result: unknown;
    try {
      result = handler(message.data, context);
    } catch (err) {
      call?.fail(err);
      call?.end();
      // a hand-registered handler's bug is that event's failure, not the connection's;
      // a payload that could not be decoded has closed the session, which reports it
      if (!session.closed) this.logger.error(err);
      return;
    }
    // Nest's handlers return promises (resolve() passes those through); a hand-registered one may not
    if (call === undefined) {
      Promise.resolve(result).then(this.onEventResult, this.logError);
      return;
    }
    Promise.resolve(result).then(
      (value) => {
        call.end();
        this.onEventResult(value);
      },
      (err) => {
        call.fail(err);
        call.end();
        this.logError(err);
      },
    );
  };

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

  /**
   * @internal session callback: a reply could not be sent as produced (a
   * value or error the codec cannot encode); the peer got an ERROR instead.
   */
  onReplyFailure(session: MsgTransSession, message: IncomingMessage, error: Error): void {
    this.logger.error(`Reply to "${message.route}" (session ${session.id}) could not be sent as produced: ${error.message}`);
  }

  /** @internal session callback */
  onClose(session: MsgTransSession, error: Error | undefined): void {
    const traffic = session.instruments?.traffic;
    if (traffic) {
      traffic.sessions--;
      const code = (error as Partial<MsgTransError> | undefined)?.code;
      if (typeof code === 'string') traffic.countError(code);
    }
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
    tracked: TrackedRequest | undefined,
    call: IncomingCall | undefined,
  ): Promise<void> {
    // the end hook is optional (unset unless instrumentation sets one): skip its closure when absent
    const end = (this.onProcessingEndHook as unknown) ? this.createProcessingEndHookRunner(context) : undefined;
    const done = tracked === undefined && call === undefined ? end : this.untrack(tracked, call, end);
    const fail = (err: unknown) => {
      call?.fail(err);
      done?.();
      this.replyFailure(session, message, err, tracked);
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
      if (tracked?.expired) {
        // the deadline passed first: the caller has given up, no reply
        done?.();
        return;
      }
      try {
        session.reply(message, tracked === undefined && call === undefined ? value : this.watching(value, tracked, call), done);
      } catch (err) {
        fail(err);
      }
    }, fail);
  }

  /** What runs once a watched reply has ended: the deadline is no longer watched, the span ends. */
  private untrack(tracked: TrackedRequest | undefined, call: IncomingCall | undefined, end: (() => void) | undefined): () => void {
    return () => {
      if (tracked !== undefined) this.deadlines.release(tracked);
      call?.end();
      end?.();
    };
  }

  /**
   * A streamed reply under a deadline or a span: each value grants the next
   * one the caller's whole budget again; an error marks the span failed.
   */
  private watching(value: unknown, tracked: TrackedRequest | undefined, call: IncomingCall | undefined): unknown {
    if (!isObservable(value)) return value;
    return value.pipe(
      tap({
        next: tracked === undefined ? undefined : () => this.deadlines.refresh(tracked),
        error: call?.onError,
      }),
    );
  }

  /**
   * Answers a request whose handler failed outside Nest's exception filters
   * the way those filters would: an RpcException's error as is, anything
   * else logged and sent as "Internal server error", so no internals leak.
   */
  private replyFailure(session: MsgTransSession, message: IncomingMessage, err: unknown, tracked?: TrackedRequest): void {
    // past its deadline a request gets no reply, not even an error
    if (session.closed || tracked?.expired) return;
    // never throws: it runs in promise callbacks, where a throw would be an unhandled rejection
    try {
      // the filter's Observable errors synchronously
      EXCEPTION_FILTER.catch(err, undefined as never).subscribe({ error: (filtered: unknown) => session.replyError(message, filtered) });
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
    if (this.authenticator === null) {
      const session = new MsgTransSession(connection, this.sessionOptions, this);
      this.instrument(session);
      // a connection may die before open() returns; then onClose has already run
      if (!session.closed) this.admit(session, []);
      return;
    }
    const session = new GatedSession(connection, this.sessionOptions, this);
    this.instrument(session);
    if (session.closed) return;
    this.held.add(session);
    this.authenticator.begin(session);
  }

  /** Counts a new session's traffic under its protocol, and gives it the telemetry. */
  private instrument(session: MsgTransSession): void {
    if (session.closed) return;
    const protocol = session.protocol;
    let shared = this.instrumentsOf.get(protocol);
    // one object per protocol, shared by its sessions: nothing per connection
    if (shared === undefined || shared.telemetry !== this.telemetry) {
      shared = { traffic: this.traffic.of(protocol), telemetry: this.telemetry };
      this.instrumentsOf.set(protocol, shared);
    }
    shared.traffic.sessions++;
    session.instruments = shared;
  }

  /**
   * A session that may talk to handlers: announced, then the packets it sent
   * while held handled in order (decoded only now).
   */
  private admit(session: MsgTransSession, queued: MsgTransPacket[]): void {
    this.held.delete(session);
    this.sessions.add(session);
    this.events.emit('connect', session);
    for (const packet of queued) {
      if (session.closed) return;
      session.onPacket(packet);
    }
  }

  /**
   * Logs the address an endpoint serves. One attached to an HTTP server that
   * does not listen yet (a hybrid app starts its microservices first) has no
   * port until it does: logged then, after the listener has filled in the
   * address (its own 'listening' handler was registered before this one).
   */
  private announce(listener: MsgTransListener, address: MsgTransListenerAddress): void {
    const httpServer = this.attachedTo.get(listener);
    if (httpServer === undefined || httpServer.listening) {
      this.logger.log(`Listening on ${address.url}`);
      return;
    }
    const onListening = () => this.logger.log(`Listening on ${address.url}`);
    httpServer.once('listening', onListening);
    this.pendingAnnouncements.push(() => httpServer.off('listening', onListening));
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
      const listener = protocol.createListener(endpoint, {
        limits: this.sessionOptions.limits,
        tls,
        heartbeatInterval,
        maxConnections: this.maxConnections,
      });
      if (endpoint.httpServer) this.attachedTo.set(listener, endpoint.httpServer);
      return listener;
    });
  }
}
