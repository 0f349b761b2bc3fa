import { Logger } from '@nestjs/common';
import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { InvalidMessageException } from '@nestjs/microservices/errors/invalid-message.exception.js';
import { connectable, filter, firstValueFrom, isObservable, map, Observable, of, Subject, tap, throwError } from 'rxjs';
import { MSGTRANS_DEFAULTS, NO_MESSAGE_HANDLER } from '../constants.js';
import {
  assertKnownOptions,
  flag,
  oneOf,
  positiveInteger,
  protocolFor,
  protocolTable,
  resolveHeartbeat,
  resolveReconnect,
  resolveSessionOptions,
} from '../common/resolve-options.js';
import { dispatchRoute, toWireRoute } from '../envelope/route.js';
import { requestObservable } from '../session/request-observable.js';
import { AUTH_ROUTE } from '../server/session-authenticator.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import { MsgTransTimeoutError } from '../errors/msgtrans-timeout-error.js';
import {
  MsgTransConnectionState,
  MsgTransStatus,
  type MsgTransClientEvents,
} from '../interfaces/msgtrans-events.interface.js';
import type { MsgTransClientOptions } from '../interfaces/msgtrans-options.interface.js';
import type { IncomingMessage } from '../session/incoming-message.interface.js';
import {
  MsgTransSession,
  type MsgTransSessionHandler,
  type MsgTransSessionOptions,
  type ReplyObserver,
} from '../session/msgtrans-session.js';
import { assertTlsOptions, parseEndpoint, type MsgTransEndpoint } from '../transport/endpoint.js';
import { EventListeners } from '../transport/event-listeners.js';
import type { MsgTransConnectContext, MsgTransProtocol } from '../transport/msgtrans-protocol.interface.js';
import type { ConnectionPolicy } from './connection-state-machine.js';
import type { Replica } from './replica.js';
import { dnsTargetProtocol, isDnsEndpoint, ReplicaPool, replicaTls } from './replica-pool.js';
import { MsgTransRecord } from './msgtrans-record.js';
import { currentDeadline, enableDeadlineInheritance, TIMEOUT_METADATA_KEY } from '../deadline/call-deadline.js';
import { MsgTransTelemetry, type IncomingCall } from '../otel/msgtrans-telemetry.js';
import { TrafficCounters, type MsgTransProtocolStats } from '../otel/traffic-counter.js';

/** Answers one request pushed by the server: a value, a Promise or an Observable. */
export type MsgTransClientRequestHandler = (data: any, message: IncomingMessage) => unknown;

// emit() has already sent by the time anyone subscribes; this is what they see.
const EMITTED = of(undefined);

function isNil(value: unknown): value is null | undefined {
  return value === null || value === undefined;
}

/** What an error reply says, for a message: its `message`, else the reply itself. */
function replyReason(reply: unknown): string {
  const message = (reply as { message?: unknown } | null)?.message;
  if (typeof message === 'string' && message !== '') return message;
  try {
    return JSON.stringify(reply) ?? String(reply);
  } catch {
    return String(reply);
  }
}

/** The wire routes of `idempotentPatterns`, checked. */
function idempotentRoutes(patterns: unknown[] | undefined): string[] {
  if (patterns === undefined) return [];
  if (!Array.isArray(patterns)) throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, 'idempotentPatterns must be an array of patterns');
  return patterns.map((pattern) => dispatchRoute(pattern));
}

function payloadOf(data: unknown): unknown {
  return data instanceof MsgTransRecord ? data.data : data;
}

/** What one call sends: the packet after the dispatch hook, and its own timeout. */
interface OutgoingCall {
  packet: ReadPacket;
  timeout: number;
  /** True when the call has its own timeout (a {@link MsgTransRecord} option). */
  ownTimeout: boolean;
}

/**
 * Nest `ClientProxy` speaking msgtrans. Use it directly, or through
 * `ClientsModule.register([{ name, customClass: MsgTransClient, options }])`.
 *
 * Many requests share one connection, matched by message id. The connection
 * is made on first use (or by `connect()`, or when something subscribes to
 * pushes); when it drops, pending requests fail at once with a
 * {@link MsgTransConnectionError} and the client reconnects with backoff.
 * Its life is the state machine in `state` (see {@link MsgTransConnectionState}).
 *
 * With several `url`s (or a `dns://` name), the client keeps one such
 * connection per replica and sends each call and event to one connected
 * replica (`loadBalancing`); `state` is the most hopeful of theirs, so the
 * client is connected while any replica is (see `replicas()`).
 */
