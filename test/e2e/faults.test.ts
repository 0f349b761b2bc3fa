/**
 * The server process dies (SIGKILL) and comes back on the same port while
 * clients are talking to it, on tcp, ws and quic: pending requests fail at
 * once and typed, clients reconnect by themselves, nothing is answered twice
 * or to the wrong request, and calls made during the outage wait or fail as
 * configured. Also: the sample server stops cleanly on SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Logger } from '@nestjs/common';
import { lastValueFrom, type Subscription } from 'rxjs';
import { WebSocket } from 'ws';
import {
  MsgTransClient,
  MsgTransConnectionError,
  MsgTransErrorCode,
  type MsgTransClientOptions,
  type MsgTransError,
} from '../../lib/index.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { testCertificates } from '../support/protocols.js';
import { freePort, RestartableServer } from '../support/restartable-server.js';
import { waitFor } from '../support/test-app.js';
import { rejection, sleep, within } from '../support/async.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));




function assertConnectionError(err: unknown, code: string | undefined, what: string): void {
  assert.ok(err instanceof MsgTransConnectionError, `${what}: expected a MsgTransConnectionError, got ${String(err)}`);
  if (code) assert.equal((err as MsgTransError).code, code, what);
}

/** Every status a client reports, in order. */
function trackStatus(client: MsgTransClient): { seen: string[]; last(): string | undefined; sub: Subscription } {
  const seen: string[] = [];
  const sub = client.status.subscribe((s) => seen.push(s));
  return { seen, last: () => seen.at(-1), sub };
}

/** True if `expected` occurs in `seen` in this order (other entries may be between). */
function inOrder(seen: string[], expected: string[]): boolean {
  let i = 0;
  for (const s of seen) if (s === expected[i]) i++;
  return i === expected.length;
}

// ---------------------------------------------------------------------------
// protocols
// ---------------------------------------------------------------------------

interface FaultCase {
  name: string;
  portKind: 'tcp' | 'udp';
  url(port: number): string;
  secure: boolean;
  /** Client options for this protocol (liveness, timeouts). */
  client: Partial<MsgTransClientOptions>;
}

const CASES: FaultCase[] = [
  { name: 'tcp', portKind: 'tcp', url: (p) => `tcp://127.0.0.1:${p}`, secure: false, client: { connectTimeout: 5000 } },
  { name: 'ws', portKind: 'tcp', url: (p) => `ws://127.0.0.1:${p}/msgtrans`, secure: false, client: { connectTimeout: 5000 } },
  {
    name: 'quic',
    portKind: 'udp',
    url: (p) => `quic://127.0.0.1:${p}`,
    secure: true,
    // Default liveness settings: a killed server's port answers with ICMP
    // port unreachable (ECONNREFUSED on the client's connected socket, confirmed
    // by a probe), and a restarted one with a stateless reset.
    client: { connectTimeout: 6000 },
  },
];

// Upper bound on any one request in these tests: far above any reconnection here.
const REQUEST_BOUND_MS = 12_000;

let certs: DevCertificates;
before(async () => {
  certs = await testCertificates();
  // the clients log every lost connection through Nest's logger; expected here
  Logger.overrideLogger(false);
});

