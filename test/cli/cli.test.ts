/**
 * The `msgtrans` command as a user runs it: the built bin (dist/lib/cli/main.js)
 * in a child process, against a real server in this process on each protocol.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DevCertificates } from '../../lib/index.js';
import { within } from '../support/async.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { startMsgTrans, waitFor } from '../support/test-app.js';

const CLI = resolve(import.meta.dirname, '../../lib/cli/main.js');

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI to completion (killed after 30 s, so no test hangs). */
function cli(...args: string[]): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

const lines = (text: string): unknown[] =>
  text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line));

let dir: string;
let certs: DevCertificates;
let caFile: string;

before(async () => {
  certs = await testCertificates();
  dir = await mkdtemp(join(tmpdir(), 'msgtrans-cli-'));
  caFile = join(dir, 'ca.pem');
  await Promise.all([
    writeFile(caFile, certs.ca),
    writeFile(join(dir, 'client.pem'), certs.clientCert),
    writeFile(join(dir, 'client-key.pem'), certs.clientKey),
    writeFile(join(dir, 'ping.bin'), 'ping'),
  ]);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

for (const protocol of PROTOCOL_CASES) {
  const full = ['tcp', 'ws', 'quic'].includes(protocol.name);
  describe(`msgtrans CLI over ${protocol.name}`, () => {
    let running: Awaited<ReturnType<typeof startMsgTrans>>;
    let tlsFlags: string[];

    before(async () => {
      running = await startMsgTrans(protocol.server(certs));
      tlsFlags = protocol.client(running.url, certs).tls ? ['--ca', caFile] : [];
    });

    after(async () => {
      await running?.close();
    });

    it('call prints the reply as JSON and sends -H metadata', async () => {
      const result = await cli('call', running.url, 'ctx', '{}', '-H', 'tenant:acme', '--header', 'trace-id: t-1', ...tlsFlags);
      assert.equal(result.code, 0, result.stderr);
      const [reply] = lines(result.stdout) as { protocol: string; metadata: Record<string, string> }[];
      assert.equal(reply.protocol, protocol.name);
      assert.deepEqual(reply.metadata, { tenant: 'acme', 'trace-id': 't-1' });
    });

    it('health makes a msgtrans.health round trip and prints the status', async () => {
      const result = await cli('health', running.url, ...tlsFlags);
      assert.equal(result.code, 0, result.stderr);
      const [report] = lines(result.stdout) as { status: string; url: string; roundTripMs: number }[];
      assert.equal(report.status, 'SERVING');
      assert.equal(report.url, running.url);
      assert.ok(report.roundTripMs >= 0);
    });

    if (!full) return;

    it('call prints each value of a streamed reply on its own line', async () => {
      const result = await cli('call', running.url, 'stream', '{"n":3}', ...tlsFlags);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(lines(result.stdout), [1, 2, 3]);
    });

    it('call --raw --biz-type sends bytes to a biz_type handler and prints bytes as hex', async () => {
      const hex = await cli('call', running.url, '--biz-type', '10', '--raw', Buffer.from('ping').toString('hex'), ...tlsFlags);
      assert.equal(hex.code, 0, hex.stderr);
      assert.equal(hex.stdout, `${Buffer.from('pong').toString('hex')}\n`);
      const file = await cli('call', running.url, '--biz-type', '10', '--raw', `@${join(dir, 'ping.bin')}`, ...tlsFlags);
      assert.equal(file.stdout, `${Buffer.from('pong').toString('hex')}\n`);
    });

    it('emit delivers the event before it exits', async () => {
      const before = running.observed.events.length;
      const result = await cli('emit', running.url, 'event', `{"from":"cli-${protocol.name}"}`, ...tlsFlags);
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(running.observed.events.slice(before), [{ from: `cli-${protocol.name}` }]);
    });

    it('listen prints pushed events, one JSON line each, and exits 0 on SIGINT', async () => {
      const sessionsBefore = running.server.sessions.size;
      const child = spawn(process.execPath, [CLI, 'listen', running.url, 'news', 'alerts', ...tlsFlags], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const exited = new Promise<number | null>((resolveExit) => child.on('close', resolveExit));
      try {
        // the server must hold the listener's session before it pushes (over QUIC it
        // learns of the connection only from the client's first packet)
        await within(
          waitFor(() => stderr.includes('listening on') && running.server.sessions.size > sessionsBefore, 20_000),
          25_000,
          'listener connected',
        );
        running.server.sessions.broadcast('other', { ignored: true });
        running.server.sessions.broadcast('news', { headline: 'hello' });
        await within(waitFor(() => stdout.includes('\n'), 10_000), 15_000, 'push printed');
        child.kill('SIGINT');
        assert.equal(await within(exited, 15_000, 'listen exits'), 0, stderr);
        assert.deepEqual(lines(stdout), [{ pattern: 'news', data: { headline: 'hello' } }]);
      } finally {
        child.kill('SIGKILL');
      }
    });

    it('bench prints msgs/s and latency percentiles', async () => {
      const result = await cli('bench', running.url, 'echo', '{"x":1}', '--concurrency', '4', '--duration', '0.5', '--json', ...tlsFlags);
      assert.equal(result.code, 0, result.stderr);
      const [report] = lines(result.stdout) as { requests: number; errors: number; msgsPerSecond: number; p50Ms: number; p99Ms: number }[];
      assert.ok(report.requests > 0);
      assert.equal(report.errors, 0);
      assert.ok(report.msgsPerSecond > 0);
      assert.ok(report.p99Ms >= report.p50Ms && report.p50Ms > 0);
    });
  });
}

describe('msgtrans CLI exit statuses', () => {
  let running: Awaited<ReturnType<typeof startMsgTrans>>;

  before(async () => {
    running = await startMsgTrans({ listen: 'tcp://127.0.0.1:0' });
  });

  after(async () => {
    await running?.close();
  });

  it('1 for an error reply, printed on stderr', async () => {
    const result = await cli('call', running.url, 'fail.rpc');
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /bad input/);
  });

  it('2 for usage errors: unknown command, unknown flag, bad JSON, missing pattern', async () => {
    for (const args of [['frobnicate'], ['call', running.url, 'echo', '--nope'], ['call', running.url, 'echo', '{bad'], ['call', running.url], []]) {
      const result = await cli(...args);
      assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, /^msgtrans: /);
    }
  });

  it('3 when it cannot connect', async () => {
    const { port } = await import('node:net').then(
      ({ createServer }) =>
        new Promise<{ port: number }>((resolvePort) => {
          // a port that was free a moment ago: nothing listens on it
          const probe = createServer().listen(0, '127.0.0.1', () => {
            const address = probe.address() as { port: number };
            probe.close(() => resolvePort(address));
          });
        }),
    );
    const result = await cli('call', `tcp://127.0.0.1:${port}`, 'echo');
    assert.equal(result.code, 3);
    assert.match(result.stderr, /ERR_MSGTRANS_CONNECT_FAILED/);
  });

  it('4 on timeout', async () => {
    const result = await cli('call', running.url, 'never', '--timeout', '300');
    assert.equal(result.code, 4);
    assert.match(result.stderr, /ERR_MSGTRANS_TIMEOUT/);
  });

  it('0 and the text for --help on every command', async () => {
    for (const command of ['call', 'emit', 'listen', 'bench', 'health']) {
      const result = await cli(command, '--help');
      assert.equal(result.code, 0);
      assert.match(result.stdout, new RegExp(`^Usage: msgtrans ${command} `));
    }
    const main = await cli('--help');
    assert.equal(main.code, 0);
    assert.match(main.stdout, /Commands:/);
  });
});

describe('msgtrans CLI TLS and credentials flags', () => {
  it('--insecure skips verification; without --ca the certificate is refused (exit 3)', async () => {
    const running = await startMsgTrans({ listen: 'tls://127.0.0.1:0', tls: { key: certs.serverKey, cert: certs.serverCert } });
    try {
      const refused = await cli('call', running.url, 'echo', '{"a":1}');
      assert.equal(refused.code, 3);
      assert.match(refused.stderr, /ERR_MSGTRANS_CONNECT_FAILED.*(self-signed|unable to verify|issuer)/i);
      const insecure = await cli('call', running.url, 'echo', '{"a":1}', '--insecure');
      assert.equal(insecure.code, 0, insecure.stderr);
      assert.deepEqual(lines(insecure.stdout), [{ a: 1 }]);
    } finally {
      await running.close();
    }
  });

  it('--cert/--key present a client certificate for mutual TLS', async () => {
    const running = await startMsgTrans({
      listen: 'wss://127.0.0.1:0/msgtrans',
      tls: { key: certs.serverKey, cert: certs.serverCert, ca: certs.ca, requestCert: true },
    });
    try {
      const result = await cli(
        'call', running.url, 'echo', '"mtls"', '--ca', caFile,
        '--cert', join(dir, 'client.pem'), '--key', join(dir, 'client-key.pem'),
      );
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(lines(result.stdout), ['mtls']);
      const without = await cli('call', running.url, 'echo', '"mtls"', '--ca', caFile);
      assert.equal(without.code, 3, without.stderr);
    } finally {
      await running.close();
    }
  });

  it('--credentials reach the authenticate hook; a refusal exits 1', async () => {
    const running = await startMsgTrans({
      listen: 'tcp://127.0.0.1:0',
      authenticate: ({ credentials }) => (credentials as { token?: string } | undefined)?.token === 'good' && { user: 'cli' },
    });
    try {
      const call = await cli('call', running.url, 'echo', '1', '--credentials', '{"token":"good"}');
      assert.equal(call.code, 0, call.stderr);
      const health = await cli('health', running.url, '--credentials', '{"token":"good"}');
      assert.equal(health.code, 0, health.stderr);
      assert.equal((lines(health.stdout)[0] as { status: string }).status, 'SERVING');
      const unknown = await cli('health', running.url, '--credentials', '{"token":"good"}', '--service', 'nope');
      assert.equal(unknown.code, 1, unknown.stderr);
      assert.equal((lines(unknown.stdout)[0] as { status: string }).status, 'SERVICE_UNKNOWN');
      const refused = await cli('health', running.url, '--credentials', '{"token":"bad"}');
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /ERR_MSGTRANS_AUTH_FAILED|Authentication failed/);
    } finally {
      await running.close();
    }
  });
});
