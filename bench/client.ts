/**
 * Benchmark load generator, one variant per process (started by run.ts),
 * one connection to that variant's server.
 *
 * IPC:
 *   init {port, url, certs?, quicDatagram?}        connect and check that echo echoes
 *   rr {inflight, warmupMs, durationMs, payload?}  fixed-duration closed loop (payload small,
 *                                                  big or bigbuf): `inflight`
 *                                                  requests always outstanding → rate, p50, p99
 *   events {count, timeoutMs}                      emit `count` events, then poll `count.get`
 *                                                  until all arrived → rate
 *   exit
 */
import 'reflect-metadata';
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { ClientTCP, type ClientProxy } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { MsgTransClient, QuicProtocol } from '../lib/index.js';
import {
  BatchWriter,
  F_CODEC,
  F_HAS_ROUTE,
  FrameReader,
  HEADER,
  T_ONE_WAY,
  T_REQUEST,
  frameHead,
  isVariant,
  percentile,
  serveIpc,
  sleep,
  type BenchCerts,
} from './common.js';

/** What the closed loop and the event run need from a client. */
interface LoadClient {
  /** Sends `echo` with the given payload; `done` runs on the reply. */
  request(payload: PayloadKind, done: (err?: unknown) => void): void;
  /** Emits one `count` event with the small payload. */
  emit(): void;
  countGet(): Promise<number>;
  /** Resolves with the echoed payload's length, to check the server really echoes. */
  check(payload: PayloadKind): Promise<number>;
  close(): void;
}

/**
 * small: 64-character string; big: 1 MiB string (both Nest transports carry
 * strings as JSON, so both do the same codec work); bigbuf: 1 MiB Buffer
 * (msgtrans sends it as raw bytes; Nest TCP as JSON, `{type:'Buffer',data:[…]}`).
 */
type PayloadKind = 'small' | 'big' | 'bigbuf';
const SMALL_SIZE = 64;
const BIG_SIZE = 1024 * 1024;
const SMALL = 'x'.repeat(SMALL_SIZE);
const BIG = 'y'.repeat(BIG_SIZE);
const BIGBUF = Buffer.alloc(BIG_SIZE, 'z');
const PAYLOADS: Record<PayloadKind, string | Buffer> = { small: SMALL, big: BIG, bigbuf: BIGBUF };

function isPayloadKind(value: unknown): value is PayloadKind {
  return value === 'small' || value === 'big' || value === 'bigbuf';
}

/** Nest's ClientTCP or MsgTransClient: both are ClientProxy, driven the same way. */
class ProxyLoadClient implements LoadClient {
  constructor(private readonly client: Pick<ClientProxy, 'send' | 'emit' | 'close'>) {}

  request(payload: PayloadKind, done: (err?: unknown) => void): void {
    this.client.send('echo', PAYLOADS[payload]).subscribe({ next: () => done(), error: (err) => done(err ?? 'error') });
  }

  emit(): void {
    this.client.emit('count', SMALL);
  }

  async countGet(): Promise<number> {
    return lastValueFrom(this.client.send<number>('count.get', {}));
  }

  async check(kind: PayloadKind): Promise<number> {
    const payload = PAYLOADS[kind];
    const echoed = await lastValueFrom(this.client.send<unknown>('echo', payload));
    if (typeof payload === 'string') {
      if (echoed !== payload) throw new Error(`echo returned ${String(echoed).slice(0, 40)}…`);
      return payload.length;
    }
    // msgtrans: the Buffer back; Nest TCP: its JSON form
    const length = Buffer.isBuffer(echoed) ? echoed.length : (echoed as { data?: unknown[] })?.data?.length;
    if (length !== payload.length) throw new Error(`echo of a Buffer returned ${length} bytes`);
    return length;
  }

  close(): void {
    void this.client.close();
  }
}

/**
 * node:net client of the raw baseline: the same frames msgtrans tcp sends
 * (route `echo`, JSON payload), written once per read event (or once per
 * tick for requests issued outside a read).
 */
class RawLoadClient implements LoadClient {
  private readonly out: BatchWriter;
  private readonly pending = new Map<number, (err: unknown, payload?: Buffer) => void>();
  private nextId = 0;
  private inRead = false;
  private scheduled = false;
  private readonly smallRequest: Buffer;
  private readonly smallEvent: Buffer;
  private readonly bigPayload = Buffer.from(JSON.stringify(BIG));
  private readonly bigBufPayload = BIGBUF;
  private readonly echoRoute = Buffer.from('route:echo');
  private readonly countRoute = Buffer.from('route:count.get');

  constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    this.out = new BatchWriter(socket);
    const small = Buffer.from(JSON.stringify(SMALL));
    this.smallRequest = Buffer.concat([frameHead(T_REQUEST, 0, F_HAS_ROUTE | F_CODEC, this.echoRoute, small.length), small]);
    this.smallEvent = Buffer.concat([
      frameHead(T_ONE_WAY, 0, F_HAS_ROUTE | F_CODEC, Buffer.from('route:count'), small.length),
      small,
    ]);
    const reader = new FrameReader((buf, offset, length) => {
      const id = buf.readUInt32BE(offset + 4);
      const done = this.pending.get(id);
      if (!done) return;
      this.pending.delete(id);
      const payloadStart = offset + HEADER + buf.readUInt16BE(offset + 8);
      done(undefined, buf.subarray(payloadStart, offset + length));
    });
    socket.on('data', (chunk: Buffer) => {
      this.inRead = true;
      reader.push(chunk);
      this.inRead = false;
      this.out.flush();
    });
    socket.on('error', (err) => this.failAll(err));
    socket.on('close', () => this.failAll(new Error('closed')));
  }

  static connect(port: number): Promise<RawLoadClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => {
        socket.off('error', reject);
        resolve(new RawLoadClient(socket));
      });
      socket.once('error', reject);
    });
  }

  request(payload: PayloadKind, done: (err?: unknown) => void): void {
    this.raw(payload, (err) => done(err));
  }

  emit(): void {
    const frame = Buffer.allocUnsafe(this.smallEvent.length);
    this.smallEvent.copy(frame);
    frame.writeUInt32BE(this.id(), 4);
    this.out.push(frame);
    this.kick();
  }

  countGet(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.raw('count', (err, payload) => (err ? reject(err) : resolve(Number(payload!.toString())))),
    );
  }

  check(kind: PayloadKind): Promise<number> {
    return new Promise((resolve, reject) =>
      this.raw(kind, (err, payload) => {
        if (err) return reject(err);
        if (kind === 'bigbuf') {
          if (!payload!.equals(BIGBUF)) return reject(new Error('raw echo mismatch'));
          return resolve(payload!.length);
        }
        const echoed = JSON.parse(payload!.toString()) as string;
        if (echoed !== PAYLOADS[kind]) return reject(new Error('raw echo mismatch'));
        resolve(echoed.length);
      }),
    );
  }

  close(): void {
    this.socket.destroy();
  }

  private raw(kind: PayloadKind | 'count', done: (err: unknown, payload?: Buffer) => void): void {
    const id = this.id();
    if (kind === 'small') {
      const frame = Buffer.allocUnsafe(this.smallRequest.length);
      this.smallRequest.copy(frame);
      frame.writeUInt32BE(id, 4);
      this.out.push(frame);
    } else if (kind === 'big') {
      this.out.push(frameHead(T_REQUEST, id, F_HAS_ROUTE | F_CODEC, this.echoRoute, this.bigPayload.length));
      this.out.push(this.bigPayload);
    } else if (kind === 'bigbuf') {
      this.out.push(frameHead(T_REQUEST, id, F_HAS_ROUTE, this.echoRoute, this.bigBufPayload.length));
      this.out.push(this.bigBufPayload);
    } else {
      this.out.push(frameHead(T_REQUEST, id, F_HAS_ROUTE, this.countRoute, 0));
    }
    this.pending.set(id, done);
    this.kick();
  }

  private id(): number {
    this.nextId = this.nextId === 0xffffffff ? 1 : this.nextId + 1;
    return this.nextId;
  }

  private kick(): void {
    if (this.inRead || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.out.flush();
    });
  }

  private failAll(err: unknown): void {
    const entries = [...this.pending.values()];
    this.pending.clear();
    for (const done of entries) done(err);
  }
}

// Latencies of one run; large enough for ~4M replies, past which they are not recorded (still counted).
const LATENCY_CAP = 4_000_000;
const latencies = new Float64Array(LATENCY_CAP);

interface LoopResult {
  completed: number;
  errors: number;
  seconds: number;
  rate: number;
  p50: number;
  p99: number;
  firstError?: string;
}

/**
 * Fixed-duration closed loop: `inflight` requests are outstanding at all
 * times; each reply sends the next request. After the warm-up the counters
 * reset without pausing the loop; when the duration ends no more requests
 * are sent and the outstanding ones drain (bounded) before returning.
 */
