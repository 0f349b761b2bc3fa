/**
 * QUIC delivers what is queued when closed gracefully (issue 9 item 6, quic
 * part), keeps a healthy reader through a large streamed reply (issue 9
 * item 3), holds a slow reader's backlog in bounds instead of growing
 * memory, and works over IPv6. Real sockets over loopback.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Controller } from '@nestjs/common';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom, map, range, toArray } from 'rxjs';
import {
  MsgTransClient,
  MsgTransServer,
  parseEndpoint,
  type MsgTransConnection,
  type MsgTransServerOptions,
} from '../../lib/index.js';
import { protocolFor, protocolTable, resolveSessionOptions } from '../../lib/common/resolve-options.js';
import { webcrypto } from 'node:crypto';
import Logger, { LogLevel } from '@matrixai/logger';
import { QUICClient, events } from '@matrixai/quic';
import { CANCEL, ONE_WAY, encode, frame } from '../support/raw-wire.js';
import type { DevCertificates } from '../../sample/dev-certs.js';
import { testCertificates } from '../support/protocols.js';
import { waitFor } from '../support/test-app.js';
import { sleep, within } from '../support/async.js';

const HALF_MIB = 512 * 1024;
const MIB = 1024 * 1024;
const received: number[] = [];

@Controller()
class BulkController {
  @EventPattern('bulk')
  bulk(@Payload() data: string) {
    received.push(data.length);
  }

  @MessagePattern('slow.echo')
  async slowEcho(@Payload() data: string) {
    await sleep(300);
    return data.length;
  }

  @MessagePattern('mebibytes')
  mebibytes(@Payload() n: number) {
    return range(0, n).pipe(map((i) => Buffer.alloc(MIB, i)));
  }
}

let certs: DevCertificates;
before(async () => {
  certs = await testCertificates();
});

async function start(url = 'quic://127.0.0.1:0', extra: Partial<MsgTransServerOptions> = {}) {
  const server = new MsgTransServer({ listen: url, tls: { key: certs.serverKey, cert: certs.serverCert }, ...extra });
  const { NestFactory } = await import('@nestjs/core');
  const { Module } = await import('@nestjs/common');
  @Module({ controllers: [BulkController] })
  class BulkModule {}
  const app = await NestFactory.createMicroservice(BulkModule, { strategy: server, logger: false } as never);
  await app.listen();
  return { app, server, url: server.addresses()[0].url };
}

describe('QUIC graceful close delivers what is queued', () => {
  test('client: emit(512 KiB) x3 then close(): all 3 events arrive', async () => {
    const { app, url } = await start();
    received.length = 0;
    const client = new MsgTransClient({ url, tls: { ca: certs.ca } });
    try {
      await within(client.connect(), 10_000, 'connect');
      for (let i = 0; i < 3; i++) client.emit('bulk', 'x'.repeat(HALF_MIB)).subscribe();
      client.close();
      await waitFor(() => received.length === 3, 10_000);
      assert.deepEqual(received, [HALF_MIB + 0, HALF_MIB, HALF_MIB].map(() => HALF_MIB));
    } finally {
      client.close();
      await app.close();
    }
  });

  test('server: pushes of 512 KiB x3 then close(): all 3 arrive, and a reply in flight is delivered', async () => {
    const { app, server, url } = await start();
    const client = new MsgTransClient({ url, tls: { ca: certs.ca } });
    try {
      await within(client.connect(), 10_000, 'connect');
      const pushes: number[] = [];
      const sub = client.incoming<string>('push').subscribe((data) => pushes.push(data.length));
      const reply = lastValueFrom(client.send('slow.echo', 'y'.repeat(1000)));
      await waitFor(() => server.sessions.size === 1, 5000);
      await sleep(50);
      for (let i = 0; i < 3; i++) server.sessions.broadcast('push', 'p'.repeat(HALF_MIB));
      const closing = app.close();
      assert.equal(await within(reply, 10_000, 'reply in flight'), 1000);
      await waitFor(() => pushes.length === 3, 10_000);
      await within(closing, 15_000, 'server close');
      sub.unsubscribe();
      assert.deepEqual(pushes, [HALF_MIB, HALF_MIB, HALF_MIB]);
    } finally {
      client.close();
      await app.close().catch(() => undefined);
    }
  });
});

describe('QUIC backpressure', () => {
  test('a streamed reply of 24 x 1 MiB reaches a reading client; the connection is not dropped', async () => {
    const { app, url } = await start();
    const client = new MsgTransClient({ url, tls: { ca: certs.ca }, requestTimeout: 60_000 });
    try {
      const values = await within(lastValueFrom(client.send<Buffer>('mebibytes', 24).pipe(toArray())), 60_000, '24 MiB stream');
      assert.equal(values.length, 24);
      values.forEach((v, i) => {
        assert.equal(Buffer.from(v).length, MIB);
        assert.equal(Buffer.from(v)[0], i);
      });
      assert.equal(await lastValueFrom(client.send('slow.echo', 'still here')), 10);
    } finally {
      client.close();
      await app.close();
    }
  });

  test('a peer that does not read: send() reports a full backlog, memory stays bounded, it is dropped after sendStallTimeout', async () => {
    // protocol level: a server connection writing to a client that never reads its stream
    const limits = { ...resolveSessionOptions({}).limits, maxSendBufferSize: 4 * MIB, sendStallTimeout: 1500 };
    const table = protocolTable();
    const endpoint = parseEndpoint('quic://127.0.0.1:0');
    const listener = protocolFor(table, 'quic').createListener(endpoint, {
      limits,
      tls: { key: certs.serverKey, cert: certs.serverCert },
      heartbeatInterval: 15_000,
    });
    let serverSide: MsgTransConnection | undefined;
    let closeError: Error | undefined;
    let closed = false;
    const address = await listener.listen((c) => {
      serverSide = c;
      c.open({ onPacket: () => undefined, onClose: (e) => ((closed = true), (closeError = e)) });
    });
    // a peer that opens the stream, says one thing and never reads: @matrixai/quic's own client
    const peer = await QUICClient.createQUICClient(
      {
        host: '127.0.0.1',
        port: address.port,
        localHost: '127.0.0.1',
        serverName: 'localhost',
        crypto: { ops: { randomBytes: async (data) => void webcrypto.getRandomValues(new Uint8Array(data)) } },
        logger: new Logger('non-reader', LogLevel.SILENT),
        config: { applicationProtos: ['msgtrans'], ca: certs.ca, verifyPeer: true },
      },
      { timer: 5000 },
    );
    peer.addEventListener(events.EventQUICClientError.name, () => undefined);
    const stream = peer.connection.newStream('bidi');
    const writer = stream.writable.getWriter();
    void writer.write(frame(encode({ packetType: ONE_WAY, messageId: 0, flags: CANCEL })));
    try {
      await waitFor(() => serverSide !== undefined, 5000);
      const packet = encode({ packetType: ONE_WAY, messageId: 1, payload: Buffer.alloc(64 * 1024) });
      let accepted = 0;
      let full = false;
      for (let i = 0; i < 200 && !full; i++) {
        full = !serverSide!.send(packet);
        accepted++;
        await sleep(2);
      }
      assert.ok(full, `send() never reported a full backlog (${accepted} packets)`);
      assert.ok(serverSide!.bufferedAmount <= limits.maxSendBufferSize + packet.length + 4, `backlog ${serverSide!.bufferedAmount}`);
      await waitFor(() => closed, 8000);
      assert.equal((closeError as { code?: string } | undefined)?.code, 'ERR_MSGTRANS_SEND_BUFFER_FULL');
    } finally {
      await peer.destroy({ force: true }).catch(() => undefined);
      await listener.close();
    }
  });
});

describe('QUIC over IPv6', () => {
  let running: Awaited<ReturnType<typeof start>> | undefined;
  after(async () => running?.app.close());

  test('quic://[::1]:port serves', async (t) => {
    try {
      running = await start('quic://[::1]:0');
    } catch (err) {
      t.skip(`no IPv6 loopback here: ${(err as Error).message}`);
      return;
    }
    assert.match(running.url, /^quic:\/\/\[::1\]:\d+$/);
    const client = new MsgTransClient({ url: running.url, tls: { ca: certs.ca } });
    try {
      assert.equal(await within(lastValueFrom(client.send('slow.echo', 'six')), 10_000, 'echo over IPv6'), 3);
    } finally {
      client.close();
    }
  });
});

