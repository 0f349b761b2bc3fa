/**
 * The client's connection state machine alone: every transition and what it
 * does to calls in each state, driven by a scripted driver (no sockets).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MsgTransConnectionError, MsgTransConnectionState, MsgTransError, MsgTransErrorCode, type MsgTransSession } from '../../lib/index.js';
import {
  ConnectionStateMachine,
  type ConnectionDriver,
  type ConnectionPolicy,
} from '../../lib/client/connection-state-machine.js';
import { waitFor } from '../support/test-app.js';
import { rejection, sleep } from '../support/async.js';

const { IDLE, CONNECTING, AUTHENTICATING, CONNECTED, RECONNECTING, CLOSED } = MsgTransConnectionState;

function assertCode(err: unknown, code: string, what: string): void {
  assert.ok(err instanceof MsgTransError, `${what}: expected a MsgTransError, got ${String(err)}`);
  assert.equal((err as MsgTransError).code, code, `${what}: ${(err as Error).message}`);
}

interface Deferred<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

class FakeSession {
  closed = false;
  close(): void {
    this.closed = true;
  }
}

/** A driver whose dials and authentications the test settles by hand. */
class ScriptedDriver implements ConnectionDriver {
  readonly transitions: string[] = [];
  readonly dials: Deferred<MsgTransSession>[] = [];
  readonly auths: Deferred<unknown>[] = [];
  credentials = false;
  wants = false;

  dial(): Promise<MsgTransSession> {
    return new Promise((resolve, reject) => this.dials.push({ resolve, reject }));
  }
  authenticate(): Promise<unknown> | undefined {
    if (!this.credentials) return undefined;
    return new Promise((resolve, reject) => this.auths.push({ resolve, reject }));
  }
  wantsConnection(): boolean {
    return this.wants;
  }
  transition(from: string, to: string): void {
    this.transitions.push(`${from}>${to}`);
  }
  describeEndpoint(): string {
    return 'fake://127.0.0.1:1';
  }
}

const FAST_RECONNECT = { initialDelay: 1, maxDelay: 5, factor: 2, jitter: 0, maxAttempts: Infinity };
const refused = () => new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, 'Cannot connect: connect ECONNREFUSED');
const dropped = () => new MsgTransConnectionError(MsgTransErrorCode.CONNECT_FAILED, 'failed while presenting credentials: closed');
const authRefused = () => new MsgTransConnectionError(MsgTransErrorCode.AUTH_FAILED, 'refused the credentials');
const tick = () => new Promise((resolve) => setImmediate(resolve));

function machine(policy: Partial<ConnectionPolicy> = {}) {
  const driver = new ScriptedDriver();
  const sm = new ConnectionStateMachine(driver, {
    reconnect: FAST_RECONNECT,
    whileDisconnected: 'auto',
    maxQueuedCalls: 100,
    ...policy,
  });
  /** A call: resolves with the session or rejects, as the machine decides. */
  const call = (timeoutMs = 0) => {
    let withdraw!: () => void;
    const settled = new Promise<MsgTransSession>((resolve, reject) => (withdraw = sm.acquire(timeoutMs, resolve, reject)));
    settled.catch(() => undefined);
    return { settled, withdraw: () => withdraw() };
  };
  return { sm, driver, call };
}

const session = () => new FakeSession() as unknown as MsgTransSession;

