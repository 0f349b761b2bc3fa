/**
 * TcpConnection below the session: what it holds for a peer that does not
 * read yet, and how it hands that backlog over once the peer reads.
 */
import assert from 'node:assert/strict';
import { connect as tcpConnect, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { MSGTRANS_DEFAULTS } from '../../lib/constants.js';
import { parseEndpoint } from '../../lib/transport/endpoint.js';
import type { MsgTransConnection } from '../../lib/transport/msgtrans-connection.interface.js';
import type { ConnectionLimits } from '../../lib/transport/msgtrans-protocol.interface.js';
import { TcpProtocol } from '../../lib/transport/tcp/tcp-protocol.js';
import { within } from '../support/async.js';
import { encode } from '../support/raw-wire.js';
import { waitFor } from '../support/test-app.js';

const LIMITS: ConnectionLimits = {
  maxPacketSize: MSGTRANS_DEFAULTS.maxPacketSize,
  maxExtHeaderSize: MSGTRANS_DEFAULTS.maxExtHeaderSize,
  incompleteMessageTimeout: 30_000,
  maxSendBufferSize: 8 * 1024 * 1024,
  sendStallTimeout: 60_000,
};

const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A server-side TcpConnection and the raw socket of its peer, which starts paused. */
async function serverAndPausedPeer(): Promise<{ server: MsgTransConnection; peer: Socket; closed: () => boolean }> {
  const listener = new TcpProtocol().createListener(parseEndpoint('tcp://127.0.0.1:0'), {
    limits: LIMITS,
    tls: undefined,
    heartbeatInterval: 0,
  });
  let accepted: MsgTransConnection | undefined;
  const address = await listener.listen((c) => (accepted = c));
  cleanups.push(() => listener.close());
  const peer = tcpConnect({ host: '127.0.0.1', port: address.port });
  peer.pause();
  peer.on('error', () => undefined);
  cleanups.push(() => peer.destroy());
  await waitFor(() => accepted !== undefined, 5000);
  const server = accepted as MsgTransConnection;
  let isClosed = false;
  server.open({ onPacket: () => undefined, onClose: () => (isClosed = true) });
  cleanups.push(() => server.close(new Error('test over')));
  return { server, peer, closed: () => isClosed };
}

describe('TcpConnection backlog', () => {
  test('a backlog of 100,000s of small packets (8 MiB) for a peer that was not reading is handed over in linear time once it reads', async () => {
    const { server, peer, closed } = await serverAndPausedPeer();
    // the smallest packet there is (a header), sent while send() reports room: what a well-behaved producer does
    const small = encode({ packetType: 0, bizType: 1, messageId: 1, payload: Buffer.alloc(0) });
    let sent = 0;
    while (sent < 1_000_000 && server.send(small)) sent++;
    sent++; // the one that reported a full backlog is queued too
    assert.ok(sent > 300_000, `${sent} packets fit in maxSendBufferSize`);
    const expected = sent * small.length;
    let received = 0;
    const started = Date.now();
    const allIn = new Promise<void>((resolve) => {
      peer.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received >= expected) resolve();
      });
    });
    peer.resume();
    // Linear: well under a second even on a loaded machine. Taking one held
    // packet off the front of an array at a time is quadratic: ~10 s here.
    await within(allIn, 5000, `${sent} packets (${expected} bytes) reaching the peer`);
    assert.equal(received, expected);
    assert.equal(closed(), false);
    await waitFor(() => server.bufferedAmount === 0, 5000);
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 5000, `handed over in ${elapsed} ms`);
  });
});
