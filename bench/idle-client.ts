/**
 * Opens and holds idle connections to one benchmark server (started by
 * run.ts), so the server's memory per connection can be measured.
 *
 *   nest-tcp, mt-tcp, raw   plain TCP sockets that never send anything
 *   mt-ws                   WebSocket clients (`ws`), upgraded and then silent
 *   mt-quic                 MsgTransClient connections (handshake + the one stream)
 *
 * IPC: open {variant, port, url, count, concurrency, certs?} → {held, failed, firstError};
 * close → destroys everything; exit.
 */
import * as net from 'node:net';
import { WebSocket } from 'ws';
import { MsgTransClient } from '../lib/index.js';
import { openFileLimit, serveIpc, type BenchCerts } from './common.js';

type Closer = () => void;
const held: Closer[] = [];

function openTcp(port: number): Promise<Closer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      resolve(() => socket.destroy());
    });
    socket.once('error', reject);
  });
}

function openWs(url: string): Promise<Closer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.once('open', () => {
      ws.off('error', reject);
      ws.on('error', () => undefined);
      resolve(() => ws.terminate());
    });
    ws.once('error', reject);
  });
}

async function openQuic(url: string, certs: BenchCerts): Promise<Closer> {
  const client = new MsgTransClient({ url, tls: { ca: certs.ca } });
  await client.connect();
  return () => client.close();
}

async function openMany(
  count: number,
  concurrency: number,
  open: () => Promise<Closer>,
): Promise<{ held: number; failed: number; firstError?: string; seconds: number }> {
  const start = Date.now();
  let started = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (started < count && failed < 20) {
      started++;
      try {
        held.push(await open());
      } catch (err) {
        failed++;
        firstError ??= (err as Error)?.message ?? String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { held: held.length, failed, firstError, seconds: (Date.now() - start) / 1000 };
}

serveIpc(async (request) => {
  switch (request.cmd) {
    case 'limit':
      return { fdLimit: openFileLimit() ?? null, pid: process.pid };
    case 'open': {
      const variant = request.variant as string;
      const count = request.count as number;
      const concurrency = request.concurrency as number;
      const port = request.port as number;
      const url = request.url as string;
      const open =
        variant === 'mt-ws'
          ? () => openWs(url)
          : variant === 'mt-quic'
            ? () => openQuic(url, request.certs as BenchCerts)
            : () => openTcp(port);
      return openMany(count, concurrency, open);
    }
    case 'close': {
      for (const close of held.splice(0)) close();
      return {};
    }
    case 'exit':
      for (const close of held.splice(0)) close();
      setTimeout(() => process.exit(0), 100);
      return {};
    default:
      throw new Error(`unknown command ${request.cmd}`);
  }
});
