import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import { MsgTransError } from '../errors/msgtrans-error.js';
import { MsgTransConnectionState } from '../interfaces/msgtrans-events.interface.js';
import type { MsgTransReconnectOptions } from '../interfaces/msgtrans-options.interface.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';

/** What the state machine asks of its client. */
export interface ConnectionDriver {
  /** Opens a transport connection as a session. A rejection is a connection failure. */
  dial(): Promise<MsgTransSession>;
  /**
   * Presents the credentials on a fresh session; undefined when there are
   * none. Rejects with an `ERR_MSGTRANS_AUTH_FAILED` error when the server
   * refused them; any other rejection is a connection failure.
   */
  authenticate(session: MsgTransSession): Promise<unknown> | undefined;
  /** True while something needs the connection even with no call waiting (push subscribers, `keepConnected`). */
  wantsConnection(): boolean;
  /** Every state change, with the error that caused it when there is one. */
  transition(from: MsgTransConnectionState, to: MsgTransConnectionState, error: Error | undefined): void;
  /** The peer as `scheme://host:port`, for messages. */
  describeEndpoint(): string;
}

/** How the state machine treats calls and failures; resolved client options. */
export interface ConnectionPolicy {
  reconnect: Required<MsgTransReconnectOptions> | null;
  whileDisconnected: 'auto' | 'wait' | 'fail';
  maxQueuedCalls: number;
}

/** A call waiting for a connection. */
interface Waiter {
  ready(session: MsgTransSession): void;
  fail(error: Error): void;
  timer: NodeJS.Timeout | null;
}

const { IDLE, CONNECTING, AUTHENTICATING, CONNECTED, RECONNECTING, CLOSED } = MsgTransConnectionState;
const NOTHING_TO_WITHDRAW = (): void => undefined;

/**
 * The client's connection as an explicit state machine:
 *
 * ```
 * idle ─► connecting ─► authenticating ─► connected ─► reconnecting ─► connecting …
 *              │               │                           ▲
 *              └──── failed ───┴── (retried) ──────────────┘
 * any ─► closed (close()); closed/idle ─► connecting (a call, connect(), a push subscriber)
 * ```
 *
 * {@link acquire} is the one place that decides what happens to a call in
 * each state; every transition goes through {@link enter}.
 */
export class ConnectionStateMachine {
  private current: MsgTransConnectionState = IDLE;
  private session: MsgTransSession | null = null;
  // the session of the attempt under way, until it is authenticated
  private candidate: MsgTransSession | null = null;
  private readonly waiters = new Set<Waiter>();
  // Bumped by every attempt and by close(): an attempt that completes late is discarded.
  private attemptId = 0;
  private timer: NodeJS.Timeout | null = null;
  // In a reconnection series: after a drop, or a failed first attempt that is retried.
  private retrying = false;
  // Why the last attempt of the series failed; cleared once one succeeds.
  private lastFailure: Error | null = null;
  // attempts made in the series, connected or not; carried across short-lived sessions so the backoff keeps growing
  private attempts = 0;
  private connectedAt = 0;

  constructor(
    private readonly driver: ConnectionDriver,
    private readonly policy: ConnectionPolicy,
  ) {}

  get state(): MsgTransConnectionState {
    return this.current;
  }

  /** The session when connected, else null. */
  get connected(): MsgTransSession | null {
    return this.current === CONNECTED ? this.session : null;
  }

  /** True between a failed attempt and the next success: calls in 'auto' mode fail at once. */
  get failing(): boolean {
    return this.current !== CONNECTED && this.lastFailure !== null;
  }

  /** Calls waiting for a connection. */
  get waiting(): number {
    return this.waiters.size;
  }

