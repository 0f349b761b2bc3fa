import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Logger, ServiceUnavailableException } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { lastValueFrom } from 'rxjs';
import { HEALTH_ROUTE, MsgTransClient, MsgTransServer, type MsgTransHealthReply } from '../../lib/index.js';
import { MsgTransHealthIndicator } from '../../lib/terminus/index.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { startMsgTrans, waitFor } from '../support/test-app.js';
import { rejection, within } from '../support/async.js';

const clients: MsgTransClient[] = [];
function newClient(options: ConstructorParameters<typeof MsgTransClient>[0]): MsgTransClient {
  const client = new MsgTransClient(options);
  clients.push(client);
  return client;
}
const health = (client: MsgTransClient, service?: string) =>
  within(lastValueFrom(client.send<MsgTransHealthReply>(HEALTH_ROUTE, service === undefined ? {} : { service })), 5000, 'health');

before(() => Logger.overrideLogger(false));
after(() => clients.forEach((c) => c.close()));

for (const protocol of PROTOCOL_CASES) {
  describe(`msgtrans.health over ${protocol.name}`, () => {
    it('every server answers, per named check, with no user handler', async () => {
      const certs = await testCertificates();
      const running = await startMsgTrans({
        ...protocol.server(certs),
        healthChecks: {
          db: () => true,
          cache: async () => false,
          broken: () => {
            throw new Error('disk on fire');
          },
        },
      });
      try {
        const client = newClient(protocol.client(running.url, certs));
        assert.deepEqual(await health(client), { status: 'SERVING', service: '' });
        assert.deepEqual(await health(client, 'db'), { status: 'SERVING', service: 'db' });
        assert.deepEqual(await health(client, 'cache'), { status: 'NOT_SERVING', service: 'cache' });
        assert.deepEqual(await health(client, 'broken'), { status: 'NOT_SERVING', service: 'broken', reason: 'disk on fire' });
        assert.deepEqual(await health(client, 'other'), { status: 'SERVICE_UNKNOWN', service: 'other' });
        assert.deepEqual(await running.server.healthStatus(), { status: 'SERVING', service: '' });
      } finally {
        await running.close();
      }
    });
  });
}

describe('msgtrans.health and authentication', () => {
  const refuseAll = () => false;

  it('by default a probe is answered only once the connection is accepted', async () => {
    const running = await startMsgTrans({ listen: 'tcp://127.0.0.1:0', authenticate: refuseAll });
    try {
      const client = newClient({ url: running.url });
      const err = await rejection(lastValueFrom(client.send(HEALTH_ROUTE, {})), 5000, 'health');
      assert.match(JSON.stringify(err), /Authentication failed/);
    } finally {
      await running.close();
    }
  });

  it('healthBeforeAuth answers probes from connections not accepted yet', async () => {
    const running = await startMsgTrans({ listen: 'tcp://127.0.0.1:0', authenticate: refuseAll, healthBeforeAuth: true });
    try {
      const client = newClient({ url: running.url });
      assert.deepEqual(await health(client), { status: 'SERVING', service: '' });
      // the probe reached no handler: other requests are still refused
      const err = await rejection(lastValueFrom(client.send('echo', 1)), 5000, 'echo');
      assert.match(JSON.stringify(err), /Authentication failed/);
    } finally {
      await running.close();
    }
  });

  it('rejects malformed health options', () => {
    assert.throws(() => new MsgTransServer({ listen: 'tcp://127.0.0.1:0', healthChecks: { '': () => true } }), /healthChecks/);
    assert.throws(() => new MsgTransServer({ listen: 'tcp://127.0.0.1:0', healthBeforeAuth: 'yes' as never }), /healthBeforeAuth/);
  });
});

describe('MsgTransHealthIndicator in a Terminus HealthCheckService', () => {
  let service: HealthCheckService;
  let indicator: MsgTransHealthIndicator;

  before(async () => {
    const module = await Test.createTestingModule({ imports: [TerminusModule], providers: [MsgTransHealthIndicator] })
      .setLogger(new Logger())
      .compile();
    service = module.get(HealthCheckService);
    indicator = module.get(MsgTransHealthIndicator);
  });

  /** The check's result, or the details of the 503 it throws. */
  async function check(probe: () => Promise<unknown>): Promise<{ status: string; details: Record<string, { status: string; reason?: string }> }> {
    try {
      return (await within(service.check([probe as never]), 10_000, 'health check')) as never;
    } catch (err) {
      assert.ok(err instanceof ServiceUnavailableException, String(err));
      return err.getResponse() as never;
    }
  }

  it('up for a live server (by url and by client), down with the reason for a dead one', async () => {
    const certs = await testCertificates();
    const tls = PROTOCOL_CASES[1];
    const running = await startMsgTrans(tls.server(certs));
    const url = running.url;
    try {
      const byUrl = await check(() => indicator.isHealthy('orders', { url, tls: { ca: certs.ca } }, { timeout: 3000 }));
      assert.equal(byUrl.status, 'ok');
      assert.equal(byUrl.details.orders.status, 'up');
      const client = newClient(tls.client(url, certs));
      const byClient = await check(() => indicator.isHealthy('orders', { client }, { timeout: 3000 }));
      assert.equal(byClient.details.orders.status, 'up');
    } finally {
      await running.close();
    }
    const dead = await check(() => indicator.isHealthy('orders', { url, tls: { ca: certs.ca } }, { timeout: 2000 }));
    assert.equal(dead.status, 'error');
    assert.equal(dead.details.orders.status, 'down');
    assert.ok(dead.details.orders.reason, 'a reason is given');
  });

  it('down with NOT_SERVING for a server draining on shutdown', async () => {
    const running = await startMsgTrans({ listen: 'tcp://127.0.0.1:0', shutdownTimeout: 5000 });
    const client = newClient({ url: running.url });
    // a request in flight keeps the server draining
    const inFlight = lastValueFrom(client.send('never', {})).catch(() => undefined);
    await waitFor(() => running.server.getSessions().size === 1 && [...running.server.getSessions().values()][0].activeRequests === 1, 5000);
    const closing = running.close();
    try {
      const draining = await check(() => indicator.isHealthy('orders', { client }, { timeout: 2000 }));
      assert.equal(draining.details.orders.status, 'down');
      assert.match(draining.details.orders.reason ?? '', /NOT_SERVING/);
    } finally {
      client.close();
      await closing;
      await inFlight;
    }
  });

  it('down when the service is slower than the timeout', async () => {
    const running = await startMsgTrans({ listen: 'tcp://127.0.0.1:0', healthChecks: { slow: () => new Promise((r) => setTimeout(() => r(true), 3000)) } });
    try {
      const slow = await check(() => indicator.isHealthy('orders', { url: running.url }, { timeout: 300, service: 'slow' }));
      assert.equal(slow.details.orders.status, 'down');
      assert.match(slow.details.orders.reason ?? '', /No reply within/);
    } finally {
      await running.close();
    }
  });
});
