/**
 * QUIC liveness with default settings (issue 10): a call to a killed server
 * fails within a second (ICMP refusal on the client's connected socket,
 * confirmed by a probe); a server restarted before the client noticed
 * answers the old connection with a stateless reset (its key is derived
 * from the TLS key, so it survives the restart); a client with nothing to
 * talk to fails within a second with a cause that says so; after a restart
 * the client serves again within a second of the server being back.
 * Servers run in child processes (SIGKILL), real sockets over loopback.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Logger } from '@nestjs/common';
import { lastValueFrom } from 'rxjs';
import { MsgTransClient, MsgTransConnectionError, MsgTransErrorCode, type MsgTransError } from '../../lib/index.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { testCertificates } from '../support/protocols.js';
import { freePort, RestartableServer } from '../support/restartable-server.js';
import { rejection, sleep, within } from '../support/async.js';

// Issue 10's targets are 1 s; the mechanisms take milliseconds on loopback
// (a refusal, a stateless reset), but a shared 2-core machine may be slow to
// schedule a child process or a reconnection, so the bound is generous.
// Without these mechanisms each wait is the idle timeout (30 s) or the
// connect timeout (10 s).
const TARGET_MS = 3000;

let certs: DevCertificates;
before(async () => {
  certs = await testCertificates();
  Logger.overrideLogger(false);
});

/** Calls until one is answered; resolves with the ms it took. Bounded. */
async function servingAgain(client: MsgTransClient, bound = 10_000): Promise<number> {
  const started = Date.now();
  for (;;) {
    try {
      await within(lastValueFrom(client.send('echo', 'again')), 2000, 'echo');
      return Date.now() - started;
    } catch (err) {
      if (Date.now() - started > bound) throw err;
      await sleep(10);
    }
  }
}

describe('QUIC liveness at default settings', () => {
  let server: RestartableServer;
  const clients: MsgTransClient[] = [];
  const newClient = () => {
    const client = new MsgTransClient({ url: server.url, tls: { ca: certs.ca } });
    clients.push(client);
    return client;
  };

  before(async () => {
    server = new RestartableServer({
      url: `quic://127.0.0.1:${await freePort('udp')}`,
      tls: { key: certs.serverKey, cert: certs.serverCert },
    });
    await server.start();
  });

  after(async () => {
    for (const c of clients) c.close();
    await server.stop();
  });

  test('a call to a killed server fails within 1 s; the client serves again within 1 s of the restart', async () => {
    const client = newClient();
    assert.equal(await within(lastValueFrom(client.send('echo', 'up')), 10_000, 'echo'), 'up');
    await server.kill();
    const started = Date.now();
    const error = await rejection(lastValueFrom(client.send('echo', 'down')), 5000, 'call to the killed server');
    const failedAfter = Date.now() - started;
    assert.ok(error instanceof MsgTransConnectionError, String(error));
    assert.ok(failedAfter < TARGET_MS, `failed after ${failedAfter} ms`);
    await server.start();
    const back = await servingAgain(client);
    assert.ok(back < TARGET_MS, `serving again ${back} ms after the server was back`);
  });

  test('a server restarted unnoticed answers the old connection with a stateless reset', async () => {
    const client = newClient();
    assert.equal(await within(lastValueFrom(client.send('echo', 'up')), 10_000, 'echo'), 'up');
    // the client sends nothing while the server is away: it still holds the old connection
    await server.kill();
    await server.start();
    const started = Date.now();
    const outcome = await within(
      lastValueFrom(client.send('echo', 'to the new process')).then(
        (value) => ({ value }),
        (error: MsgTransError) => ({ error }),
      ),
      5000,
      'first call after the restart',
    );
    const settledAfter = Date.now() - started;
    // Without the reset this call would wait for the idle timeout (30 s).
    assert.ok(settledAfter < TARGET_MS, `settled after ${settledAfter} ms`);
    if ('error' in outcome) {
      if (outcome.error.code === MsgTransErrorCode.CONNECT_FAILED) {
        // the client noticed the kill by itself (its packet drew a refusal before the restart) and a
        // reconnection attempt failed while the server was away: the call failed fast with that cause
        assert.ok(outcome.error.cause, 'a fast failure names its cause');
      } else {
        assert.equal(outcome.error.code, MsgTransErrorCode.CONNECTION_CLOSED);
        assert.match(outcome.error.message, /stateless reset/);
      }
    }
    const back = await servingAgain(client);
    assert.ok(back < TARGET_MS, `serving again after ${back} ms`);
  });
});

describe('QUIC client with nothing to talk to', () => {
  test('connecting to a port where nothing listens fails within 1 s, saying so', async () => {
    const port = await freePort('udp');
    const client = new MsgTransClient({ url: `quic://127.0.0.1:${port}`, tls: { ca: certs.ca }, reconnect: false });
    try {
      const started = Date.now();
      const error = await rejection(client.connect(), 5000, 'connect to nothing');
      const took = Date.now() - started;
      assert.ok(error instanceof MsgTransConnectionError, String(error));
      assert.equal((error as MsgTransError).code, MsgTransErrorCode.CONNECT_FAILED);
      assert.match((error as Error).message, /refused|nothing is listening/i);
      assert.ok(took < TARGET_MS, `failed after ${took} ms`);
    } finally {
      client.close();
    }
  });
});
