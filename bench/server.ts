/**
 * Benchmark server, one variant per process (started by run.ts):
 *
 *   nest-tcp  Nest's built-in TCP transport (Transport.TCP)
 *   mt-tcp    MsgTransServer on tcp://
 *   mt-ws     MsgTransServer on ws://
 *   mt-quic   MsgTransServer on quic://
 *   raw       node:net echo of msgtrans v1 frames, no Nest at all
 *
 * The Nest variants share one controller: `echo` returns its input, the
 * `count` event increments a counter, `count.get` reads it.
 *
 * IPC: init {certs?, maxConnections?, quicDatagram?} → {port, url, fdLimit}; mem {gc?} → memory and connections held;
 * snapshot {file} → a V8 heap snapshot written to `file` after GC (needs --expose-gc to collect first); exit.
 */
import 'reflect-metadata';
import * as net from 'node:net';
import { writeHeapSnapshot } from 'node:v8';
import { Controller, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, MessagePattern, Payload, Transport } from '@nestjs/microservices';
import { MsgTransServer, QuicProtocol } from '../lib/index.js';
import {
  BatchWriter,
  F_CODEC,
  FrameReader,
  HEADER,
  T_ONE_WAY,
  T_REQUEST,
  T_RESPONSE,
  collectGarbage,
  frameHead,
  isVariant,
  memorySnapshot,
  openFileLimit,
  serveIpc,
  type BenchCerts,
  type Variant,
} from './common.js';

let events = 0;

@Controller()
class BenchController {
  @MessagePattern('echo')
  echo(@Payload() data: unknown) {
    return data;
  }

  @EventPattern('count')
  count(@Payload() _data: unknown) {
    events++;
  }

  @MessagePattern('count.get')
  countGet() {
    return events;
  }
}

@Module({ controllers: [BenchController] })
class BenchModule {}

interface Running {
  port: number;
  url: string;
  connections(): Promise<number>;
  close(): Promise<void>;
}

async function startNestTcp(): Promise<Running> {
  const app: INestMicroservice = await NestFactory.createMicroservice(BenchModule, {
    transport: Transport.TCP,
    options: { host: '127.0.0.1', port: 0 },
    logger: false,
  });
  await app.listen();
  const server = app.unwrap<net.Server>();
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `tcp://127.0.0.1:${port}`,
    connections: () => new Promise((resolve) => server.getConnections((_err, n) => resolve(n ?? -1))),
    close: () => app.close(),
  };
}

async function startMsgTrans(
  variant: Variant,
  certs: BenchCerts | undefined,
  maxConnections: number | undefined,
  quicDatagram: number | undefined,
): Promise<Running> {
  const listen = { 'mt-tcp': 'tcp://127.0.0.1:0', 'mt-ws': 'ws://127.0.0.1:0/', 'mt-quic': 'quic://127.0.0.1:0' }[
    variant as 'mt-tcp' | 'mt-ws' | 'mt-quic'
  ];
  const strategy = new MsgTransServer({
    listen,
    ...(maxConnections !== undefined ? { maxConnections } : {}),
    ...(variant === 'mt-quic' ? { tls: { key: certs!.serverKey, cert: certs!.serverCert } } : {}),
    ...(variant === 'mt-quic' && quicDatagram !== undefined ? { protocols: [new QuicProtocol({ loopbackDatagramSize: quicDatagram })] } : {}),
  });
  const app = await NestFactory.createMicroservice(BenchModule, { strategy, logger: false });
  await app.listen();
  const address = strategy.addresses()[0];
  return {
    port: address.port,
    url: address.url,
    connections: async () => strategy.sessions.size,
    close: () => app.close(),
  };
}

const COUNT_GET_ROUTE = Buffer.from('route:count.get');

/** node:net echo: parses frames, answers requests, counts one-way frames; one write per read event. */
async function startRaw(): Promise<Running> {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    const out = new BatchWriter(socket);
    const reader = new FrameReader((buf, offset, length) => {
      const type = buf[offset + 2];
      if (type === T_ONE_WAY) {
        events++;
        return;
      }
      if (type !== T_REQUEST) return;
      const id = buf.readUInt32BE(offset + 4);
      const extLength = buf.readUInt16BE(offset + 8);
      const payloadStart = offset + HEADER + extLength;
      const ext = buf.subarray(offset + HEADER, payloadStart);
      if (ext.equals(COUNT_GET_ROUTE)) {
        const payload = Buffer.from(String(events));
        out.push(frameHead(T_RESPONSE, id, F_CODEC, Buffer.alloc(0), payload.length));
        out.push(payload);
        return;
      }
      const payloadLength = length - HEADER - extLength;
      if (payloadLength <= 4096) {
        // small: header and payload in one buffer, so a batch concatenates cheaply
        const reply = Buffer.allocUnsafe(HEADER + payloadLength);
        reply.set(buf.subarray(offset, offset + HEADER), 0);
        reply[2] = T_RESPONSE;
        reply.writeUInt16BE(0, 8);
        buf.copy(reply, HEADER, payloadStart, offset + length);
        out.push(reply);
      } else {
        out.push(frameHead(T_RESPONSE, id, buf.readUInt16BE(offset + 14) & F_CODEC, Buffer.alloc(0), payloadLength));
        out.push(buf.subarray(payloadStart, offset + length));
      }
    });
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      out.flush();
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `tcp://127.0.0.1:${port}`,
    connections: () => new Promise((resolve) => server.getConnections((_err, n) => resolve(n ?? -1))),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const variant = process.argv[2];
if (!isVariant(variant)) {
  console.error(`usage: server.js <${['nest-tcp', 'mt-tcp', 'mt-ws', 'mt-quic', 'raw'].join('|')}>`);
  process.exit(2);
}
let running: Running | null = null;

serveIpc(async (request) => {
  switch (request.cmd) {
    case 'init': {
      const certs = request.certs as BenchCerts | undefined;
      // the library's default (10,000 sessions) refuses the rest of a larger idle run
      const maxConnections = request.maxConnections as number | undefined;
      running =
        variant === 'nest-tcp'
          ? await startNestTcp()
          : variant === 'raw'
            ? await startRaw()
            : await startMsgTrans(variant, certs, maxConnections, request.quicDatagram as number | undefined);
      return { port: running.port, url: running.url, fdLimit: openFileLimit() ?? null, pid: process.pid };
    }
    case 'mem': {
      if (request.gc) await collectGarbage();
      return { mem: memorySnapshot(), connections: running ? await running.connections() : 0, events };
    }
    case 'snapshot': {
      await collectGarbage();
      return { file: writeHeapSnapshot(request.file as string), connections: running ? await running.connections() : 0 };
    }
    case 'exit': {
      // a graceful exit (after the reply is sent), so that --cpu-prof writes its profile
      const closing = running?.close().catch(() => undefined);
      await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 1000))]);
      setTimeout(() => process.exit(0), 50);
      return {};
    }
    default:
      throw new Error(`unknown command ${request.cmd}`);
  }
});