export class MsgTransClient
  extends ClientProxy<MsgTransClientEvents, string>
  implements MsgTransSessionHandler
{
  protected readonly logger = new Logger(MsgTransClient.name);
  private readonly protocols = new Map<string, MsgTransProtocol>();
  private readonly sessionOptions: MsgTransSessionOptions;
  private readonly connectContext: MsgTransConnectContext;
  private readonly events = new EventListeners<MsgTransClientEvents>();
  private readonly pushed = new Subject<IncomingMessage>();
  private readonly answerers = new Map<string, MsgTransClientRequestHandler>();
  private readonly keepConnected: boolean;
  private readonly connection: ReplicaPool;
  // routes whose calls may be sent again to another replica after their connection dropped
  private readonly idempotent: Set<string>;
  // Replies pass through serializeResponse/serializeError only when a subclass overrides them.
  private readonly serializesReplies: boolean;
  private readonly traffic = new TrafficCounters();
  // null (the common case) means no SDK: every hook is skipped. Checked again on each connection.
  private telemetry: MsgTransTelemetry | null = null;
  private readonly telemetryAddress: { host: string; port: number };

  constructor(protected readonly options: MsgTransClientOptions) {
    super();
    assertKnownOptions(options, 'client');
    assertTlsOptions(options.tls, 'client');
    const urls = Array.isArray(options.url) ? options.url : [options.url];
    if (urls.length === 0) throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, 'url needs at least one endpoint');
    const endpoints = urls.map((url) => parseEndpoint(url));
    const table = protocolTable(options.protocols);
    for (const endpoint of endpoints) {
      const scheme = isDnsEndpoint(endpoint) ? dnsTargetProtocol(endpoint) : endpoint.protocol;
      this.protocols.set(scheme, protocolFor(table, scheme));
    }
    this.sessionOptions = resolveSessionOptions(options, options.requestTimeout ?? MSGTRANS_DEFAULTS.requestTimeout);
    this.connectContext = {
      limits: this.sessionOptions.limits,
      tls: options.tls,
      connectTimeout: positiveInteger('connectTimeout', options.connectTimeout, MSGTRANS_DEFAULTS.connectTimeout),
      heartbeatInterval: resolveHeartbeat(options),
    };
    this.keepConnected = flag('keepConnected', options.keepConnected, MSGTRANS_DEFAULTS.keepConnected);
    const policy: ConnectionPolicy = {
      reconnect: resolveReconnect(options.reconnect),
      whileDisconnected: oneOf('whileDisconnected', options.whileDisconnected, ['auto', 'wait', 'fail'], MSGTRANS_DEFAULTS.whileDisconnected),
      maxQueuedCalls: positiveInteger('maxQueuedCalls', options.maxQueuedCalls, MSGTRANS_DEFAULTS.maxQueuedCalls),
    };
    this.connection = new ReplicaPool(endpoints, this.replicaHost(), policy, {
      loadBalancing: oneOf('loadBalancing', options.loadBalancing, ['round-robin', 'least-pending'], MSGTRANS_DEFAULTS.loadBalancing),
      retryOnConnectFailure: flag('retryOnConnectFailure', options.retryOnConnectFailure, MSGTRANS_DEFAULTS.retryOnConnectFailure),
      dnsRefreshInterval: positiveInteger('dnsRefreshInterval', options.dnsRefreshInterval, MSGTRANS_DEFAULTS.dnsRefreshInterval),
    });
    this.idempotent = new Set(idempotentRoutes(options.idempotentPatterns));
    // spans name the first replica's address: the one a single-URL client talks to
    this.telemetryAddress = { host: endpoints[0].host, port: endpoints[0].port };
    this.telemetry = this.resolveTelemetry();
    // calls made by handlers can inherit deadlines from now on
    enableDeadlineInheritance();
    this.serializesReplies =
      this.serializeResponse !== ClientProxy.prototype['serializeResponse'] ||
      this.serializeError !== ClientProxy.prototype['serializeError'];
  }

  /**
   * This client's figures: the session open (0 or 1) and, for its protocol,
   * packets and bytes in and out and connections lost with an error, by
   * code. The same figures OpenTelemetry metrics report.
   */
  stats(): { sessions: number; protocols: Record<string, MsgTransProtocolStats> } {
    return { sessions: this.connection.connected ? 1 : 0, protocols: this.traffic.snapshot() };
  }

  /** Where the connection is: idle, connecting, authenticating, connected, reconnecting or closed. */
  get state(): MsgTransConnectionState {
    return this.connection.state;
  }

  /** Every replica the client knows (addresses found so far for `dns://` URLs) and the state of its connection. */
  replicas(): { url: string; state: MsgTransConnectionState }[] {
    return this.connection.members.map((replica) => ({ url: replica.name, state: replica.connection.state }));
  }

  /**
   * Connects and resolves with the session; concurrent callers share the
   * attempt. Rejects as a call would (see `whileDisconnected`): with the
   * cause of a failed attempt, `ERR_MSGTRANS_AUTH_FAILED` when the server
   * refused the credentials, `ERR_MSGTRANS_CLIENT_CLOSED` after `close()`.
   */
  connect(): Promise<MsgTransSession> {
    const live = this.connection.connected;
    if (live) return Promise.resolve(live);
    return new Promise((resolve, reject) => this.connection.acquire(0, resolve, reject));
  }

  /**
   * Closes the connection, or ends the attempt under way; pending and
   * waiting requests fail with `ERR_MSGTRANS_CLIENT_CLOSED`. A later call
   * connects again.
   */
  close(): void {
    this.connection.close();
  }

  /**
   * Sends a request; the Observable is cold (nothing is sent until it is
   * subscribed) and emits the reply's values. Unsubscribing early sends
   * CANCEL so the server stops producing. `data` may be a
   * {@link MsgTransRecord} carrying metadata and a timeout for this call.
   */
  override send<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    if (isNil(pattern) || isNil(payloadOf(data))) return throwError(() => new InvalidMessageException());
    return new Observable<TResult>((subscriber) => {
      const call = this.outgoing(pattern, data);
      let observer = this.replyObserver(subscriber);
      const live = this.idempotent.size === 0 ? this.connection.connected : null;
      if (live !== null) {
        // the common case, connected: none of the waiting and retrying below, so fewer closures per call
        const sent = this.request(live, call, this.replyTimeout(call, 0), observer);
        return sent === 0 ? undefined : () => live.cancel(sent);
      }
      let session: MsgTransSession | null = null;
      let id = 0;
      // true once acquire() returned: a session handed over after that waited for the connection
      let waited = false;
      const startedAt = Date.now();
      const start = (avoid: MsgTransSession | undefined) =>
        this.connection.acquire(
          call.timeout,
          (s) => {
            if (subscriber.closed) return;
            session = s;
            id = this.request(s, call, this.replyTimeout(call, waited ? startedAt : 0), observer);
          },
          (err) => observer.error(err),
          avoid,
        );
      if (this.idempotent.size > 0 && this.idempotent.has(dispatchRoute(call.packet.pattern))) {
        observer = this.retryOnDrop(observer, () => {
          id = 0;
          waited = true;
          withdraw = start(session ?? undefined);
        });
      }
      let withdraw = start(undefined);
      waited = true;
      return () => {
        withdraw();
        if (id !== 0) session?.cancel(id);
      };
    });
  }

  /**
   * Sends an event. Hot: it is sent whether or not the result is
   * subscribed. The Observable completes once the event is handed to the
   * connection, or errors if it cannot be. `data` may be a
   * {@link MsgTransRecord} carrying metadata (and a timeout for the wait
   * for a connection).
   */
  override emit<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    if (isNil(pattern) || isNil(payloadOf(data))) return throwError(() => new InvalidMessageException());
    const call = this.outgoing(pattern, data);
    const live = this.connection.connected;
    if (live) {
      try {
        this.emitOn(live, call.packet);
        return EMITTED as Observable<TResult>;
      } catch (err) {
        return throwError(() => err);
      }
    }
    const sent = connectable(
      new Observable<TResult>((subscriber) => {
        this.connection.acquire(
          call.timeout,
          (session) => {
            try {
              this.emitOn(session, call.packet);
            } catch (err) {
              subscriber.error(err);
              return;
            }
            subscriber.next(undefined as TResult);
            subscriber.complete();
          },
          (err) => subscriber.error(err),
        );
      }),
      { connector: () => new Subject(), resetOnDisconnect: false },
    );
    sent.connect();
    return sent;
  }

  override on<K extends keyof MsgTransClientEvents>(event: K, callback: MsgTransClientEvents[K]): void {
    this.events.on(event, callback);
  }

  /** The connection's raw socket/stream. Throws `ERR_MSGTRANS_NOT_CONNECTED` when not connected. */
  unwrap<T = unknown>(): T {
    const session = this.connection.connected;
    if (!session) {
      throw new MsgTransConnectionError(
        MsgTransErrorCode.NOT_CONNECTED,
        `Not connected to ${this.describeEndpoint()} (${this.connection.state}). Call connect() (or send a message) first.`,
      );
    }
    return session.connection.unwrap<T>();
  }

  /**
   * Events the server pushes with `pattern`, as their data. Hot: only events
   * arriving while subscribed are seen. Subscribing connects the client if
   * it is not, and while any push subscriber remains a failed connection is
   * retried with the reconnect backoff, so pushes arrive once the server is up.
   */
  incoming<T = unknown>(pattern: unknown): Observable<T> {
    const route = dispatchRoute(pattern);
    return this.incomingMessages().pipe(
      filter((message) => message.route === route),
      map((message) => message.data as T),
    );
  }

  /** Every event the server pushes, with its route and metadata. Connects as {@link incoming} does. */
  incomingMessages(): Observable<IncomingMessage> {
    return new Observable<IncomingMessage>((subscriber) => {
      const subscription = this.pushed.subscribe(subscriber);
      this.connection.wake();
      return subscription;
    });
  }

  /**
   * Answers requests the server sends with `pattern` (`sessions.sendTo`).
   * The handler may return a value, a Promise or an Observable (a streamed
   * reply); a throw or rejection becomes an error reply. Connects the client
   * and keeps it connected as push subscribers do. Returns a function that
   * removes the handler.
   */
  answer(pattern: unknown, handler: MsgTransClientRequestHandler): () => void {
    const route = dispatchRoute(pattern);
    this.answerers.set(route, handler);
    this.connection.wake();
    return () => {
      if (this.answerers.get(route) === handler) this.answerers.delete(route);
    };
  }

  /** @internal session option: errors thrown by answer() handlers travel with their message (no filter sees them) */
  readonly exposeErrorMessages = true;

  /** @internal session callback: a request pushed by the server. */
  onRequest(session: MsgTransSession, message: IncomingMessage): void {
    const handler = this.answerers.get(message.route);
    if (!handler) {
      session.replyError(message, NO_MESSAGE_HANDLER);
      return;
    }
    const telemetry = this.telemetry;
    if (telemetry === null) {
      this.answerWith(handler, session, message, undefined);
      return;
    }
    // the server's request is answered under a SERVER span, a child of the server's CLIENT span
    const call = telemetry.incoming(session.connection, message, false);
    call.run(this.answerWith, handler, session, message, call);
  }

  private readonly answerWith = (
    handler: MsgTransClientRequestHandler,
    session: MsgTransSession,
    message: IncomingMessage,
    call: IncomingCall | undefined,
  ): void => {
    new Promise((resolve) => resolve(handler(message.data, message))).then(
      (result) => session.reply(message, call === undefined || !isObservable(result) ? result : result.pipe(tap({ error: call.onError })), call?.onEnd),
      (err) => {
        call?.fail(err);
        call?.end();
        session.replyError(message, err);
      },
    ).catch((err) => this.logger.error(err));
  };

  /** @internal session callback: an event pushed by the server. */
  onEvent(session: MsgTransSession, message: IncomingMessage): void {
    // decoded here, where a bad payload closes the connection, not in a subscriber's pipe
    void message.data;
    const telemetry = this.telemetry;
    if (telemetry === null) {
      this.pushed.next(message);
      return;
    }
    // subscribers run under a CONSUMER span, a child of the server's PRODUCER span
    const call = telemetry.incoming(session.connection, message, true);
    call.run(this.deliver, message);
    call.end();
  }

  private readonly deliver = (message: IncomingMessage): void => this.pushed.next(message);

  /** Closes the client when Nest shuts the application down. */
  onApplicationShutdown(): void {
    this.close();
  }

  /** @internal session callback */
  onClose(session: MsgTransSession, error: Error | undefined): void {
    const traffic = session.instruments?.traffic;
    if (traffic) {
      traffic.sessions--;
      const code = (error as { code?: unknown } | undefined)?.code;
      if (typeof code === 'string') traffic.countError(code);
    }
    const replica = this.connection.replicaOf(session);
    if (!replica) return;
    if (error) {
      this.logger.error(`Connection to ${replica.name} lost: ${error.message}`);
      this.events.emit('error', error);
    }
    this.connection.sessionClosed(session);
    this.events.emit('disconnect', error);
  }

  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    const observer: ReplyObserver = {
      next: (response) => callback({ response }),
      error: (err) => callback({ err, isDisposed: true }),
      complete: () => callback({ isDisposed: true }),
    };
    const call: OutgoingCall = { packet, timeout: this.sessionOptions.requestTimeout, ownTimeout: false };
    let session: MsgTransSession | null = null;
    let id = 0;
    const withdraw = this.connection.acquire(
      call.timeout,
      (s) => {
        session = s;
        id = this.request(s, call, undefined, observer);
      },
      (err) => observer.error(err),
    );
    return () => {
      withdraw();
      if (id !== 0) session?.cancel(id);
    };
  }

  protected dispatchEvent<T = any>(packet: ReadPacket): Promise<T> {
    return new Promise<T>((resolve, reject) =>
      this.connection.acquire(
        this.sessionOptions.requestTimeout,
        (session) => {
          try {
            this.emitOn(session, packet);
            resolve(undefined as T);
          } catch (err) {
            reject(err);
          }
        },
        reject,
      ),
    );
  }

  /**
   * The packet of a call (the dispatch hook has run) and its timeout: a
   * record's options applied, or what is left of the deadline of the request
   * being handled (a call made by a handler) when that is shorter.
   */
  private outgoing(pattern: unknown, data: unknown): OutgoingCall {
    let call: OutgoingCall;
    if (!(data instanceof MsgTransRecord)) {
      call = { packet: this.createPacket(pattern, data), timeout: this.sessionOptions.requestTimeout, ownTimeout: false };
    } else {
      const { metadata, timeout, deadline } = data.options;
      const packet = this.createPacket(pattern, data.data);
      if (metadata) packet.metadata = { ...packet.metadata, ...metadata };
      call =
        timeout === undefined
          ? { packet, timeout: this.sessionOptions.requestTimeout, ownTimeout: false }
          : { packet, timeout, ownTimeout: true };
      if (deadline === 'detached') return call;
    }
    const inherited = currentDeadline();
    if (inherited !== undefined) {
      const left = Math.max(1, inherited - Date.now());
      if (call.timeout === 0 || left < call.timeout) {
        call.timeout = left;
        call.ownTimeout = true;
      }
    }
    return call;
  }

  /**
   * The timeout for the reply once a call has its session: undefined for the
   * session's default; the call's own; or, for a call that waited for the
   * connection (`waitedSince` > 0), what remains of its timeout.
   */
  private replyTimeout(call: OutgoingCall, waitedSince: number): number | undefined {
    if (waitedSince === 0 || call.timeout === 0) return call.ownTimeout ? call.timeout : undefined;
    return Math.max(1, call.timeout - (Date.now() - waitedSince));
  }

  private replyObserver(subscriber: ReplyObserver): ReplyObserver {
    if (!this.serializesReplies) return subscriber;
    // as Nest's createObserver: every value and error passes through the overrides
    return {
      next: (value) => subscriber.next(this.serializeResponse(value)),
      error: (err) => subscriber.error(this.serializeError(err)),
      complete: () => subscriber.complete(),
    };
  }

  private request(session: MsgTransSession, call: OutgoingCall, timeout: number | undefined, observer: ReplyObserver): number {
    const wire = toWireRoute(call.packet.pattern);
    // the server learns the budget as it stands when the request leaves (docs/PROTOCOL.md, "Deadlines")
    const budget = timeout ?? this.sessionOptions.requestTimeout;
    const metadata =
      budget <= 0
        ? call.packet.metadata
        : call.packet.metadata === undefined
          ? { [TIMEOUT_METADATA_KEY]: budgetText(budget) }
          : { ...call.packet.metadata, [TIMEOUT_METADATA_KEY]: budgetText(budget) };
    return session.request(wire.bizType, wire.route, call.packet.data, metadata, observer, timeout);
  }

  private emitOn(session: MsgTransSession, packet: ReadPacket): void {
    const wire = toWireRoute(packet.pattern);
    session.emit(wire.bizType, wire.route, packet.data, packet.metadata);
  }

  /**
   * A call marked idempotent (`idempotentPatterns`) whose connection drops
   * before any reply value arrived is sent once more, to another replica
   * when one is connected.
   */
  private retryOnDrop(observer: ReplyObserver, again: () => void): ReplyObserver {
    let answered = false;
    let retried = false;
    return {
      next: (value) => {
        answered = true;
        observer.next(value);
      },
      error: (err) => {
        if (!answered && !retried && err instanceof MsgTransConnectionError && err.code === MsgTransErrorCode.CONNECTION_CLOSED) {
          retried = true;
          again();
          return;
        }
        observer.error(err);
      },
      complete: () => observer.complete(),
    };
  }

  /** How each replica's state machine connects, authenticates and reports, bound to this client. */
  private replicaHost(): ConstructorParameters<typeof ReplicaPool>[1] {
    return {
      dial: async (endpoint) => {
        const protocol = this.protocols.get(endpoint.protocol)!;
        const tls = replicaTls(endpoint, this.connectContext.tls);
        const context = tls === this.connectContext.tls ? this.connectContext : { ...this.connectContext, tls };
        const connection = await protocol.connect(endpoint, context);
        const session = new MsgTransSession(connection, this.sessionOptions, this);
        if (!session.closed) {
          // an SDK registered after the client was made is picked up from the next connection
          this.telemetry ??= this.resolveTelemetry();
          const traffic = this.traffic.of(connection.protocol);
          traffic.sessions++;
          session.instruments = { traffic, telemetry: this.telemetry };
        }
        return session;
      },
      authenticate: (session, where) => this.authenticate(session, where),
      wantsConnection: () => this.keepConnected || this.pushed.observed || this.answerers.size > 0,
      transition: (replica, from, to, error) => this.onTransition(replica, from, to, error),
      poolTransition: (_from, to) => this.onPoolTransition(to),
    };
  }

  /**
   * Presents `credentials` on a fresh session. Only an ERROR reply is a
   * refusal (`ERR_MSGTRANS_AUTH_FAILED`); the connection dropping or the
   * reply timing out is a connection failure, retried like any other.
   */
  private authenticate(session: MsgTransSession, where: string): Promise<unknown> | undefined {
    const credentials = this.options.credentials;
    if (credentials === undefined) return undefined;
    const auth = requestObservable(session, () => ({
      wire: { bizType: 0, route: AUTH_ROUTE },
      data: credentials,
      metadata: undefined,
    }));
    return firstValueFrom(auth).catch((err: unknown) => {
      // The connection went away or the reply never came: retried like any connection failure.
      if (err instanceof MsgTransConnectionError || err instanceof MsgTransTimeoutError) {
        throw new MsgTransConnectionError(
          MsgTransErrorCode.CONNECT_FAILED,
          `Connection to ${where} failed while presenting credentials: ${err.message}`,
          { cause: err },
        );
      }
      // A local Error means the credentials cannot be sent at all (they do not encode): no retry fixes that.
      const message =
        err instanceof Error
          ? `Cannot present the credentials to ${where}: ${err.message}`
          : `${where} refused the credentials: ${replyReason(err)}`;
      throw new MsgTransConnectionError(MsgTransErrorCode.AUTH_FAILED, message, { cause: err });
    });
  }

  private onTransition(replica: Replica, _from: MsgTransConnectionState, to: MsgTransConnectionState, error: Error | undefined): void {
    if (error) this.events.emit('error', error);
    if (to === MsgTransConnectionState.CONNECTED) this.events.emit('connect', replica.connection.connected!);
  }

  /** The client's status follows the pool: connected while any replica is. */
  private onPoolTransition(to: MsgTransConnectionState): void {
    switch (to) {
      case MsgTransConnectionState.CONNECTED:
        this._status$.next(MsgTransStatus.CONNECTED);
        return;
      case MsgTransConnectionState.RECONNECTING:
        this._status$.next(MsgTransStatus.RECONNECTING);
        return;
      case MsgTransConnectionState.IDLE:
      case MsgTransConnectionState.CLOSED:
        this._status$.next(MsgTransStatus.DISCONNECTED);
        return;
    }
  }

  private resolveTelemetry(): MsgTransTelemetry | null {
    const address = this.telemetryAddress;
    return MsgTransTelemetry.resolve(this.options.telemetry, 'client', () => address, this.traffic, () => ({}));
  }

  private describeEndpoint(): string {
    return this.connection.describe();
  }
}

// Most calls carry the client's default timeout as their budget: its text is made once, not per call.
let lastBudget = 0;
let lastBudgetText = '';
function budgetText(budget: number): string {
  if (budget !== lastBudget) {
    lastBudget = budget;
    lastBudgetText = String(budget);
  }
  return lastBudgetText;
}
