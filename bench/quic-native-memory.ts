/**
 * What an idle QUIC connection costs in native quiche + BoringSSL alone, with
 * no msgtrans JavaScript layer and no sockets:
 * `node --expose-gc dist/bench/quic-native-memory.js [N] [knob=value …]`.
 *
 * Handshakes N client/server pairs of the bare binding in memory (datagrams
 * passed from one `send` to the other's `recv`), opens the one stream the
 * way msgtrans does, then drops every client and measures the RSS the N
 * server connections hold (after GC, over the RSS before). Knobs change
 * the server's quiche Config, to see which one allocates per connection:
 * window=BYTES (initial stream/connection credit), datagram=BYTES,
 * cc=reno|cubic|bbr (congestion control), cids=N (active connection id limit),
 * clients=keep (count the client ends too), phases=1 (also a bare accept()/connect()).
 */
import { randomBytes } from 'node:crypto';
import { createDevCertificates } from '../sample/dev-certs.js';
import { quiche, type QuicheConfig, type QuicheConnection } from '../lib/transport/quic/quic-native.js';

const args = process.argv.slice(2);
const N = Number(args.find((a) => /^\d+$/.test(a)) ?? 2000);
const knobs = new Map(args.filter((a) => a.includes('=')).map((a) => a.split('=') as [string, string]));
const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

const certs = await createDevCertificates();
const window = Number(knobs.get('window') ?? 2 * 1024 * 1024);
const datagram = Number(knobs.get('datagram') ?? 1350);

function config(server: boolean): QuicheConfig {
  const c = quiche.Config.withBoringSslCtx(
    false,
    false,
    undefined,
    server ? [Buffer.from(certs.serverKey)] : undefined,
    server ? [Buffer.from(certs.serverCert)] : undefined,
    undefined,
  );
  c.setApplicationProtos(['msgtrans']);
  c.setMaxIdleTimeout(0);
  c.setMaxRecvUdpPayloadSize(datagram);
  c.setMaxSendUdpPayloadSize(datagram);
  c.setInitialMaxData(window * 2);
  c.setInitialMaxStreamDataBidiLocal(window);
  c.setInitialMaxStreamDataBidiRemote(window);
  c.setInitialMaxStreamDataUni(0);
  c.setInitialMaxStreamsBidi(server ? 1 : 0);
  c.setInitialMaxStreamsUni(0);
  c.setDisableActiveMigration(true);
  if (server && knobs.has('cc')) c.setCcAlgorithmName(knobs.get('cc')!);
  if (server && knobs.has('cids')) c.setActiveConnectionIdLimit(Number(knobs.get('cids')));
  return c;
}

const serverConfig = config(true);
const clientConfig = config(false);
const buf = Buffer.alloc(65536);
const local = { host: '127.0.0.1', port: 1 };

function pump(from: QuicheConnection, to: QuicheConnection, info: { from: typeof local; to: typeof local }): number {
  let moved = 0;
  for (let i = 0; i < 100; i++) {
    const sent = from.send(buf);
    if (sent === null) break;
    try {
      to.recv(buf.subarray(0, sent[0]), info);
    } catch {
      // dropped
    }
    moved++;
  }
  return moved;
}

function pair(i: number): [QuicheConnection, QuicheConnection] {
  const remote = { host: '127.0.0.1', port: 10_000 + (i % 50_000) };
  const client = quiche.Connection.connect(null, randomBytes(20), remote, local, clientConfig);
  const server = quiche.Connection.accept(randomBytes(20), undefined, local, remote, serverConfig);
  const toServer = { from: remote, to: local };
  const toClient = { from: local, to: remote };
  for (let round = 0; round < 20; round++) {
    if (client.isEstablished()) client.streamSend(0, Buffer.alloc(16), false);
    const moved = pump(client, server, toServer) + pump(server, client, toClient);
    if (server.streamReadable(0)) server.streamRecv(0, buf);
    if (moved === 0 && server.isEstablished()) break;
  }
  if (!server.isEstablished()) throw new Error('handshake did not complete');
  return [client, server];
}

async function rss(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return process.memoryUsage().rss;
}

// warm up allocator and JIT so the first connections do not pay for them
for (let i = 0; i < 50; i++) pair(i);
const before = await rss();
const servers: QuicheConnection[] = [];
const keepClients = knobs.get('clients') === 'keep';
const clients: QuicheConnection[] = [];
for (let i = 0; i < N; i++) {
  const [client, server] = pair(i);
  if (keepClients) clients.push(client);
  servers.push(server);
  // a client dropped at once is freed by the next GC and its memory reused by the next pairs
  // (napi finalizers run in a later task, not inside gc())
  if (i % 50 === 49) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
}
const after = await rss();
const kib = (bytes: number) => (bytes / 1024 / N).toFixed(2);
console.log(
  `${N} native connections (${[...knobs].map(([k, v]) => `${k}=${v}`).join(' ') || 'defaults'}): ` +
    `${kib(after - before)} KiB per ${keepClients ? 'client+server pair' : 'server connection'} (RSS after GC)`,
);
if (servers.length !== N) throw new Error('lost a connection');
if (knobs.get('phases') === '1') {
  const acc: QuicheConnection[] = [];
  const b0 = await rss();
  for (let i = 0; i < N; i++) acc.push(quiche.Connection.accept(randomBytes(20), undefined, local, { host: '127.0.0.1', port: 2 }, serverConfig));
  console.log(`accept() alone, no handshake: ${kib((await rss()) - b0)} KiB`);
  const cl: QuicheConnection[] = [];
  const b1 = await rss();
  for (let i = 0; i < N; i++) cl.push(quiche.Connection.connect(null, randomBytes(20), local, { host: '127.0.0.1', port: 2 }, clientConfig));
  console.log(`connect() alone, no handshake: ${kib((await rss()) - b1)} KiB`);
  servers.length = 0;
  await new Promise((resolve) => setTimeout(resolve, 100));
  console.log(`after dropping the ${N} established servers: ${kib((await rss()) - b1)} KiB`);
}