for (const protocol of CASES) {
  describe(`server killed and restarted over ${protocol.name}`, () => {
    let server: RestartableServer;
    const clients: MsgTransClient[] = [];
    const subscriptions: Subscription[] = [];

    const newClient = (extra: Partial<MsgTransClientOptions> = {}) => {
      const client = new MsgTransClient({
        url: server.url,
        ...(protocol.secure ? { tls: { ca: certs.ca } } : {}),
        reconnect: { initialDelay: 50, maxDelay: 500 },
        ...protocol.client,
        ...extra,
      });
      clients.push(client);
      return client;
    };

    before(async () => {
      const port = await freePort(protocol.portKind);
      server = new RestartableServer({
        url: protocol.url(port),
        tls: protocol.secure ? { key: certs.serverKey, cert: certs.serverCert } : undefined,
      });
      await server.start();
    });

    after(async () => {
      for (const s of subscriptions) s.unsubscribe();
      for (const c of clients) c.close();
      await server.stop();
    });

    test('continuous traffic: pending requests fail at once and typed, the client reconnects, no reply is doubled or misrouted', async () => {
      const client = newClient();
      const status = trackStatus(client);
      subscriptions.push(status.sub);
      await within(client.connect(), 10_000, 'first connect');

      interface Outcome {
        replies: number;
        wrong: number;
        error?: unknown;
        timedOut?: boolean;
        startedAt: number;
        settledAt?: number;
      }
      const outcomes = new Map<number, Outcome>();
      let nextId = 1;
      let flowing = true;
      const one = (id: number) =>
        new Promise<void>((resolve) => {
          const payload = { id, text: `payload-${id}-${'x'.repeat(id % 50)}` };
          const outcome: Outcome = { replies: 0, wrong: 0, startedAt: Date.now() };
          outcomes.set(id, outcome);
          let subscription: Subscription | undefined;
          const finish = () => {
            outcome.settledAt ??= Date.now();
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(() => {
            outcome.timedOut = true;
            subscription?.unsubscribe();
            finish();
          }, REQUEST_BOUND_MS);
          subscription = client.send('echo', payload).subscribe({
            next: (value) => {
              outcome.replies++;
              if (!isDeepStrictEqual(value, payload)) outcome.wrong++;
            },
            error: (err) => {
              outcome.error = err;
              finish();
            },
            complete: finish,
          });
        });
      const worker = async () => {
        while (flowing) await one(nextId++);
      };
      const successes = () => [...outcomes.values()].filter((o) => o.replies > 0 && !o.error).length;
      const workers = Array.from({ length: 8 }, worker);

      try {
        await waitFor(() => successes() >= 100, 10_000);
        // freeze the server first, so that every worker has a request pending when it dies
        server.freeze();
        await sleep(100);
        const inFlightAtKill = [...outcomes.entries()].filter(([, o]) => o.settledAt === undefined).map(([id]) => id);
        const statusesBeforeKill = status.seen.length;
        await server.kill();

        await waitFor(() => status.seen.slice(statusesBeforeKill).includes('reconnecting'), 5000);
        await waitFor(() => inFlightAtKill.every((id) => outcomes.get(id)!.settledAt !== undefined), 5000);
        const restartedAt = Date.now();
        await server.start();
        await waitFor(() => status.last() === 'connected', 15_000);
        const successesAfterRestart = successes();
        await waitFor(() => successes() >= successesAfterRestart + 100, 10_000);

        // requests pending when the server died failed without waiting for it to come back
        assert.equal(inFlightAtKill.length, 8, 'every worker had a request pending at the kill');
        for (const id of inFlightAtKill) {
          const o = outcomes.get(id)!;
          assertConnectionError(o.error, MsgTransErrorCode.CONNECTION_CLOSED, `request ${id}, pending at the kill`);
          // settled at or before the restart began (same millisecond counts: Date.now() is coarse)
          assert.ok(o.settledAt! <= restartedAt, `request ${id} failed before the server came back`);
        }
      } finally {
        flowing = false;
        await within(Promise.all(workers), REQUEST_BOUND_MS + 2000, 'traffic to stop');
      }

      let answered = 0;
      const failureCodes = new Map<string, number>();
      for (const [id, o] of outcomes) {
        assert.ok(!o.timedOut, `request ${id} hung (no reply, no error in ${REQUEST_BOUND_MS} ms)`);
        assert.equal(o.wrong, 0, `request ${id} got a reply that is not its own`);
        if (o.error === undefined) {
          assert.equal(o.replies, 1, `request ${id} answered ${o.replies} times`);
          answered++;
        } else {
          assert.equal(o.replies, 0, `request ${id} both answered and failed`);
          assertConnectionError(o.error, undefined, `request ${id}`);
          const code = (o.error as MsgTransError).code;
          failureCodes.set(code, (failureCodes.get(code) ?? 0) + 1);
        }
      }
      assert.ok(answered >= 200, `answered ${answered}`);
      assert.ok(inOrder(status.seen, ['connected', 'reconnecting', 'connected']), `statuses: ${status.seen.join(' → ')}`);
      assert.equal(server.starts, 2);
      // and the client keeps working
      assert.deepEqual(await within(lastValueFrom(client.send('echo', 'after')), 5000, 'echo after'), 'after');
    });

    test('during an outage: whileDisconnected fail / wait (maxQueuedCalls), and reconnect: false', async () => {
      const failing = newClient({ whileDisconnected: 'fail' });
      const waiting = newClient({ whileDisconnected: 'wait', maxQueuedCalls: 1 });
      const manual = newClient({ reconnect: false });
      const statuses = new Map([failing, waiting, manual].map((c) => [c, trackStatus(c)] as const));
      for (const s of statuses.values()) subscriptions.push(s.sub);
      for (const client of [failing, waiting, manual]) {
        assert.equal(await within(lastValueFrom(client.send('echo', 'up')), 10_000, 'echo before the outage'), 'up');
      }

      await server.kill();
      if (protocol.portKind === 'udp') {
        // UDP has no connection for the kernel to reset: an idle QUIC client
        // learns of a killed server when it next sends (ICMP refusal, in ms)
        // or at its next keep-alive (heartbeatInterval, 15 s by default). Any
        // packet will do; an event is dropped with the connection.
        for (const client of [failing, waiting, manual]) client.emit('nobody-listens', 0).subscribe({ error: () => undefined });
      }
      await waitFor(() => statuses.get(failing)!.last() === 'reconnecting', 5000);
      await waitFor(() => statuses.get(waiting)!.last() === 'reconnecting', 5000);
      await waitFor(() => statuses.get(manual)!.last() === 'disconnected', 5000);

      // 'fail': calls fail at once while reconnecting
      const failed = await rejection(lastValueFrom(failing.send('echo', 'while down')), 2000, "call with whileDisconnected 'fail'");
      assertConnectionError(failed, MsgTransErrorCode.CONNECTION_CLOSED, "whileDisconnected 'fail'");

      // 'wait': the first call waits, the second finds the queue full
      let waited: unknown = 'pending';
      const waitingCall = lastValueFrom(waiting.send('echo', 'queued'));
      waitingCall.then(
        (value) => (waited = value),
        (err) => (waited = err),
      );
      const overflow = await rejection(lastValueFrom(waiting.send('echo', 'one too many')), 2000, 'second waiting call');
      assertConnectionError(overflow, MsgTransErrorCode.QUEUE_FULL, 'maxQueuedCalls: 1');
      await sleep(100);
      assert.equal(waited, 'pending', 'the queued call waits for the server');

      // reconnect: false: no attempts while the server is down
      assert.ok(!statuses.get(manual)!.seen.includes('reconnecting'), 'reconnect: false never reconnects');

      await server.start();
      assert.equal(await within(waitingCall, REQUEST_BOUND_MS, 'the queued call'), 'queued', 'the queued call completes after the restart');
      await waitFor(() => statuses.get(failing)!.last() === 'connected', 15_000);
      assert.equal(await within(lastValueFrom(failing.send('echo', 'back')), 5000, 'fail-mode echo after restart'), 'back');

      // reconnect: false: still disconnected although the server is back; the next call connects
      await sleep(500);
      assert.equal(statuses.get(manual)!.last(), 'disconnected');
      assert.ok(!statuses.get(manual)!.seen.includes('reconnecting'));
      assert.equal(await within(lastValueFrom(manual.send('echo', 'on demand')), 10_000, 'call after restart'), 'on demand');
      assert.equal(statuses.get(manual)!.last(), 'connected');
    });
  });
}

// ---------------------------------------------------------------------------
// the sample on SIGTERM
// ---------------------------------------------------------------------------

describe('the sample server', () => {
  let certDir: string;
  let child: ReturnType<typeof spawn> | null = null;

  before(async () => {
    certDir = await mkdtemp(join(tmpdir(), 'msgtrans-faults-'));
  });

  after(async () => {
    child?.kill('SIGKILL');
    await rm(certDir, { recursive: true, force: true });
  });

  test('stops cleanly on SIGTERM: peers get a normal close and the process exits (code 0, or by the signal Nest re-raises)', async () => {
    const [tcpPort, wsPort, quicPort] = [await freePort('tcp'), await freePort('tcp'), await freePort('udp')];
    const proc = spawn(process.execPath, [join(root, 'dist/sample/main.js')], {
      cwd: root,
      env: {
        ...process.env,
        MSGTRANS_LISTEN: `tcp://127.0.0.1:${tcpPort},ws://127.0.0.1:${wsPort}/msgtrans,quic://127.0.0.1:${quicPort}`,
        MSGTRANS_CERT_DIR: certDir,
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let output = '';
    proc.stdout!.on('data', (chunk) => (output += chunk));
    proc.stderr!.on('data', (chunk) => (output += chunk));
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      proc.once('exit', (code, signal) => resolve({ code, signal })),
    );

    await waitFor(() => (output.match(/Listening on/g) ?? []).length >= 3 || proc.exitCode !== null, 20_000).catch(() => {
      throw new Error(`the sample did not start:\n${output}`);
    });
    assert.equal(proc.exitCode, null, output);

    // it serves, over tcp and a plain WebSocket peer that will see how the server closes
    const client = new MsgTransClient({ url: `tcp://127.0.0.1:${tcpPort}`, reconnect: false });
    try {
      assert.deepEqual(await within(lastValueFrom(client.send('echo', { hi: 1 })), 5000, 'sample echo'), { hi: 1 });
    } finally {
      client.close();
    }
    const ws = new WebSocket(`ws://127.0.0.1:${wsPort}/msgtrans`);
    await within(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), 5000, 'ws open');
    const wsClosed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    ws.on('error', () => undefined);

    proc.kill('SIGTERM');
    const { code, signal } = await within(exited, 10_000, 'the sample to exit after SIGTERM');
    child = null;
    // a process that just died would leave the peer with 1006 (abnormal closure)
    assert.equal(await within(wsClosed, 2000, 'ws close'), 1000, 'the WebSocket peer got a normal closure');
    // Nest's enableShutdownHooks() closes the app, then re-raises the signal
    // (process.kill(pid, signal)) unless given { useProcessExit: true }, which
    // exits 0; a failure during shutdown exits 1.
    assert.ok(
      (code === 0 && signal === null) || (code === null && signal === 'SIGTERM'),
      `exit code ${code}, signal ${signal}\n${output}`,
    );
    assert.doesNotMatch(output, /ERROR/, 'nothing went wrong while shutting down');
  });
});
