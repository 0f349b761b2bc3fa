/**
 * Cost of the OpenTelemetry instrumentation: request/response on mt-tcp at
 * 100 in flight with no SDK registered, then with one registered in both
 * the server and the client process (bench/otel-sdk.ts: every call traced,
 * spans batch-exported, metrics recorded). Arms alternate, each figure is
 * the median of its runs. `node dist/bench/instrumentation.js [--reps=N] [--seconds=S] [--variant=mt-tcp]`
 * (run.ts starts the same server.js and client.js processes). `--baseline=DIR`
 * adds a third arm, no SDK, running the server.js and client.js built in DIR
 * (the dist/bench of another checkout, e.g. the code before instrumentation).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevCertificates } from '../sample/dev-certs.js';
import { isVariant, median, type IpcReply } from './common.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const arg = (name: string, fallback: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const REPS = Number(arg('reps', '3'));
const SECONDS = Number(arg('seconds', '5'));
const VARIANT = arg('variant', 'mt-tcp');
const INFLIGHT = 100;
if (!isVariant(VARIANT) || !Number.isInteger(REPS) || REPS < 1 || !(SECONDS > 0)) {
  console.error('usage: instrumentation.js [--reps=N] [--seconds=S] [--variant=mt-tcp|mt-ws|mt-quic]');
  process.exit(2);
}

class Child {
  private seq = 0;
  private readonly waiting = new Map<number, (reply: IpcReply) => void>();
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (reply: IpcReply) => this.waiting.get(reply.seq)?.(reply));
  }
  call(cmd: string, args: Record<string, unknown>, timeoutMs: number): Promise<IpcReply> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${cmd}: no answer within ${timeoutMs} ms`)), timeoutMs);
      this.waiting.set(seq, (reply) => {
        clearTimeout(timer);
        this.waiting.delete(seq);
        if (reply.ok) resolve(reply);
        else reject(new Error(reply.error));
      });
      this.proc.send({ seq, cmd, ...args });
    });
  }
  async stop(): Promise<void> {
    await this.call('exit', {}, 3000).catch(() => undefined);
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await new Promise((resolve) => (this.proc.exitCode !== null ? resolve(null) : this.proc.once('exit', resolve)));
    clearTimeout(timer);
  }
}

const BASELINE = arg('baseline', '');
type Arm = 'off' | 'on' | 'base';
const ARMS: Arm[] = BASELINE === '' ? ['off', 'on'] : ['off', 'on', 'base'];

function start(script: string, withSdk: boolean, dir = HERE): Child {
  const execArgv = withSdk ? ['--import', join(HERE, 'otel-sdk.js')] : [];
  // --cpu-prof-dir=DIR: profile the server and client processes (for finding where the cost goes)
  const profileDir = arg('cpu-prof-dir', '');
  if (profileDir !== '') execArgv.push('--cpu-prof', `--cpu-prof-dir=${profileDir}`);
  return new Child(fork(join(dir, script), [VARIANT], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
}

async function run(arm: Arm, certs: unknown): Promise<{ rate: number; p50: number; p99: number }> {
  const dir = arm === 'base' ? BASELINE : HERE;
  const server = start('server.js', arm === 'on', dir);
  const client = start('client.js', arm === 'on', dir);
  try {
    const { port, url } = await server.call('init', { certs }, 30_000);
    await client.call('init', { port, url, certs }, 30_000);
    const r = await client.call('rr', { inflight: INFLIGHT, warmupMs: 1000, durationMs: SECONDS * 1000 }, SECONDS * 1000 + 60_000);
    if ((r.errors as number) > 0) throw new Error(`errors during the run: ${String(r.firstError)}`);
    return { rate: r.rate as number, p50: r.p50 as number, p99: r.p99 as number };
  } finally {
    await client.stop();
    await server.stop();
  }
}

const certs = await createDevCertificates();
const runs: Record<Arm, { rate: number; p50: number; p99: number }[]> = { off: [], on: [], base: [] };
for (let i = 0; i < REPS; i++) {
  // rotate which arm goes first, so drift on a shared machine hits every arm
  for (const arm of [...ARMS.slice(i % ARMS.length), ...ARMS.slice(0, i % ARMS.length)]) {
    const r = await run(arm, { ca: certs.ca, serverKey: certs.serverKey, serverCert: certs.serverCert });
    runs[arm].push(r);
    process.stderr.write(`[instrumentation] ${arm} run ${i + 1}: ${Math.round(r.rate)} req/s\n`);
  }
}
const row = (arm: Arm) => ({
  rate: median(runs[arm].map((r) => r.rate)),
  p50: median(runs[arm].map((r) => r.p50)),
  p99: median(runs[arm].map((r) => r.p99)),
});
const off = row('off');
const on = row('on');
console.log(`| ${VARIANT}, req/resp, ${INFLIGHT} in flight | req/s | p50 ms | p99 ms |`);
console.log('|---|---|---|---|');
console.log(`| no SDK registered | ${Math.round(off.rate)} | ${off.p50.toFixed(2)} | ${off.p99.toFixed(2)} |`);
console.log(`| SDK registered (every call traced, metrics) | ${Math.round(on.rate)} | ${on.p50.toFixed(2)} | ${on.p99.toFixed(2)} |`);
if (BASELINE !== '') {
  const base = row('base');
  console.log(`| baseline build (${BASELINE}), no SDK | ${Math.round(base.rate)} | ${base.p50.toFixed(2)} | ${base.p99.toFixed(2)} |`);
}
console.log(`\nTracing and metrics on: ${(((on.rate - off.rate) / off.rate) * 100).toFixed(1)}% throughput (median of ${REPS} runs of ${SECONDS} s each).`);