  /**
   * Hands a call its session: at once when connected, else once connected
   * (starting a connection if none is under way), unless the state says to
   * fail it. `timeoutMs` (0: none) bounds the wait. Returns a function that
   * withdraws a waiting call, freeing its place in the queue.
   */
  acquire(timeoutMs: number, ready: (session: MsgTransSession) => void, fail: (error: Error) => void): () => void {
    switch (this.current) {
      case CONNECTED:
        ready(this.session!);
        return NOTHING_TO_WITHDRAW;
      case IDLE:
      case CLOSED:
        this.startAttempt();
        break;
      default:
        // connecting, authenticating or reconnecting
        if (this.retrying && this.policy.whileDisconnected === 'fail') {
          failSoon(fail, this.notConnected());
          return NOTHING_TO_WITHDRAW;
        }
        // A refused connection is an answer: say it now rather than wait for the next attempt.
        if (this.lastFailure && this.policy.whileDisconnected === 'auto') {
          failSoon(fail, this.stillFailing(this.lastFailure));
          return NOTHING_TO_WITHDRAW;
        }
    }
    if (this.waiters.size >= this.policy.maxQueuedCalls) {
      failSoon(
        fail,
        new MsgTransConnectionError(MsgTransErrorCode.QUEUE_FULL, `${this.waiters.size} calls already wait for a connection`),
      );
      return NOTHING_TO_WITHDRAW;
    }
    const waiter: Waiter = { ready, fail, timer: null };
    if (timeoutMs > 0) {
      waiter.timer = setTimeout(() => {
        this.waiters.delete(waiter);
        fail(this.waitTimedOut(timeoutMs));
      }, timeoutMs);
      waiter.timer.unref();
    }
    this.waiters.add(waiter);
    return () => {
      if (this.waiters.delete(waiter) && waiter.timer) clearTimeout(waiter.timer);
    };
  }

  /** Starts connecting if nothing is under way (a push subscriber appeared). */
  wake(): void {
    if (this.current === IDLE || this.current === CLOSED) this.startAttempt();
  }

  /** Closes the connection or ends the attempt under way; waiting calls fail with `ERR_MSGTRANS_CLIENT_CLOSED`. */
  close(): void {
    this.attemptId++;
    this.clearTimer();
    this.retrying = false;
    this.lastFailure = null;
    this.attempts = 0;
    const session = this.session ?? this.candidate;
    this.session = null;
    this.candidate = null;
    this.enter(CLOSED, undefined);
    this.settleWaiters(closedError());
    session?.close(undefined, closedError());
  }

  /** The client's session callback: a session went away. */
  sessionClosed(session: MsgTransSession): void {
    // a candidate's close fails its authentication, which handles it
    if (session !== this.session) return;
    this.session = null;
    const policy = this.policy.reconnect;
    if (!policy) {
      this.attempts = 0;
      this.enter(IDLE, undefined);
      return;
    }
    // A session that dropped soon after it was made (a server that accepts,
    // then refuses) continues the backoff instead of restarting it.
    if (Date.now() - this.connectedAt > policy.maxDelay) this.attempts = 0;
    this.retrying = true;
    this.scheduleRetry(undefined);
  }

  private startAttempt(): void {
    this.clearTimer();
    const id = ++this.attemptId;
    this.enter(CONNECTING, undefined);
    new Promise<MsgTransSession>((resolve) => resolve(this.driver.dial())).then(
      (session) => {
        if (id !== this.attemptId) {
          session.close(undefined, closedError());
          return;
        }
        const auth = this.driver.authenticate(session);
        if (!auth) {
          this.becomeConnected(session);
          return;
        }
        this.candidate = session;
        this.enter(AUTHENTICATING, undefined);
        auth.then(
          () => {
            if (id === this.attemptId) this.becomeConnected(session);
          },
          (err: Error) => {
            if (id !== this.attemptId) return;
            this.candidate = null;
            session.close();
            this.attemptFailed(err);
          },
        );
      },
      (err: Error) => {
        if (id === this.attemptId) this.attemptFailed(err);
      },
    );
  }

