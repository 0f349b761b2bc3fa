/**
 * Opens and holds idle connections to one benchmark server (started by
 * run.ts), so the server's memory per connection can be measured.
 *
 *   nest-tcp, mt-tcp, raw   plain TCP sockets that never send anything
 *   mt-ws                   WebSocket clients (`ws`), upgraded and then silent
 *   mt-quic                 MsgTransClient connections (handshake + the one stream)
 *
 * IPC: open {variant, port, url, count, concurrency, certs?, localAddresses?} → {held, failed,
 * firstError, seconds}; close → destroys everything; exit.
 *
 * `localAddresses` (TCP and WS): source addresses taken in turn, e.g. 127.0.0.2,
 * 127.0.0.3, … (all of 127.0.0.0/8 is loopback on Linux). The kernel gives each
 * connection bound to a source address a port of the ephemeral range unique for
 * that address, so N addresses allow N times that range (28,232 ports by default).
 */
import * as net from 'node:net';
import { WebSocket } from 'ws';
import { MsgTransClient } from '../lib/index.js';
import { openFileLimit, serveIpc, type BenchCerts } from './common.js';

type Closer = () => void;
const held: Closer[] = [];

function openTcp(port: number, localAddress: string | undefined): Promise<Closer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    socket.once('connect', () => {
      socket.off('error', reject);
      socket.on('error', () => undefined);
      resolve(() => socket.destroy());
    });
    socket.once('error', reject);
  });
}

function openWs(url: string, localAddress: string | undefined): Promise<Closer> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, localAddress });
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
  open: (index: number) => Promise<Closer>,
): Promise<{ held: number; failed: number; firstError?: string; seconds: number }> {
  const start = Date.now();
  const heldBefore = held.length;
  let started = 0;
  let failed = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (started < count && failed < 20) {
      const index = started++;
      try {
        held.push(await open(index));
      } catch (err) {
        failed++;
        firstError ??= (err as Error)?.message ?? String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { held: held.length - heldBefore, failed, firstError, seconds: (Date.now() - start) / 1000 };
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
      const sources = (request.localAddresses as string[] | undefined) ?? [];
      const source = (index: number) => (sources.length > 0 ? sources[index % sources.length] : undefined);
      const open =
        variant === 'mt-ws'
          ? (index: number) => openWs(url, source(index))
          : variant === 'mt-quic'
            ? () => openQuic(url, request.certs as BenchCerts)
            : (index: number) => openTcp(port, source(index));
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