describe('client connection state machine (scripted driver)', () => {
  test('idle > connecting > connected; a call waits, then gets the session; connected > closed', async () => {
    const { sm, driver, call } = machine();
    assert.equal(sm.state, IDLE);
    const c = call();
    assert.equal(sm.state, CONNECTING);
    assert.equal(sm.waiting, 1);
    const s = session();
    driver.dials[0].resolve(s);
    assert.equal(await c.settled, s);
    assert.equal(sm.state, CONNECTED);
    // connected: a call gets the session at once
    assert.equal(await call().settled, s);
    sm.close();
    assert.equal(sm.state, CLOSED);
    assert.ok((s as unknown as FakeSession).closed, 'close() closes the session');
    assert.deepEqual(driver.transitions, ['idle>connecting', 'connecting>connected', 'connected>closed']);
  });

  test('connecting > authenticating > connected with credentials', async () => {
    const { sm, driver, call } = machine();
    driver.credentials = true;
    const c = call();
    driver.dials[0].resolve(session());
    await tick();
    assert.equal(sm.state, AUTHENTICATING);
    driver.auths[0].resolve({ authenticated: true });
    await c.settled;
    assert.deepEqual(driver.transitions, ['idle>connecting', 'connecting>authenticating', 'authenticating>connected']);
  });

  test('connecting > idle: a failed first attempt fails the waiting calls with its cause; the next call tries again', async () => {
    const { sm, driver, call } = machine();
    const c = call();
    const cause = refused();
    driver.dials[0].reject(cause);
    assert.equal(await rejection(c.settled, 1000, 'call'), cause);
    assert.equal(sm.state, IDLE);
    call();
    assert.equal(sm.state, CONNECTING);
    assert.equal(driver.dials.length, 2);
    assert.deepEqual(driver.transitions, ['idle>connecting', 'connecting>idle', 'idle>connecting']);
  });

  test('connecting > reconnecting > connecting > connected: a first attempt that fails is retried when something wants the connection', async () => {
    const { sm, driver } = machine();
    driver.wants = true;
    sm.wake();
    driver.dials[0].reject(refused());
    // the retry timer (1 ms) may fire before any tick under load: the transition list below shows the reconnecting state
    await waitFor(() => driver.dials.length === 2, 2000);
    assert.equal(sm.state, CONNECTING);
    driver.dials[1].resolve(session());
    await waitFor(() => sm.state === CONNECTED, 1000);
    assert.deepEqual(driver.transitions, [
      'idle>connecting',
      'connecting>reconnecting',
      'reconnecting>connecting',
      'connecting>connected',
    ]);
  });

  test('connected > reconnecting: after a drop, a call waits until an attempt fails; a withdrawn call frees its place', async () => {
    const { sm, driver, call } = machine({ reconnect: { ...FAST_RECONNECT, initialDelay: 60_000, maxDelay: 60_000 } });
    const s = session();
    call();
    driver.dials[0].resolve(s);
    await waitFor(() => sm.state === CONNECTED, 1000);
    sm.sessionClosed(s);
    assert.equal(sm.state, RECONNECTING);
    // no attempt has failed yet: the call waits
    const waiting = call();
    assert.equal(sm.waiting, 1);
    waiting.withdraw();
    assert.equal(sm.waiting, 0, 'a withdrawn call frees its place');
    assert.deepEqual(driver.transitions.slice(-1), ['connected>reconnecting']);
  });

  test("authenticating > reconnecting: a connection failure while authenticating is retried; 'auto' calls fail with its cause meanwhile", async () => {
    const { sm, driver, call } = machine();
    driver.credentials = true;
    driver.wants = true;
    const c = call();
    driver.dials[0].resolve(session());
    await tick();
    const cause = dropped();
    driver.auths[0].reject(cause);
    assert.equal(await rejection(c.settled, 1000, 'call'), cause);
    // (the 1 ms retry may already be connecting again: the transition is what matters)
    assert.ok(driver.transitions.includes('authenticating>reconnecting'));
    const fast = await rejection(call().settled, 1000, 'call while attempts fail');
    assertCode(fast, MsgTransErrorCode.CONNECT_FAILED, 'fail fast');
    assert.equal((fast as Error).cause, cause);
    await waitFor(() => driver.dials.length === 2, 2000);
    driver.dials[1].resolve(session());
    await waitFor(() => driver.auths.length === 2, 1000);
    driver.auths[1].resolve({});
    await waitFor(() => sm.state === CONNECTED, 1000);
    assert.ok(driver.transitions.includes('authenticating>reconnecting'));
  });

  test('authenticating > idle: a refusal fails calls with AUTH_FAILED and stops reconnecting', async () => {
    const { sm, driver, call } = machine();
    driver.credentials = true;
    const s = session();
    call();
    driver.dials[0].resolve(s);
    await tick();
    driver.auths[0].resolve({});
    await waitFor(() => sm.state === CONNECTED, 1000);
    sm.sessionClosed(s);
    await waitFor(() => driver.dials.length === 2, 2000);
    driver.dials[1].resolve(session());
    await waitFor(() => driver.auths.length === 2, 1000);
    const waiting = call();
    driver.auths[1].reject(authRefused());
    assertCode(await rejection(waiting.settled, 1000, 'call'), MsgTransErrorCode.AUTH_FAILED, 'refused');
    assert.equal(sm.state, IDLE);
    await sleep(50);
    assert.equal(driver.dials.length, 2, 'no attempt after a refusal');
    assert.ok(driver.transitions.includes('authenticating>idle'));
  });

  test("whileDisconnected 'wait': calls wait through failed attempts, bounded by their timeout; 'fail' fails at once", async () => {
    const wait = machine({ whileDisconnected: 'wait' });
    const c = wait.call(100);
    wait.driver.dials[0].reject(refused());
    await tick();
    assert.equal(wait.sm.state, RECONNECTING, "'wait' retries for the waiting call");
    const timedOut = await rejection(c.settled, 2000, 'waiting call');
    assertCode(timedOut, MsgTransErrorCode.CONNECT_FAILED, 'wait timeout');
    assert.match((timedOut as Error).message, /within the call's 100 ms timeout/);
    assert.equal(wait.sm.waiting, 0);
    wait.sm.close();

    const fail = machine({ whileDisconnected: 'fail' });
    const s = session();
    fail.call();
    fail.driver.dials[0].resolve(s);
    await waitFor(() => fail.sm.state === CONNECTED, 1000);
    fail.sm.sessionClosed(s);
    assertCode(await rejection(fail.call().settled, 1000, 'call'), MsgTransErrorCode.CONNECTION_CLOSED, "'fail'");
    fail.sm.close();
  });

  test('connected > idle without reconnect; reconnecting > idle when attempts run out', async () => {
    const once = machine({ reconnect: null });
    const s = session();
    once.call();
    once.driver.dials[0].resolve(s);
    await waitFor(() => once.sm.state === CONNECTED, 1000);
    once.sm.sessionClosed(s);
    assert.equal(once.sm.state, IDLE);

    const limited = machine({ reconnect: { ...FAST_RECONNECT, maxAttempts: 2 } });
    limited.driver.wants = true;
    limited.sm.wake();
    limited.driver.dials[0].reject(refused());
    await waitFor(() => limited.driver.dials.length === 2, 2000);
    limited.driver.dials[1].reject(refused());
    await tick();
    assert.equal(limited.sm.state, IDLE);
    assert.deepEqual(limited.driver.transitions, [
      'idle>connecting',
      'connecting>reconnecting',
      'reconnecting>connecting',
      'connecting>idle',
    ]);
  });

  test('connecting, authenticating and reconnecting > closed: waiting calls fail with CLIENT_CLOSED, late connections are closed', async () => {
    const connecting = machine();
    const c1 = connecting.call();
    connecting.sm.close();
    assertCode(await rejection(c1.settled, 1000, 'call'), MsgTransErrorCode.CLIENT_CLOSED, 'closed while connecting');
    const late = new FakeSession();
    connecting.driver.dials[0].resolve(late as unknown as MsgTransSession);
    await waitFor(() => late.closed, 1000);
    assert.equal(connecting.sm.state, CLOSED);

    const authenticating = machine();
    authenticating.driver.credentials = true;
    const c2 = authenticating.call();
    const candidate = new FakeSession();
    authenticating.driver.dials[0].resolve(candidate as unknown as MsgTransSession);
    await tick();
    assert.equal(authenticating.sm.state, AUTHENTICATING);
    authenticating.sm.close();
    assert.ok(candidate.closed, 'the connection being authenticated is closed');
    assertCode(await rejection(c2.settled, 1000, 'call'), MsgTransErrorCode.CLIENT_CLOSED, 'closed while authenticating');
    authenticating.driver.auths[0].resolve({});
    await tick();
    assert.equal(authenticating.sm.state, CLOSED, 'a late acceptance is ignored');

    const reconnecting = machine({ whileDisconnected: 'wait', reconnect: { ...FAST_RECONNECT, initialDelay: 60_000, maxDelay: 60_000 } });
    const c3 = reconnecting.call();
    reconnecting.driver.dials[0].reject(refused());
    await tick();
    assert.equal(reconnecting.sm.state, RECONNECTING);
    reconnecting.sm.close();
    assertCode(await rejection(c3.settled, 1000, 'call'), MsgTransErrorCode.CLIENT_CLOSED, 'closed while reconnecting');

    // closed > connecting: a call after close() connects again
    reconnecting.call();
    assert.equal(reconnecting.sm.state, CONNECTING);
    assert.deepEqual(authenticating.driver.transitions, ['idle>connecting', 'connecting>authenticating', 'authenticating>closed']);
    assert.deepEqual(reconnecting.driver.transitions.slice(-2), ['reconnecting>closed', 'closed>connecting']);
    reconnecting.sm.close();
  });

  test('idle > closed, and close() twice stays closed', () => {
    const { sm, driver } = machine();
    sm.close();
    sm.close();
    assert.equal(sm.state, CLOSED);
    assert.deepEqual(driver.transitions, ['idle>closed', 'closed>closed']);
    assert.equal(driver.dials.length, 0, 'closing never connects');
  });

  test('sessions that drop right after connecting keep growing the backoff', async () => {
    const { sm, driver, call } = machine({ reconnect: { initialDelay: 20, maxDelay: 10_000, factor: 2, jitter: 0, maxAttempts: Infinity } });
    call();
    const gaps: number[] = [];
    let droppedAt = 0;
    for (let i = 0; i < 4; i++) {
      const s = session();
      if (i > 0) gaps.push(Date.now() - droppedAt);
      driver.dials[i].resolve(s);
      await waitFor(() => sm.state === CONNECTED, 1000);
      droppedAt = Date.now();
      sm.sessionClosed(s);
      await waitFor(() => driver.dials.length === i + 2, 5000);
    }
    sm.close();
    // delays of 20, 40, 80 ms after the second, third and fourth drop: each at least the last
    assert.ok(gaps[2] >= 70, `delays ${gaps.join(', ')} ms`);
    assert.ok(gaps[2] >= gaps[0], `delays ${gaps.join(', ')} ms`);
  });

  test('maxQueuedCalls bounds the waiting calls; a timed-out call frees its place', async () => {
    const { sm, call } = machine({ maxQueuedCalls: 1 });
    const first = call(50);
    assertCode(await rejection(call().settled, 1000, 'second call'), MsgTransErrorCode.QUEUE_FULL, 'queue full');
    await rejection(first.settled, 1000, 'first call');
    assert.equal(sm.waiting, 0);
    call();
    assert.equal(sm.waiting, 1);
    sm.close();
  });
});