  private becomeConnected(session: MsgTransSession): void {
    if (session.closed) {
      this.attemptFailed(
        new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, `${this.driver.describeEndpoint()} closed the connection at once`),
      );
      return;
    }
    this.candidate = null;
    this.session = session;
    this.retrying = false;
    this.lastFailure = null;
    this.connectedAt = Date.now();
    this.enter(CONNECTED, undefined);
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) {
      if (waiter.timer) clearTimeout(waiter.timer);
      waiter.ready(session);
    }
  }

  /** Ends a series of attempts: back to idle, and every waiting call fails with `error`. */
  private giveUp(error: Error): void {
    this.retrying = false;
    this.lastFailure = null;
    this.attempts = 0;
    this.enter(IDLE, error);
    this.settleWaiters(error);
  }

  /** The one place a failed attempt is judged: refused credentials end it; anything else may be retried. */
  private attemptFailed(error: Error): void {
    if (error instanceof MsgTransError && error.code === MsgTransErrorCode.AUTH_FAILED) {
      this.giveUp(error);
      return;
    }
    // a failed first attempt is the first of a series
    if (!this.retrying) this.attempts = 1;
    const policy = this.policy.reconnect;
    const waitForReady = this.policy.whileDisconnected === 'wait';
    const retry =
      policy !== null &&
      this.attempts < policy.maxAttempts &&
      (this.retrying || this.driver.wantsConnection() || (waitForReady && this.waiters.size > 0));
    if (!retry) {
      this.giveUp(error);
      return;
    }
    this.retrying = true;
    this.lastFailure = error;
    if (!waitForReady) this.settleWaiters(error);
    this.scheduleRetry(error);
  }

  private scheduleRetry(error: Error | undefined): void {
    const policy = this.policy.reconnect!;
    this.enter(RECONNECTING, error);
    const base = Math.min(policy.maxDelay, policy.initialDelay * policy.factor ** this.attempts);
    const delay = base * (1 + policy.jitter * (2 * Math.random() - 1));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.attempts++;
      this.startAttempt();
    }, Math.max(0, delay));
    // a client waiting to reconnect must not keep the process alive by itself
    this.timer.unref();
  }

  private enter(to: MsgTransConnectionState, error: Error | undefined): void {
    const from = this.current;
    this.current = to;
    this.driver.transition(from, to, error);
  }

  private settleWaiters(error: Error): void {
    if (this.waiters.size === 0) return;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const waiter of waiters) {
      if (waiter.timer) clearTimeout(waiter.timer);
      waiter.fail(error);
    }
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private notConnected(): MsgTransConnectionError {
    return new MsgTransConnectionError(
      MsgTransErrorCode.CONNECTION_CLOSED,
      `Not connected to ${this.driver.describeEndpoint()} (reconnecting)`,
      this.lastFailure ? { cause: this.lastFailure } : undefined,
    );
  }

  private stillFailing(cause: Error): MsgTransConnectionError {
    return new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, `${cause.message} (retrying in the background)`, {
      cause,
    });
  }

  private waitTimedOut(timeoutMs: number): MsgTransConnectionError {
    const why = this.lastFailure ? `; last attempt: ${this.lastFailure.message}` : '';
    return new MsgTransConnectionError(
      MsgTransErrorCode.CONNECT_FAILED,
      `No connection to ${this.driver.describeEndpoint()} within the call's ${timeoutMs} ms timeout (${this.current}${why})`,
      this.lastFailure ? { cause: this.lastFailure } : undefined,
    );
  }
}

function closedError(): MsgTransConnectionError {
  return new MsgTransConnectionError(MsgTransErrorCode.CLIENT_CLOSED, 'Client was closed while the request was pending');
}

// A call refused without waiting still fails asynchronously, as Observables
// and Promises are expected to, and never in a loop that starves I/O.
function failSoon(fail: (error: Error) => void, error: Error): void {
  setImmediate(fail, error);
}