function closedLoop(
  client: LoadClient,
  inflight: number,
  warmupMs: number,
  durationMs: number,
  payload: PayloadKind,
): Promise<LoopResult> {
  return new Promise((resolve) => {
    let phase = 0; // 0 warm-up, 1 measuring, 2 draining
    let outstanding = 0;
    let completed = 0;
    let errors = 0;
    let recorded = 0;
    let firstError: string | undefined;
    let start = 0;
    let end = 0;
    let finished = false;
    let drainTimer: NodeJS.Timeout | null = null;
    const finish = () => {
      if (finished) return;
      finished = true;
      if (drainTimer) clearTimeout(drainTimer);
      const seconds = (end - start) / 1000;
      const p50 = percentile(latencies, recorded, 50);
      const p99 = percentile(latencies, recorded, 99);
      resolve({ completed, errors, seconds, rate: completed / seconds, p50, p99, firstError });
    };
    const issue = (): void => {
      outstanding++;
      const sent = performance.now();
      client.request(payload, (err) => {
        const now = performance.now();
        outstanding--;
        if (phase === 1) {
          if (err) {
            errors++;
            firstError ??= String((err as Error)?.message ?? err);
          } else {
            completed++;
            if (recorded < LATENCY_CAP) latencies[recorded++] = now - sent;
          }
        }
        if (phase < 2) {
          // after an error, do not spin synchronously
          if (err) setTimeout(issue, 1);
          else issue();
        } else if (outstanding === 0) finish();
      });
    };
    for (let i = 0; i < inflight; i++) issue();
    setTimeout(() => {
      phase = 1;
      completed = 0;
      errors = 0;
      recorded = 0;
      start = performance.now();
      setTimeout(() => {
        phase = 2;
        end = performance.now();
        if (outstanding === 0) finish();
        else drainTimer = setTimeout(finish, 15_000);
      }, durationMs);
    }, warmupMs);
  });
}

/** Emits `count` events, `chunk` per tick, then polls count.get until all arrived (or `timeoutMs`). */
async function eventRun(client: LoadClient, count: number, timeoutMs: number): Promise<Record<string, unknown>> {
  const chunk = 1000;
  const base = await client.countGet();
  const start = performance.now();
  for (let sent = 0; sent < count; ) {
    const n = Math.min(chunk, count - sent);
    for (let i = 0; i < n; i++) client.emit();
    sent += n;
    await new Promise((resolve) => setImmediate(resolve));
  }
  const sentAt = performance.now();
  let arrived = 0;
  for (;;) {
    arrived = (await client.countGet()) - base;
    if (arrived >= count) break;
    if (performance.now() - start > timeoutMs) {
      return { complete: false, arrived, seconds: (performance.now() - start) / 1000, rate: NaN };
    }
    await sleep(1);
  }
  const seconds = (performance.now() - start) / 1000;
  return { complete: true, arrived, seconds, sendSeconds: (sentAt - start) / 1000, rate: count / seconds };
}

async function connect(variant: string, port: number, url: string, certs: BenchCerts | undefined, quicDatagram: number | undefined): Promise<LoadClient> {
  switch (variant) {
    case 'nest-tcp': {
      const client = new ClientTCP({ host: '127.0.0.1', port });
      await client.connect();
      return new ProxyLoadClient(client);
    }
    case 'raw':
      return RawLoadClient.connect(port);
    default: {
      const client = new MsgTransClient({
        url,
        ...(variant === 'mt-quic' ? { tls: { ca: certs!.ca } } : {}),
        ...(variant === 'mt-quic' && quicDatagram !== undefined ? { protocols: [new QuicProtocol({ loopbackDatagramSize: quicDatagram })] } : {}),
      });
      await client.connect();
      return new ProxyLoadClient(client);
    }
  }
}

const variant = process.argv[2];
if (!isVariant(variant)) {
  console.error('usage: client.js <variant>');
  process.exit(2);
}
let client: LoadClient | null = null;

serveIpc(async (request) => {
  switch (request.cmd) {
    case 'init': {
      client = await connect(
        variant,
        request.port as number,
        request.url as string,
        request.certs as BenchCerts | undefined,
        request.quicDatagram as number | undefined,
      );
      const checked = [];
      for (const kind of ['small', 'big', 'bigbuf'] as const) checked.push(await client.check(kind));
      return { checked, pid: process.pid };
    }
    case 'rr': {
      const payload = request.payload ?? 'small';
      if (!isPayloadKind(payload)) throw new Error(`unknown payload ${String(payload)}`);
      const result = await closedLoop(
        client!,
        request.inflight as number,
        request.warmupMs as number,
        request.durationMs as number,
        payload,
      );
      return { ...result };
    }
    case 'events':
      return eventRun(client!, request.count as number, request.timeoutMs as number);
    case 'exit':
      client?.close();
      setTimeout(() => process.exit(0), 50);
      return {};
    default:
      throw new Error(`unknown command ${request.cmd}`);
  }
});
