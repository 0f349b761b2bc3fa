import { Logger } from '@nestjs/common';
import { ClientProxy, type ReadPacket, type WritePacket } from '@nestjs/microservices';
import { InvalidMessageException } from '@nestjs/microservices/errors/invalid-message.exception.js';
import { connectable, filter, firstValueFrom, map, Observable, of, Subject, throwError } from 'rxjs';
import { MSGTRANS_DEFAULTS, NO_MESSAGE_HANDLER } from '../constants.js';
import {
  assertKnownOptions,
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
import { MsgTransStatus, type MsgTransClientEvents } from '../interfaces/msgtrans-events.interface.js';
import type { MsgTransClientOptions, MsgTransReconnectOptions } from '../interfaces/msgtrans-options.interface.js';
import type { IncomingMessage } from '../session/incoming-message.interface.js';
import {
  MsgTransSession,
  type MsgTransSessionHandler,
  type MsgTransSessionOptions,
  type ReplyObserver,
} from '../session/msgtrans-session.js';
import { assertTlsOptions, parseEndpoint, type MsgTransEndpoint } from '../transport/endpoint.js';
import { EventListeners } from '../transport/event-listeners.js';
import type { MsgTransConnection } from '../transport/msgtrans-connection.interface.js';
import type { MsgTransConnectContext, MsgTransProtocol } from '../transport/msgtrans-protocol.interface.js';

/** Answers one request pushed by the server: a value, a Promise or an Observable. */
export type MsgTransClientRequestHandler = (data: any, message: IncomingMessage) => unknown;

// emit() has already sent by the time anyone subscribes; this is what they see.
const EMITTED = of(undefined);

function isNil(value: unknown): value is null | undefined {
  return value === null || value === undefined;
}

/**
 * Nest `ClientProxy` speaking msgtrans. Use it directly, or through
 * `ClientsModule.register([{ name, customClass: MsgTransClient, options }])`.
 *
 * Many requests share one connection, matched by message id. The connection
 * is made on first use (or by `connect()`); when it drops, pending requests
 * fail at once with a {@link MsgTransConnectionError} and the next call
 * reconnects.
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
  private session: MsgTransSession | null = null;
  private readonly pushed = new Subject<IncomingMessage>();
  private readonly answerers = new Map<string, MsgTransClientRequestHandler>();
  private connecting: Promise<MsgTransSession> | null = null;
  // Bumped by close(): a connection that completes after it is discarded.
  private generation = 0;
  private readonly reconnectPolicy: Required<MsgTransReconnectOptions> | null;
  private readonly whileDisconnected: 'wait' | 'fail';
  private readonly maxQueuedCalls: number;
  private waitingCalls = 0;
  // backoff carried across reconnections of short-lived sessions
  private reconnectAttempts = 0;
  private connectedAt = 0;
  // Set while a reconnection loop runs; ends it (rejecting whoever waits).
  private stopReconnecting: ((error: Error) => void) | null = null;

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
    this.reconnectPolicy = resolveReconnect(options.reconnect);
    this.whileDisconnected = oneOf('whileDisconnected', options.whileDisconnected, ['wait', 'fail'], 'wait');
    this.maxQueuedCalls = positiveInteger('maxQueuedCalls', options.maxQueuedCalls, MSGTRANS_DEFAULTS.maxQueuedCalls);
  }

  /** Connects (once; concurrent callers share the attempt) and resolves with the session. */
  connect(): Promise<MsgTransSession> {
    const live = this.liveSession();
    if (live) return Promise.resolve(live);
    if (this.connecting) return this.connecting;
    const generation = this.generation;
    const attempt: Promise<MsgTransSession> = this.protocol
      .connect(this.endpoint, this.connectContext)
      .then((connection) => this.establish(connection, generation))
      .catch((err: Error) => {
        if (this.connecting === attempt) this.connecting = null;
        this.events.emit('error', err);
        throw err;
      });
    this.connecting = attempt;
    return attempt;
  }

  /** Closes the connection; pending and waiting requests fail with `ERR_MSGTRANS_CLIENT_CLOSED`. */
  close(): void {
    this.generation++;
    this.connecting = null;
    this.stopReconnecting?.(this.closedError());
    const session = this.session;
    this.session = null;
    session?.close(undefined, this.closedError());
    this._status$.next(MsgTransStatus.DISCONNECTED);
  }

  /**
   * Sends a request; the Observable is cold (nothing is sent until it is
   * subscribed) and emits the reply's values. Unsubscribing early sends
   * CANCEL so the server stops producing.
   */
  override send<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    if (isNil(pattern) || isNil(data)) return throwError(() => new InvalidMessageException());
    return requestObservable<TResult>(this.sessionOrConnect, () => {
      const packet = this.createPacket(pattern, data);
      return { wire: toWireRoute(packet.pattern), data: packet.data, metadata: packet.metadata };
    });
  }

  /**
   * Sends an event. Hot: it is sent whether or not the result is
   * subscribed. The Observable completes once the event is handed to the
   * connection, or errors if it cannot be.
   */
  override emit<TResult = any, TInput = any>(pattern: any, data: TInput): Observable<TResult> {
    if (isNil(pattern) || isNil(data)) return throwError(() => new InvalidMessageException());
    const live = this.liveSession();
    if (live) {
      try {
        this.emitOn(live, this.createPacket(pattern, data));
        return EMITTED as Observable<TResult>;
      } catch (err) {
        return throwError(() => err);
      }
    }
    const sent = connectable(
      new Observable<TResult>((subscriber) => {
        this.dispatchEvent(this.createPacket(pattern, data)).then(
          () => {
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

  /** The connection's raw socket/stream. Throws when not connected. */
  unwrap<T = unknown>(): T {
    const session = this.liveSession();
    if (!session) throw new Error('Not connected. Call connect() (or send a message) first.');
    return session.connection.unwrap<T>();
  }

  /**
   * Events the server pushes with `pattern`, as their data. Hot: only events
   * arriving while subscribed are seen. Connect first (or send something) so
   * there is a connection to push on.
   */
  incoming<T = unknown>(pattern: unknown): Observable<T> {
    const route = dispatchRoute(pattern);
    return this.pushed.pipe(
      filter((message) => message.route === route),
      map((message) => message.data as T),
    );
  }

  /** Every event the server pushes, with its route and metadata. */
  incomingMessages(): Observable<IncomingMessage> {
    return this.pushed.asObservable();
  }

  /**
   * Answers requests the server sends with `pattern` (`sessions.sendTo`).
   * The handler may return a value, a Promise or an Observable (a streamed
   * reply); a throw or rejection becomes an error reply. Returns a function
   * that removes the handler.
   */
  answer(pattern: unknown, handler: MsgTransClientRequestHandler): () => void {
    const route = dispatchRoute(pattern);
    this.answerers.set(route, handler);
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
    new Promise((resolve) => resolve(handler(message.data, message))).then(
      (result) => session.reply(message, result),
      (err) => session.replyError(message, err),
    ).catch((err) => this.logger.error(err));
  }

  /** @internal session callback: an event pushed by the server. */
  onEvent(_session: MsgTransSession, message: IncomingMessage): void {
    // decoded here, where a bad payload closes the connection, not in a subscriber's pipe
    void message.data;
    this.pushed.next(message);
  }

  /** Closes the client when Nest shuts the application down. */
  onApplicationShutdown(): void {
    this.close();
  }

  /** @internal session callback */
  onClose(session: MsgTransSession, error: Error | undefined): void {
    if (this.session !== session) return;
    this.session = null;
    this._status$.next(MsgTransStatus.DISCONNECTED);
    if (error) {
      this.logger.error(`Connection to ${this.describeEndpoint()} lost: ${error.message}`);
      this.events.emit('error', error);
    }
    this.events.emit('disconnect', error);
    this.reconnect();
  }

  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    const observer: ReplyObserver = {
      next: (response) => callback({ response }),
      error: (err) => callback({ err, isDisposed: true }),
      complete: () => callback({ isDisposed: true }),
    };
    let session: MsgTransSession | null = null;
    let id = 0;
    let cancelled = false;
    Promise.resolve(this.sessionOrConnect())
      .then((s) => {
        if (cancelled) return;
        session = s;
        id = this.request(s, packet, observer);
      })
      .catch((err) => observer.error(err));
    return () => {
      cancelled = true;
      if (id !== 0) session?.cancel(id);
    };
  }

  protected async dispatchEvent<T = any>(packet: ReadPacket): Promise<T> {
    this.emitOn(await this.sessionOrConnect(), packet);
    return undefined as T;
  }

  private request(session: MsgTransSession, packet: ReadPacket, observer: ReplyObserver): number {
    const wire = toWireRoute(packet.pattern);
    return session.request(wire.bizType, wire.route, packet.data, packet.metadata, observer);
  }

  private emitOn(session: MsgTransSession, packet: ReadPacket): void {
    const wire = toWireRoute(packet.pattern);
    session.emit(wire.bizType, wire.route, packet.data, packet.metadata);
  }

  /** The live session, or a promise of one: connecting, or waiting out a reconnection within bounds. */
  private readonly sessionOrConnect = (): MsgTransSession | Promise<MsgTransSession> => {
    const live = this.liveSession();
    if (live) return live;
    if (!this.stopReconnecting) return this.connect();
    if (this.whileDisconnected === 'fail') {
      return Promise.reject(
        new MsgTransConnectionError(MsgTransErrorCode.CONNECTION_CLOSED, `Not connected to ${this.describeEndpoint()} (reconnecting)`),
      );
    }
    if (this.waitingCalls >= this.maxQueuedCalls) {
      return Promise.reject(
        new MsgTransConnectionError(MsgTransErrorCode.QUEUE_FULL, `${this.waitingCalls} calls already wait for a connection`),
      );
    }
    this.waitingCalls++;
    return new Promise<MsgTransSession>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new MsgTransConnectionError(
              MsgTransErrorCode.CONNECT_FAILED,
              `Still reconnecting to ${this.describeEndpoint()} after ${this.connectContext.connectTimeout} ms`,
            ),
          ),
        this.connectContext.connectTimeout,
      );
      (this.connecting ?? this.connect()).then(resolve, reject).finally(() => {
        clearTimeout(timer);
        this.waitingCalls--;
      });
    });
  };

  /**
   * Turns a fresh connection into the client's session (unless close() came
   * first), after presenting `credentials` when there are any.
   */
  private establish(connection: MsgTransConnection, generation: number): MsgTransSession | Promise<MsgTransSession> {
    if (generation !== this.generation) {
      connection.close();
      throw this.closedError();
    }
    const session = new MsgTransSession(connection, this.sessionOptions, this);
    if (session.closed) throw new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, 'Connection closed at once');
    const credentials = this.options.credentials;
    if (credentials === undefined) return this.activate(session);
    const auth = requestObservable(session, () => ({
      wire: { bizType: 0, route: AUTH_ROUTE },
      data: credentials,
      metadata: undefined,
    }));
    return firstValueFrom(auth).then(
      () => {
        if (generation !== this.generation) {
          session.close();
          throw this.closedError();
        }
        return this.activate(session);
      },
      (err: unknown) => {
        session.close();
        const reason = err instanceof Error ? err.message : ((err as { message?: string })?.message ?? String(err));
        throw new MsgTransConnectionError(
          MsgTransErrorCode.AUTH_FAILED,
          `${this.describeEndpoint()} refused the credentials: ${reason}`,
          { cause: err },
        );
      },
    );
  }

  private activate(session: MsgTransSession): MsgTransSession {
    this.connecting = null;
    // never two live sessions: a connection that won a race replaces, and closes, the other
    if (this.session && this.session !== session) this.session.close();
    this.session = session;
    this.connectedAt = Date.now();
    this._status$.next(MsgTransStatus.CONNECTED);
    this.events.emit('connect', session);
    return session;
  }

  /**
   * Retries with exponential backoff and jitter until connected, closed, or
   * out of attempts. Calls made meanwhile wait on `this.connecting`.
   */
  private reconnect(): void {
    const policy = this.reconnectPolicy;
    if (!policy || this.stopReconnecting) return;
    const generation = this.generation;
    this._status$.next(MsgTransStatus.RECONNECTING);
    // A session that dropped soon after it was made (a server that accepts,
    // then refuses) continues the backoff instead of restarting it.
    if (Date.now() - this.connectedAt > policy.maxDelay) this.reconnectAttempts = 0;
    let attempt = this.reconnectAttempts;
    let timer: NodeJS.Timeout | null = null;
    let settle!: { resolve: (s: MsgTransSession) => void; reject: (e: Error) => void };
    const done = new Promise<MsgTransSession>((resolve, reject) => (settle = { resolve, reject }));
    // nobody may be waiting; the rejection is still observed by callers that are
    done.catch(() => undefined);
    const finish = () => {
      if (timer) clearTimeout(timer);
      this.stopReconnecting = null;
      if (this.connecting === done) this.connecting = null;
    };
    this.stopReconnecting = (error) => {
      finish();
      settle.reject(error);
    };
    const schedule = () => {
      const base = Math.min(policy.maxDelay, policy.initialDelay * policy.factor ** attempt);
      const delay = base * (1 + policy.jitter * (2 * Math.random() - 1));
      timer = setTimeout(tryOnce, Math.max(0, delay));
      // a client waiting to reconnect must not keep the process alive by itself
      timer.unref();
    };
    const tryOnce = () => {
      timer = null;
      attempt++;
      this.reconnectAttempts = attempt;
      this.protocol.connect(this.endpoint, this.connectContext).then(
        (connection) => {
          if (generation !== this.generation) {
            connection.close();
            return;
          }
          // Callers keep waiting on `done` until the session is established
          // (credentials included), so none of them opens a second connection.
          Promise.resolve()
            .then(() => this.establish(connection, generation))
            .then(
              (session) => {
                finish();
                settle.resolve(session);
              },
              (err: Error) => {
                finish();
                this.events.emit('error', err);
                this._status$.next(MsgTransStatus.DISCONNECTED);
                settle.reject(err);
              },
            );
        },
        (err: Error) => {
          if (generation !== this.generation) return;
          this.events.emit('error', err);
          if (attempt >= policy.maxAttempts) {
            finish();
            this._status$.next(MsgTransStatus.DISCONNECTED);
            settle.reject(err);
            return;
          }
          schedule();
        },
      );
    };
    this.connecting = done;
    schedule();
  }

  private liveSession(): MsgTransSession | null {
    const session = this.session;
    return session !== null && !session.closed ? session : null;
  }

  private closedError(): MsgTransConnectionError {
    return new MsgTransConnectionError(MsgTransErrorCode.CLIENT_CLOSED, 'Client was closed while the request was pending');
  }

  private describeEndpoint(): string {
    return `${this.endpoint.protocol}://${this.endpoint.host}:${this.endpoint.port}`;
  }
}
