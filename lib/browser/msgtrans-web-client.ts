import { NO_MESSAGE_HANDLER } from '../constants.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransWebError } from './msgtrans-web-error.js';
import { ReplyStream } from './reply-stream.js';
import {
  MAX_TIMER_MS,
  invalidOption,
  resolveWebClientOptions,
  type MsgTransWebClientOptions,
  type ResolvedWebClientOptions,
  type WebSocketLike,
} from './web-client-options.js';
import {
  WebConnection,
  webTarget,
  type MsgTransWebMessageInfo,
  type WebConnectionOwner,
  type WebIncoming,
  type WebReplySink,
} from './web-connection.js';
import { dispatchRouteOf, toWebWireRoute } from './web-route.js';

/** Where the client stands; see {@link MsgTransWebClient.onStatus}. */
export type MsgTransWebStatus = 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'closed';

/** Options of one call. */
export interface MsgTransWebCallOptions {
  /** ms to wait for the reply (a stream: for each value), including any wait for a connection. Default: the client's `requestTimeout`. */
  timeout?: number;
  /** Extension-header metadata for this call, added to the client's `metadata`. */
  metadata?: Record<string, string>;
}

/** Receives events the server pushes with one pattern. */
export type MsgTransWebListener<T = any> = (data: T, message: MsgTransWebMessageInfo) => void;

/**
 * Answers one request the server sends (`sessions.sendTo`): a value, a
 * Promise, or an async iterable (a streamed reply). A throw or rejection
 * becomes an error reply.
 */
export type MsgTransWebAnswerer<T = any> = (data: T, message: MsgTransWebMessageInfo) => unknown;

interface Waiter {
  use(connection: WebConnection): void;
  fail(error: MsgTransWebError): void;
}

// the reserved route of the credentials request (docs/PROTOCOL.md, Authentication);
// the server's AUTH_ROUTE, spelt out so the bundle needs nothing from lib/server (a test checks they agree)
export const WEB_AUTH_ROUTE = 'msgtrans.auth';
const AUTH_TARGET = webTarget(0, WEB_AUTH_ROUTE, undefined);

type Timer = ReturnType<typeof setTimeout>;
type EventTarget = { addEventListener?(type: string, listener: () => void): void; removeEventListener?(type: string, listener: () => void): void };

const noop = (): void => undefined;

/** Surfaces an application callback's error as an uncaught error without breaking the client. */
const report = (err: unknown): void => {
  setTimeout(() => {
    throw err;
  });
};

/**
 * A msgtrans client for browsers (and Deno, Node >= 22) over one WebSocket:
 * calls Nest `@MessagePattern` / `@EventPattern` handlers and receives what
 * the server pushes. Speaks the same wire as the Node `MsgTransClient`.
 *
 * ```ts
 * const client = new MsgTransWebClient('wss://api.example.com/msgtrans', { credentials: { token } });
 * const total = await client.request('math.sum', [1, 2, 3]);
 * for await (const n of client.stream('math.count', 5)) console.log(n);
 * const off = client.on('chat.message', (msg) => render(msg));
 * ```
 *
 * The connection is made by `connect()` or the first call. When it drops,
 * pending calls fail with `ERR_MSGTRANS_CONNECTION_CLOSED` and the client
 * reconnects with jittered backoff; listeners and answerers stay in place.
 */
export class MsgTransWebClient implements WebConnectionOwner {
  private readonly options: ResolvedWebClientOptions;
  private connection: WebConnection | null = null;
  private opening: WebSocketLike | null = null;
  private state: MsgTransWebStatus = 'disconnected';
  private readonly waiters = new Set<Waiter>();
  private readonly listeners = new Map<string, Set<MsgTransWebListener>>();
  private readonly answerers = new Map<string, MsgTransWebAnswerer>();
  private readonly statusListeners = new Set<(status: MsgTransWebStatus) => void>();
  private reconnectTimer: Timer | undefined;
  private attempts = 0;
  private connectedAt = 0;
  private closing: Promise<void> | null = null;
  private readonly pageEvents: Array<[string, () => void]>;

