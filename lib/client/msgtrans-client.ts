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
import { ConnectionStateMachine, type ConnectionDriver } from './connection-state-machine.js';
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
 */
export class MsgTransClient
  extends ClientProxy<MsgTransClientEvents, string>
  implements MsgTransSessionHandler
{
  protected readonly logger = new Logger(MsgTransClient.name);
  private readonly endpoint: MsgTransEndpoint;
  private readonly protocol: MsgTransProtocol;
  private readonly sessionOptions: MsgTransSessionOptions;
  private readonly connectContext: MsgTransConnectContext;
  private readonly events = new EventListeners<MsgTransClientEvents>();
  private readonly pushed = new Subject<IncomingMessage>();
  private readonly answerers = new Map<string, MsgTransClientRequestHandler>();
  private readonly keepConnected: boolean;
  private readonly connection: ConnectionStateMachine;
  // Replies pass through serializeResponse/serializeError only when a subclass overrides them.
  private readonly serializesReplies: boolean;
  private readonly traffic = new TrafficCounters();
  // null (the common case) means no SDK: every hook is skipped. Checked again on each connection.
  private telemetry: MsgTransTelemetry | null = null;

  constructor(protected readonly options: MsgTransClientOptions) {
    super();
    assertKnownOptions(options, 'client');
    assertTlsOptions(options.tls, 'client');
    this.endpoint = parseEndpoint(options.url);
    this.protocol = protocolFor(protocolTable(options.protocols), this.endpoint.protocol);
    this.sessionOptions = resolveSessionOptions(options, options.requestTimeout ?? MSGTRANS_DEFAULTS.requestTimeout);
    this.connectContext = {
      limits: this.sessionOptions.limits,
      tls: this.endpoint.tls ?? options.tls,
      connectTimeout: positiveInteger('connectTimeout', options.connectTimeout, MSGTRANS_DEFAULTS.connectTimeout),
      heartbeatInterval: resolveHeartbeat(options),
    };
    this.keepConnected = flag('keepConnected', options.keepConnected, MSGTRANS_DEFAULTS.keepConnected);
    this.connection = new ConnectionStateMachine(this.connectionDriver(), {
      reconnect: resolveReconnect(options.reconnect),
      whileDisconnected: oneOf('whileDisconnected', options.whileDisconnected, ['auto', 'wait', 'fail'], MSGTRANS_DEFAULTS.whileDisconnected),
      maxQueuedCalls: positiveInteger('maxQueuedCalls', options.maxQueuedCalls, MSGTRANS_DEFAULTS.maxQueuedCalls),
    });
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
      const observer = this.replyObserver(subscriber);
      let session: MsgTransSession | null = null;
      let id = 0;
      // true once acquire() returned: a session handed over after that waited for the connection
      let waited = false;
      const startedAt = Date.now();
      const withdraw = this.connection.acquire(
        call.timeout,
        (s) => {
          if (subscriber.closed) return;
          session = s;
          id = this.request(s, call, this.replyTimeout(call, waited ? startedAt : 0), observer);
        },
        (err) => observer.error(err),
      );
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
    if (this.connection.connected !== session) return;
    if (error) {
      this.logger.error(`Connection to ${this.describeEndpoint()} lost: ${error.message}`);
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
    const metadata = budget > 0 ? { ...call.packet.metadata, [TIMEOUT_METADATA_KEY]: String(budget) } : call.packet.metadata;
    return session.request(wire.bizType, wire.route, call.packet.data, metadata, observer, timeout);
  }

  private emitOn(session: MsgTransSession, packet: ReadPacket): void {
    const wire = toWireRoute(packet.pattern);
    session.emit(wire.bizType, wire.route, packet.data, packet.metadata);
  }

  /** How the state machine connects, authenticates and reports, bound to this client. */
  private connectionDriver(): ConnectionDriver {
    return {
      dial: async () => {
        const connection = await this.protocol.connect(this.endpoint, this.connectContext);
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
      authenticate: (session) => this.authenticate(session),
      wantsConnection: () => this.keepConnected || this.pushed.observed || this.answerers.size > 0,
      transition: (from, to, error) => this.onTransition(from, to, error),
      describeEndpoint: () => this.describeEndpoint(),
    };
  }

  /**
   * Presents `credentials` on a fresh session. Only an ERROR reply is a
   * refusal (`ERR_MSGTRANS_AUTH_FAILED`); the connection dropping or the
   * reply timing out is a connection failure, retried like any other.
   */
  private authenticate(session: MsgTransSession): Promise<unknown> | undefined {
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
          `Connection to ${this.describeEndpoint()} failed while presenting credentials: ${err.message}`,
          { cause: err },
        );
      }
      // A local Error means the credentials cannot be sent at all (they do not encode): no retry fixes that.
      const message =
        err instanceof Error
          ? `Cannot present the credentials to ${this.describeEndpoint()}: ${err.message}`
          : `${this.describeEndpoint()} refused the credentials: ${replyReason(err)}`;
      throw new MsgTransConnectionError(MsgTransErrorCode.AUTH_FAILED, message, { cause: err });
    });
  }

  private onTransition(_from: MsgTransConnectionState, to: MsgTransConnectionState, error: Error | undefined): void {
    if (error) this.events.emit('error', error);
    switch (to) {
      case MsgTransConnectionState.CONNECTED:
        this._status$.next(MsgTransStatus.CONNECTED);
        this.events.emit('connect', this.connection.connected!);
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
    const { host, port } = this.endpoint;
    return MsgTransTelemetry.resolve(this.options.telemetry, 'client', () => ({ host, port }), this.traffic, () => ({}));
  }

  private describeEndpoint(): string {
    return `${this.endpoint.protocol}://${this.endpoint.host}:${this.endpoint.port}`;
  }
}
