/**
 * Shared by the benchmark orchestrator (run.ts) and its child processes
 * (server.ts, client.ts, idle-client.ts): variant names, the IPC envelope,
 * raw msgtrans v1 framing for the node:net baseline, and small statistics.
 *
 * Benchmarks only; nothing here is part of the library.
 */
import { readFileSync } from 'node:fs';

/** The transports compared. */
export const VARIANTS = ['nest-tcp', 'mt-tcp', 'mt-ws', 'mt-quic', 'raw'] as const;
export type Variant = (typeof VARIANTS)[number];

export const VARIANT_LABEL: Record<Variant, string> = {
  'nest-tcp': 'Nest TCP',
  'mt-tcp': 'msgtrans tcp',
  'mt-ws': 'msgtrans ws',
  'mt-quic': 'msgtrans quic',
  raw: 'raw node:net',
};

export function isVariant(value: unknown): value is Variant {
  return typeof value === 'string' && (VARIANTS as readonly string[]).includes(value);
}

/** Certificates the orchestrator makes once and hands to QUIC servers and clients. */
export interface BenchCerts {
  ca: string;
  serverKey: string;
  serverCert: string;
}

/** Every IPC message from the orchestrator carries `seq`; the child answers with the same `seq`. */
export interface IpcRequest {
  seq: number;
  cmd: string;
  [key: string]: unknown;
}

export interface IpcReply {
  seq: number;
  ok: boolean;
  error?: string;
  [key: string]: unknown;
}

/**
 * Child side of the IPC: runs `handle` for each request and sends back its
 * result (or its error). The child exits when the parent goes away, so no
 * benchmark process outlives the run.
 */
export function serveIpc(handle: (request: IpcRequest) => Promise<Record<string, unknown>>): void {
  if (!process.send) {
    console.error('This script is started by bench/run.js, not directly.');
    process.exit(2);
  }
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: IpcRequest) => {
    handle(message).then(
      (result) => process.send!({ ...result, seq: message.seq, ok: true }),
      (err: Error) => process.send!({ seq: message.seq, ok: false, error: err?.stack ?? String(err) }),
    );
  });
}

/** Soft limit on open files of this process, from /proc (Linux); undefined elsewhere. */
export function openFileLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

export function memorySnapshot(): { rss: number; heapUsed: number; heapTotal: number; external: number; arrayBuffers: number } {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
}

/** Full GC (when the process runs with --expose-gc), twice, with a pause for finalizers. */
export async function collectGarbage(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  for (let i = 0; i < 2; i++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---------------------------------------------------------------------------
// Raw msgtrans v1 framing for the node:net baseline (PROTOCOL.md Part A).

export const HEADER = 16;
export const T_ONE_WAY = 0;
export const T_REQUEST = 1;
export const T_RESPONSE = 2;
export const F_HAS_ROUTE = 0x0004;
export const F_CODEC = 0x0020;

/** A packet header with an optional extension header, ready to be followed by `payloadLength` bytes. */
export function frameHead(packetType: number, messageId: number, flags: number, ext: Buffer, payloadLength: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER + ext.length);
  writeHead(out, 0, packetType, messageId, flags, ext.length, payloadLength);
  ext.copy(out, HEADER);
  return out;
}

export function writeHead(
  out: Buffer,
  offset: number,
  packetType: number,
  messageId: number,
  flags: number,
  extLength: number,
  payloadLength: number,
): void {
  out[offset] = 1;
  out[offset + 1] = 0;
  out[offset + 2] = packetType;
  out[offset + 3] = 0;
  out.writeUInt32BE(messageId >>> 0, offset + 4);
  out.writeUInt16BE(extLength, offset + 8);
  out.writeUInt32BE(payloadLength, offset + 10);
  out.writeUInt16BE(flags, offset + 14);
}

/**
 * Splits a TCP byte stream into whole frames. A frame inside one chunk is
 * handed up as (chunk, offset) without copying; a split frame is copied once
 * into a buffer of its size. No validation: this is the baseline, not a
 * decoder anyone should deploy.
 */
export class FrameReader {
  private readonly head = Buffer.allocUnsafe(HEADER);
  private headFill = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;

  constructor(private readonly onFrame: (buf: Buffer, offset: number, length: number) => void) {}

  push(chunk: Buffer): void {
    let offset = 0;
    const end = chunk.length;
    if (this.body !== null || this.headFill > 0) {
      if (this.body === null) {
        const take = Math.min(HEADER - this.headFill, end);
        chunk.copy(this.head, this.headFill, 0, take);
        this.headFill += take;
        offset = take;
        if (this.headFill < HEADER) return;
        this.headFill = 0;
        this.body = Buffer.allocUnsafe(frameLength(this.head, 0));
        this.head.copy(this.body, 0);
        this.bodyFill = HEADER;
      }
      const body = this.body;
      const take = Math.min(body.length - this.bodyFill, end - offset);
      chunk.copy(body, this.bodyFill, offset, offset + take);
      this.bodyFill += take;
      offset += take;
      if (this.bodyFill < body.length) return;
      this.body = null;
      this.onFrame(body, 0, body.length);
    }
    while (end - offset >= HEADER) {
      const length = frameLength(chunk, offset);
      if (end - offset < length) {
        const body = Buffer.allocUnsafe(length);
        chunk.copy(body, 0, offset, end);
        this.body = body;
        this.bodyFill = end - offset;
        return;
      }
      this.onFrame(chunk, offset, length);
      offset += length;
    }
    if (offset < end) {
      chunk.copy(this.head, 0, offset, end);
      this.headFill = end - offset;
    }
  }
}

export function frameLength(buf: Buffer, offset: number): number {
  return HEADER + buf.readUInt16BE(offset + 8) + buf.readUInt32BE(offset + 10);
}

/**
 * Buffers queued during one read event (or one tick), written with one
 * syscall: small batches are concatenated, large ones written corked (one
 * writev) so big payloads are not copied.
 */
export class BatchWriter {
  private items: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly socket: import('node:net').Socket) {}

  get pending(): number {
    return this.items.length;
  }

  push(item: Buffer): void {
    this.items.push(item);
    this.bytes += item.length;
  }

  flush(): void {
    const items = this.items;
    if (items.length === 0) return;
    const bytes = this.bytes;
    this.items = [];
    this.bytes = 0;
    if (this.socket.destroyed) return;
    if (items.length === 1) this.socket.write(items[0]);
    else if (bytes <= 64 * 1024) this.socket.write(Buffer.concat(items, bytes));
    else {
      this.socket.cork();
      for (const item of items) this.socket.write(item);
      this.socket.uncork();
    }
  }
}

// ---------------------------------------------------------------------------
// Statistics

export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Percentile (0–100) of the first `n` entries of `values` (sorted in place). */
export function percentile(values: Float64Array, n: number, p: number): number {
  if (n === 0) return NaN;
  const view = values.subarray(0, n).sort();
  const rank = Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1));
  return view[rank];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