  /**
   * @param url `ws://` or `wss://` URL of the server's WebSocket endpoint; in
   * a page, a path such as `'/msgtrans'` means the page's own host.
   */
  constructor(url: string | URL, options: MsgTransWebClientOptions = {}) {
    this.options = resolveWebClientOptions(url, options);
    // In a page: recover as soon as the network is back, stop trusting the
    // socket when it goes, and close it cleanly when the page goes away.
    this.pageEvents = [
      ['online', () => this.reconnectTimer !== undefined && ((this.attempts = 0), this.reconnectNow())],
      ['offline', () => this.connection?.close(new MsgTransWebError(MsgTransErrorCode.CONNECTION_CLOSED, 'The page went offline'))],
      ['pagehide', () => this.connection?.close()],
    ];
    for (const [type, listener] of this.pageEvents) (globalThis as EventTarget).addEventListener?.(type, listener);
  }

  /** Where the client stands now. */
  get status(): MsgTransWebStatus {
    return this.state;
  }

  /**
   * Connects, and presents `credentials` if there are any. Resolves once
   * the server accepts; concurrent callers share the attempt. Rejects with
   * `ERR_MSGTRANS_CONNECT_FAILED` or `ERR_MSGTRANS_AUTH_FAILED`.
   */
  connect(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.connection) return resolve();
      if (this.state === 'closed') return reject(closedError());
      this.waiters.add({ use: () => resolve(), fail: reject });
      if (this.state === 'disconnected') this.startConnecting();
    });
  }

  /**
   * Sends a request and resolves with the reply (for a streamed reply, its
   * last value). Rejects with a {@link MsgTransWebError}: `ERR_MSGTRANS_TIMEOUT`,
   * `ERR_MSGTRANS_CONNECTION_CLOSED`, or `ERR_MSGTRANS_REMOTE_ERROR` with the
   * server's error as `payload`.
   */
  request<T = any>(pattern: unknown, data?: unknown, options?: MsgTransWebCallOptions): Promise<T> {
    return new Promise((resolve, reject) => {
      let last: unknown;
      this.call(pattern, data, options, false, { next: (value) => (last = value), complete: () => resolve(last as T), error: reject });
    });
  }

  /**
   * Sends a request whose reply is a stream, read with `for await`. Each
   * value must arrive within the timeout; leaving the loop early sends
   * CANCEL so the server's handler is unsubscribed.
   */
  stream<T = any>(pattern: unknown, data?: unknown, options?: MsgTransWebCallOptions): AsyncIterableIterator<T> {
    return new ReplyStream<T>((sink) => this.call(pattern, data, options, false, sink));
  }

  /** Sends an event (`@EventPattern`); resolves once it is handed to the socket. */
  emit(pattern: unknown, data?: unknown, options?: MsgTransWebCallOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      this.call(pattern, data, options, true, { next: noop, complete: resolve, error: reject });
    });
  }

  /**
   * Receives events the server pushes with `pattern` (`sessions.emitTo`,
   * `emitToRoom`, `broadcast`). Listeners stay across reconnections.
   * Returns a function that removes the listener.
   */
  on<T = any>(pattern: unknown, listener: MsgTransWebListener<T>): () => void {
    const route = dispatchRouteOf(pattern);
    let set = this.listeners.get(route);
    if (!set) this.listeners.set(route, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(route) === set) this.listeners.delete(route);
    };
  }

  /**
   * Answers requests the server sends with `pattern` (`sessions.sendTo`);
   * one answerer per pattern. Returns a function that removes it.
   */
  answer<T = any>(pattern: unknown, answerer: MsgTransWebAnswerer<T>): () => void {
    const route = dispatchRouteOf(pattern);
    this.answerers.set(route, answerer);
    return () => {
      if (this.answerers.get(route) === answerer) this.answerers.delete(route);
    };
  }

  /** Calls `listener` on every status change. Returns a function that removes it. */
  onStatus(listener: (status: MsgTransWebStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /**
   * Closes the client for good: pending and waiting calls fail with
   * `ERR_MSGTRANS_CLIENT_CLOSED`, the socket closes with code 1000.
   * Resolves once the socket has closed (at most `connectTimeout` ms).
   */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    for (const [type, listener] of this.pageEvents) (globalThis as EventTarget).removeEventListener?.(type, listener);
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const connection = this.connection;
    this.connection = null;
    this.setStatus('closed');
    this.failWaiters(closedError());
    this.opening?.close();
    connection?.close(undefined, closedError());
    let timer: Timer | undefined;
    this.closing = Promise.race([
      connection?.whenClosed,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.connectTimeout))),
    ]).then(() => clearTimeout(timer));
    return this.closing;
  }

  /** @internal connection callback */
  onEvent(_connection: WebConnection, message: WebIncoming): void {
    const listeners = this.listeners.get(message.route);
    if (!listeners) return;
    for (const listener of [...listeners]) {
      try {
        listener(message.data, message);
      } catch (err) {
        report(err);
      }
    }
  }

  /** @internal connection callback */
  onRequest(connection: WebConnection, message: WebIncoming): void {
    const answerer = this.answerers.get(message.route);
    if (!answerer) {
      connection.replyError(message, NO_MESSAGE_HANDLER);
      return;
    }
    new Promise((resolve) => resolve(answerer(message.data, message)))
      .then(
        (result) => connection.reply(message, result),
        (err) => connection.replyError(message, err),
      )
      .catch(report);
  }

  /** @internal connection callback */
  onClose(connection: WebConnection): void {
    if (connection !== this.connection) return;
    this.connection = null;
    const policy = this.options.reconnect;
    if (!policy) {
      this.setStatus('disconnected');
      this.failWaiters(new MsgTransWebError(MsgTransErrorCode.CONNECTION_CLOSED, `Connection to ${this.options.url} closed`));
      return;
    }
    // a connection that dropped soon after it was made continues the backoff instead of restarting it
    if (Date.now() - this.connectedAt > policy.maxDelay) this.attempts = 0;
    this.setStatus('reconnecting');
    this.scheduleReconnect();
  }

  /**
   * Sends one request (or, `oneWay`, an event) once there is a connection,
   * all within the call's timeout. Returns the function that cancels it.
   */
  private call(pattern: unknown, data: unknown, options: MsgTransWebCallOptions | undefined, oneWay: boolean, sink: WebReplySink): () => void {
    const wire = toWebWireRoute(pattern);
    const base = this.options.metadata;
    const target = webTarget(wire.bizType, wire.route, options?.metadata ? { ...base, ...options.metadata } : base);
    const timeout = options?.timeout ?? this.options.requestTimeout;
    if (!Number.isInteger(timeout) || timeout < 0 || timeout > MAX_TIMER_MS) {
      throw invalidOption(`timeout must be an integer from 0 to ${MAX_TIMER_MS}, got ${String(timeout)}`);
    }
    let connection: WebConnection | null = null;
    let id = 0;
    let finished = false;
    let timer: Timer | undefined;
    let dropWaiter = noop;
    const finish = (): void => {
      finished = true;
      clearTimeout(timer);
      dropWaiter();
    };
    const fail = (error: MsgTransWebError): void => {
      if (finished) return;
      finish();
      sink.error(error);
    };
    const arm = (): void => {
      if (timeout === 0) return;
      clearTimeout(timer);
      timer = setTimeout(() => {
        if (connection && id !== 0) connection.cancel(id);
        fail(new MsgTransWebError(MsgTransErrorCode.TIMEOUT, `No reply within ${timeout} ms`));
      }, timeout);
    };
    const cancel = (): void => {
      if (finished) return;
      finish();
      if (connection && id !== 0) connection.cancel(id);
    };
    arm();
    dropWaiter = this.whenConnected((live) => {
      if (finished) return;
      connection = live;
      try {
        if (oneWay) {
          live.emit(target, data);
          finish();
          sink.complete();
          return;
        }
        id = live.request(target, data, {
          next: (value) => {
            if (finished) return;
            arm();
            sink.next(value);
          },
          complete: () => {
            if (finished) return;
            finish();
            sink.complete();
          },
          error: fail,
        });
      } catch (err) {
        fail(err instanceof MsgTransWebError ? err : new MsgTransWebError(MsgTransErrorCode.BAD_PAYLOAD, `Cannot encode the data: ${(err as Error).message}`));
      }
    }, fail);
    return cancel;
  }

  /** Runs `use` with the live connection now or once there is one; returns what drops the wait. */
  private whenConnected(use: (connection: WebConnection) => void, fail: (error: MsgTransWebError) => void): () => void {
    if (this.connection) {
      use(this.connection);
      return noop;
    }
    if (this.state === 'closed') {
      fail(closedError());
      return noop;
    }
    if (this.state === 'reconnecting' && this.options.whileDisconnected === 'fail') {
      fail(new MsgTransWebError(MsgTransErrorCode.CONNECTION_CLOSED, `Not connected to ${this.options.url} (reconnecting)`));
      return noop;
    }
    if (this.waiters.size >= this.options.maxQueuedCalls) {
      fail(new MsgTransWebError(MsgTransErrorCode.QUEUE_FULL, `${this.waiters.size} calls already wait for a connection`));
      return noop;
    }
    const waiter: Waiter = { use, fail };
    this.waiters.add(waiter);
    if (this.state === 'disconnected') this.startConnecting();
    return () => this.waiters.delete(waiter);
  }

  private startConnecting(): void {
    this.setStatus('connecting');
    this.open().then(
      (connection) => this.activate(connection),
      (err: MsgTransWebError) => {
        if (this.state === 'closed') return;
        this.setStatus('disconnected');
        this.failWaiters(err);
      },
    );
  }

  private scheduleReconnect(): void {
    const policy = this.options.reconnect!;
    const base = Math.min(policy.maxDelay, policy.initialDelay * policy.factor ** this.attempts);
    const delay = base * (1 + policy.jitter * (2 * Math.random() - 1));
    this.reconnectTimer = setTimeout(() => this.reconnectNow(), delay);
  }

  private reconnectNow(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.attempts++;
    this.open().then(
      (connection) => this.activate(connection),
      (err: MsgTransWebError) => {
        if (this.state === 'closed') return;
        // refused credentials will be refused again: give up, like running out of attempts
        if (err.code === MsgTransErrorCode.AUTH_FAILED || this.attempts >= this.options.reconnect!.maxAttempts) {
          this.setStatus('disconnected');
          this.failWaiters(err);
          return;
        }
        this.scheduleReconnect();
      },
    );
  }

  private activate(connection: WebConnection): void {
    if (this.state === 'closed') {
      connection.close();
      return;
    }
    this.connection = connection;
    if (connection.closed) {
      // it dropped between being accepted and being handed over
      this.onClose(connection);
      return;
    }
    this.connectedAt = Date.now();
    this.setStatus('connected');
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) waiter.use(connection);
  }

  /** Opens a WebSocket and, with `credentials`, has them accepted (PROTOCOL.md, Authentication). */
  private open(): Promise<WebConnection> {
    const { url, connectTimeout, credentials } = this.options;
    return new Promise((resolve, reject) => {
      let socket: WebSocketLike;
      try {
        socket = new this.options.WebSocket(url);
      } catch (err) {
        reject(new MsgTransWebError(MsgTransErrorCode.CONNECT_FAILED, `Cannot connect to ${url}: ${(err as Error).message}`));
        return;
      }
      socket.binaryType = 'arraybuffer';
      this.opening = socket;
      let connection: WebConnection | undefined;
      let settled = false;
      const settle = (error: MsgTransWebError | undefined): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (this.opening === socket) this.opening = null;
        if (!error && this.state === 'closed') error = closedError();
        if (!error) return resolve(connection!);
        if (connection) connection.close();
        else socket.close();
        reject(error);
      };
      const timer =
        connectTimeout > 0
          ? setTimeout(() => settle(new MsgTransWebError(MsgTransErrorCode.CONNECT_FAILED, `No connection to ${url} within ${connectTimeout} ms`)), connectTimeout)
          : undefined;
      socket.onerror = noop;
      socket.onclose = (event: { code: number }) =>
        settle(new MsgTransWebError(MsgTransErrorCode.CONNECT_FAILED, `Cannot connect to ${url} (WebSocket close ${event.code})`));
      socket.onopen = () => {
        connection = new WebConnection(socket, this.options, this);
        if (credentials === undefined) return settle(undefined);
        connection.request(AUTH_TARGET, credentials, {
          next: () => settle(undefined),
          complete: noop,
          error: (err) =>
            settle(
              err.code === MsgTransErrorCode.REMOTE_ERROR
                ? new MsgTransWebError(MsgTransErrorCode.AUTH_FAILED, `${url} refused the credentials: ${err.message}`, err.payload)
                : err,
            ),
        });
      };
    });
  }

  private failWaiters(error: MsgTransWebError): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) waiter.fail(error);
  }

  private setStatus(status: MsgTransWebStatus): void {
    if (this.state === status) return;
    this.state = status;
    for (const listener of [...this.statusListeners]) {
      try {
        listener(status);
      } catch (err) {
        report(err);
      }
    }
  }
}

function closedError(): MsgTransWebError {
  return new MsgTransWebError(MsgTransErrorCode.CLIENT_CLOSED, 'The client was closed');
}
