/**
 * A client over several replicas (issue 13): one connection per replica,
 * calls and events spread round-robin or to the least-pending replica,
 * pushes from every replica, a replica killed mid-traffic failing only its
 * own calls, restarted and used again, replicas that are down skipped,
 * retries before a request is written (and after, for idempotent
 * patterns), `dns://` names, and the options through the Nest modules.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Logger } from '@nestjs/common';
import { ClientsModule } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { firstValueFrom, lastValueFrom, type Subscription } from 'rxjs';
import {
  MsgTransClient,
  MsgTransConnectionState,
  MsgTransError,
  MsgTransErrorCode,
  MsgTransModule,
  MsgTransRecord,
  type MsgTransClientOptions,
} from '../../lib/index.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { rejection, sleep, within } from '../support/async.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { freePort, RestartableServer } from '../support/restartable-server.js';
import { startMsgTrans, waitFor } from '../support/test-app.js';

const FAST_RECONNECT = { initialDelay: 50, maxDelay: 300 };
let certs: DevCertificates;
const clients: MsgTransClient[] = [];
const cleanups: (() => Promise<unknown> | unknown)[] = [];

before(async () => {
  certs = await testCertificates();
  Logger.overrideLogger(false);
});

after(async () => {
  for (const c of clients) c.close();
  for (const cleanup of cleanups.reverse()) await cleanup();
});

function newClient(options: MsgTransClientOptions): MsgTransClient {
  const client = new MsgTransClient(options);
  clients.push(client);
  return client;
}

async function startApps(count: number, protocol = 'tcp'): Promise<Awaited<ReturnType<typeof startMsgTrans>>[]> {
  const which = PROTOCOL_CASES.find((c) => c.name === protocol)!;
  const apps = [];
  for (let i = 0; i < count; i++) {
    const app = await startMsgTrans(which.server(certs));
    cleanups.push(() => app.close().catch(() => undefined));
    apps.push(app);
  }
  return apps;
}

const sessionOf = (client: MsgTransClient) => firstValueFrom(client.send<{ sessionId: string }>('ctx', {})).then((r) => r.sessionId);
const pidOf = (client: MsgTransClient, record?: MsgTransRecord) => firstValueFrom(client.send<number>('pid', record ?? {}));

function countBy<T>(values: T[]): Map<T, number> {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}

function assertCode(err: unknown, code: string, what: string): void {
  assert.ok(err instanceof MsgTransError, `${what}: expected a MsgTransError, got ${String(err)}`);
  assert.equal(err.code, code, `${what}: ${err.message}`);
}

describe('client load balancing over replicas', () => {
  for (const protocol of ['tcp', 'ws', 'quic']) {
    test(`round-robin spreads calls evenly over three ${protocol} replicas, one connection each`, async () => {
      const apps = await startApps(3, protocol);
      const which = PROTOCOL_CASES.find((c) => c.name === protocol)!;
      const client = newClient({ ...which.client(apps[0].url, certs), url: apps.map((a) => a.url) });
      await client.connect();
      // every replica is connected in the background once the client is in use
      await waitFor(() => client.replicas().every((r) => r.state === MsgTransConnectionState.CONNECTED), 10_000);
      const ids = [];
      for (let i = 0; i < 30; i++) ids.push(await within(sessionOf(client), 10_000, `call ${i}`));
      const counts = countBy(ids);
      assert.equal(counts.size, 3, 'every replica answered');
      assert.deepEqual([...counts.values()], [10, 10, 10]);
      for (const app of apps) assert.equal(app.server.sessions.size, 1, 'one connection per replica');
      assert.equal(client.state, MsgTransConnectionState.CONNECTED);
    });
  }

  test('events go to one replica each, spread; pushes from every replica reach incoming()', async () => {
    const apps = await startApps(2);
    const client = newClient({ url: apps.map((a) => a.url) });
    const pushed: unknown[] = [];
    const sub: Subscription = client.incoming('news').subscribe((v) => pushed.push(v));
    cleanups.push(() => sub.unsubscribe());
    await waitFor(() => apps.every((a) => a.server.sessions.size === 1), 10_000);
    for (let i = 0; i < 10; i++) await lastValueFrom(client.emit('event', { i }), { defaultValue: undefined });
    await waitFor(() => apps[0].observed.events.length + apps[1].observed.events.length === 10, 5000);
    assert.equal(apps[0].observed.events.length, 5);
    assert.equal(apps[1].observed.events.length, 5);
    apps[0].server.sessions.broadcast('news', 'from A');
    apps[1].server.sessions.broadcast('news', 'from B');
    await waitFor(() => pushed.length === 2, 5000);
    assert.deepEqual(pushed.sort(), ['from A', 'from B']);
  });

  test('least-pending sends calls to the replica with fewer calls awaiting a reply; round-robin does not', async () => {
    const apps = await startApps(2);
    for (const policy of ['least-pending', 'round-robin'] as const) {
      const client = newClient({ url: apps.map((a) => a.url), loadBalancing: policy });
      await client.connect();
      await waitFor(() => client.replicas().every((r) => r.state === MsgTransConnectionState.CONNECTED), 10_000);
      // one call that never ends keeps one replica busy
      const busy = client.send('never', {}).subscribe({ error: () => undefined });
      const ids = [];
      for (let i = 0; i < 10; i++) ids.push(await within(sessionOf(client), 10_000, `${policy} call ${i}`));
      busy.unsubscribe();
      assert.equal(countBy(ids).size, policy === 'least-pending' ? 1 : 2, `${policy}: ${ids.join(' ')}`);
      client.close();
    }
  });

  test('a replica that is down is skipped (the call tries the next), and reconnected in the background once up', async () => {
    const [app] = await startApps(1);
    const port = await freePort();
    const down = new RestartableServer({ url: `tcp://127.0.0.1:${port}` });
    cleanups.push(() => down.stop());
    const client = newClient({ url: [`tcp://127.0.0.1:${port}`, app.url], reconnect: FAST_RECONNECT });
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push(await within(sessionOf(client), 10_000, `call ${i}`));
    assert.equal(countBy(ids).size, 1, 'all went to the live replica');
    assert.equal(client.state, MsgTransConnectionState.CONNECTED);
    await down.start();
    await waitFor(() => client.replicas().every((r) => r.state === MsgTransConnectionState.CONNECTED), 10_000);
    const pids = new Set<number>();
    for (let i = 0; i < 6; i++) pids.add(await within(pidOf(client), 10_000, `call ${i}`));
    assert.equal(pids.size, 2, 'the child that came up takes calls too');
    assert.ok(pids.has(process.pid));
  });

  test("whileDisconnected 'wait': a call waits for whichever replica comes up first", async () => {
    const [down, later] = [await freePort(), await freePort()];
    const server = new RestartableServer({ url: `tcp://127.0.0.1:${later}` });
    cleanups.push(() => server.stop());
    const client = newClient({
      url: [`tcp://127.0.0.1:${down}`, `tcp://127.0.0.1:${later}`],
      whileDisconnected: 'wait',
      reconnect: FAST_RECONNECT,
      requestTimeout: 20_000,
    });
    const call = pidOf(client);
    await sleep(300);
    await server.start();
    const pid = await within(call, 15_000, 'the waiting call');
    assert.notEqual(pid, process.pid);
  });

  test('retryOnConnectFailure: false fails a call whose replica refused the connection', async () => {
    const [app] = await startApps(1);
    const port = await freePort();
    const client = newClient({ url: [`tcp://127.0.0.1:${port}`, app.url], retryOnConnectFailure: false, reconnect: FAST_RECONNECT });
    // the first call waits on the first replica (nothing is connected yet), which refuses
    const err = await rejection(sessionOf(client), 10_000, 'first call');
    assertCode(err, MsgTransErrorCode.CONNECT_FAILED, 'first call');
    assert.match((err as Error).message, new RegExp(String(port)));
  });

  /** `n` replicas in child processes (so they can be killed and restarted), stopped after the test. */
  async function restartableReplicas(n: number): Promise<RestartableServer[]> {
    const servers: RestartableServer[] = [];
    for (let i = 0; i < n; i++) {
      const server = new RestartableServer({ url: `tcp://127.0.0.1:${await freePort()}` });
      cleanups.push(() => server.stop());
      await server.start();
      servers.push(server);
    }
    return servers;
  }

  test('a replica killed mid-traffic fails only its own in-flight calls; others go on; restarted, it is used again', async () => {
    const servers = await restartableReplicas(2);
    const [a] = servers;
    const client = newClient({ url: servers.map((s) => s.url), reconnect: FAST_RECONNECT });
    await client.connect();
    await waitFor(() => client.replicas().every((r) => r.state === MsgTransConnectionState.CONNECTED), 10_000);
    const before = new Set<number>();
    for (let i = 0; i < 4; i++) before.add(await pidOf(client));
    assert.equal(before.size, 2);
    // A stops answering: calls routed to it stay pending until it dies
    a.freeze();
    const calls = Array.from({ length: 10 }, () =>
      pidOf(client).then(
        (pid) => ({ pid }),
        (error: unknown) => ({ error }),
      ),
    );
    await sleep(200);
    await a.kill();
    const results = await within(Promise.all(calls), 15_000, 'calls during the kill');
    const failed = results.filter((r) => 'error' in r);
    const answered = results.filter((r) => 'pid' in r);
    assert.equal(failed.length, 5, 'round-robin put half on the killed replica');
    for (const f of failed) assertCode((f as { error: unknown }).error, MsgTransErrorCode.CONNECTION_CLOSED, 'call on the killed replica');
    assert.equal(new Set(answered.map((r) => (r as { pid: number }).pid)).size, 1);
    // new calls all go to B while A is down; the client stays connected
    const during = new Set<number>();
    for (let i = 0; i < 6; i++) during.add(await within(pidOf(client), 10_000, `call ${i} while A is down`));
    assert.equal(during.size, 1);
    assert.equal(client.state, MsgTransConnectionState.CONNECTED);
    await a.start();
    await waitFor(() => client.replicas().every((r) => r.state === MsgTransConnectionState.CONNECTED), 15_000);
    const later = new Set<number>();
    for (let i = 0; i < 6; i++) later.add(await within(pidOf(client), 10_000, `call ${i} after the restart`));
    assert.equal(later.size, 2, 'the restarted replica takes calls again');
  });

  test('idempotentPatterns: a call whose replica drops after it was written is sent again to another', async () => {
    const servers = await restartableReplicas(2);
    const client = newClient({ url: servers.map((s) => s.url), reconnect: FAST_RECONNECT, idempotentPatterns: ['pid'] });
    await client.connect();
    await waitFor(() => client.replicas().every((r) => r.state === MsgTransConnectionState.CONNECTED), 10_000);
    servers[0].freeze();
    const calls = Array.from({ length: 6 }, () => pidOf(client));
    await sleep(200);
    await servers[0].kill();
    const pids = await within(Promise.all(calls), 15_000, 'idempotent calls');
    assert.equal(new Set(pids).size, 1, 'every call answered, by the replica left');
  });

  test('dns://localhost:port connects to the addresses the name resolves to (those that listen)', async () => {
    const [app] = await startApps(1);
    const port = Number(new URL(app.url).port);
    const client = newClient({ url: `dns://localhost:${port}`, reconnect: FAST_RECONNECT, dnsRefreshInterval: 200 });
    assert.equal(await within(sessionOf(client), 10_000, 'call'), app.server.sessions.all()[0].id);
    const urls = client.replicas().map((r) => r.url);
    assert.ok(urls.includes(`tcp://127.0.0.1:${port}`), urls.join(' '));
    // re-resolution keeps the same replicas (no churn)
    const before = app.server.sessions.all()[0].id;
    await sleep(700);
    assert.equal(app.server.sessions.all()[0]?.id, before);
    assert.equal(client.state, MsgTransConnectionState.CONNECTED);
    client.close();
    assert.deepEqual(client.replicas(), []);
    // used again after close(): resolved afresh
    assert.ok(await within(sessionOf(client), 10_000, 'call after close'));
  });

  test('dns:// with an unknown name fails calls with ERR_MSGTRANS_CONNECT_FAILED', async () => {
    const client = newClient({ url: 'dns://no-such-host.invalid:1' });
    const err = await rejection(sessionOf(client), 15_000, 'call');
    assertCode(err, MsgTransErrorCode.CONNECT_FAILED, 'call');
    assert.match((err as Error).message, /DNS lookup failed/);
  });

  test('options are checked', () => {
    assert.throws(() => new MsgTransClient({ url: [] }), (e: MsgTransError) => e.code === MsgTransErrorCode.INVALID_OPTION);
    assert.throws(
      () => new MsgTransClient({ url: ['tcp://127.0.0.1:1'], loadBalancing: 'random' as never }),
      (e: MsgTransError) => e.code === MsgTransErrorCode.INVALID_OPTION,
    );
    assert.throws(
      () => new MsgTransClient({ url: ['tcp://127.0.0.1:1', 'nope://127.0.0.1:2'] }),
      (e: MsgTransError) => e.code === MsgTransErrorCode.UNKNOWN_PROTOCOL,
    );
  });

  test('through MsgTransModule and ClientsModule, the replica list and policy pass through', async () => {
    const apps = await startApps(2);
    const urls = apps.map((a) => a.url);
    const moduleRef = await Test.createTestingModule({
      imports: [
        MsgTransModule.forRoot({ clients: [{ name: 'LB', url: urls, loadBalancing: 'round-robin' }] }),
        ClientsModule.register([{ name: 'NEST_LB', customClass: MsgTransClient, options: { url: urls } }]),
      ],
    }).compile();
    cleanups.push(() => moduleRef.close());
    for (const token of ['LB', 'NEST_LB']) {
      const client = moduleRef.get<MsgTransClient>(token);
      await client.connect();
      await waitFor(() => client.replicas().every((r) => r.state === MsgTransConnectionState.CONNECTED), 10_000);
      const ids = [];
      for (let i = 0; i < 4; i++) ids.push(await sessionOf(client));
      assert.equal(countBy(ids).size, 2, token);
    }
  });
});
