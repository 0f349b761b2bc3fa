/**
 * What one request costs, measured from outside the two processes rather
 * than from throughput (which on a shared machine follows the CPU share a
 * process happens to get): `node dist/bench/cost.js [variant] [inflights]
 * [seconds] [payload]`, e.g. `node dist/bench/cost.js mt-quic 1,100,1000 3`
 * or `node dist/bench/cost.js nest-tcp 4 3 big`.
 *
 * Runs bench/server.js and bench/client.js (one closed loop per in-flight
 * count, after a warm-up) and prints, per request: the CPU time of each
 * process (utime + stime from /proc/<pid>/stat, so kernel work such as
 * sendmsg and wake-ups counts), and for UDP variants the datagrams each way,
 * their average size and the wall time of a send (bench/udp-counter.ts).
 */
import { fork } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevCertificates } from '../sample/dev-certs.js';
import { BenchChild, killChildren } from './bench-child.js';
import { isVariant, sleep, type BenchCerts } from './common.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const [variant = 'mt-quic', inflightList = '1,100,1000', secondsArg = '3', payload] = process.argv.slice(2);
if (!isVariant(variant) || (payload !== undefined && payload !== 'big' && payload !== 'bigbuf')) {
  console.error('usage: cost.js [variant] [inflight,…] [seconds] [big|bigbuf]');
  process.exit(2);
}
const seconds = Number(secondsArg);
const dev = await createDevCertificates();
const certs: BenchCerts = { ca: dev.ca, serverKey: dev.serverKey, serverCert: dev.serverCert };
const options = { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] as const, execArgv: ['--import', join(HERE, 'udp-counter.js')] };
const server = new BenchChild('server', fork(join(HERE, 'server.js'), [variant], { ...options, stdio: [...options.stdio] }));
const client = new BenchChild('client', fork(join(HERE, 'client.js'), [variant], { ...options, stdio: [...options.stdio] }));

/** µs of CPU (user + system) the process has used. */
function cpu(child: BenchChild): number {
  const fields = readFileSync(`/proc/${child.proc.pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

interface UdpCounts {
  sent: number;
  received: number;
  sentBytes: number;
  sendNs: number;
}

function udp(child: BenchChild): UdpCounts {
  const file = `/tmp/msgtrans-udp-${child.proc.pid}.json`;
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as UdpCounts) : { sent: 0, received: 0, sentBytes: 0, sendNs: 0 };
}

function sends(before: UdpCounts, after: UdpCounts, n: number): string {
  const count = after.sent - before.sent;
  if (count === 0) return '0';
  const bytes = Math.round((after.sentBytes - before.sentBytes) / count);
  const us = (after.sendNs - before.sendNs) / 1000 / count;
  return `${(count / n).toFixed(3)} (${bytes} B, ${us.toFixed(1)} µs wall per send)`;
}

try {
  const ready = await server.call('init', { certs }, 20_000);
  await client.call('init', { port: ready.port, url: ready.url, certs }, 20_000);
  for (const inflight of inflightList.split(',').map(Number)) {
    const run = (durationMs: number) => client.call('rr', { inflight, warmupMs: 0, durationMs, ...(payload ? { payload } : {}) }, durationMs + 120_000);
    await run(700);
    // counters are written every 100 ms
    await sleep(250);
    const s0 = cpu(server), c0 = cpu(client), su0 = udp(server), cu0 = udp(client);
    const r = await run(seconds * 1000);
    await sleep(250);
    const s1 = cpu(server), c1 = cpu(client), su1 = udp(server), cu1 = udp(client);
    const n = r.completed as number;
    const rate = r.rate as number;
    const mb = payload ? `, ${((rate * 1024 * 1024) / 1e6).toFixed(1)} MB/s` : '';
    console.log(
      `${variant} @${inflight}${payload ? ` ${payload}` : ''}: ${Math.round(rate)} req/s${mb}, p50 ${(r.p50 as number).toFixed(3)} ms, p99 ${(r.p99 as number).toFixed(3)} ms; ` +
        `CPU per request: server ${((s1 - s0) / n).toFixed(1)} µs, client ${((c1 - c0) / n).toFixed(1)} µs` +
        (cu1.sent + su1.sent > 0 ? `; datagrams per request: client→server ${sends(cu0, cu1, n)}, server→client ${sends(su0, su1, n)}` : ''),
    );
  }
} finally {
  await client.call('exit').catch(() => undefined);
  await server.call('exit').catch(() => undefined);
  killChildren();
}
process.exit(0);
