/**
 * The WebSocket frames this transport writes itself (one final binary frame
 * per packet, a turn's frames in one write) and the frame tracker that
 * follows what a peer sends. Frames are checked against RFC 6455 §5.2 by a
 * decoder written here, and end to end by `ws` itself on the other side:
 * a server rejects unmasked client frames, a client masked server frames.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, describe, test } from 'node:test';
import { lastValueFrom } from 'rxjs';
import { WebSocket } from 'ws';
import { MsgTransClient } from '../../lib/index.js';
import { encodeWsFrames } from '../../lib/transport/ws/ws-frame-encoder.js';
import { WsFrameTracker } from '../../lib/transport/ws/ws-frame-tracker.js';
import { within } from '../support/async.js';
import { CODEC, HAS_ROUTE_TAG, REQUEST, RESPONSE, encode, parsePacket, wsFrame } from '../support/raw-wire.js';
import { startMsgTrans, type RunningApp } from '../support/test-app.js';

const WAIT_MS = 5000;

// payload lengths around every length-encoding boundary (7/16/64 bit) and the copy limit
const SIZES = [0, 1, 63, 64, 67, 125, 126, 127, 1000, 16383, 16384, 65535, 65536, 70000];

interface Frame {
  fin: boolean;
  opcode: number;
  masked: boolean;
  payload: Buffer;
}

/** RFC 6455 §5.2, independently of lib/. */
function decodeFrames(bytes: Buffer): Frame[] {
  const frames: Frame[] = [];
  let at = 0;
  while (at < bytes.length) {
    const fin = (bytes[at] & 0x80) !== 0;
    const opcode = bytes[at] & 0x0f;
    const masked = (bytes[at + 1] & 0x80) !== 0;
    let length = bytes[at + 1] & 0x7f;
    at += 2;
    if (length === 126) {
      length = bytes.readUInt16BE(at);
      at += 2;
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at));
      at += 8;
    }
    const key = masked ? bytes.subarray(at, at + 4) : null;
    if (masked) at += 4;
    const payload = Buffer.from(bytes.subarray(at, at + length));
    assert.equal(payload.length, length, 'frame cut short');
    if (key) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
    frames.push({ fin, opcode, masked, payload });
    at += length;
  }
  return frames;
}

function packets(): Buffer[] {
  return SIZES.map((n, i) => Buffer.alloc(n, i + 1));
}

describe('WebSocket frames written by the transport', () => {
  for (const masked of [false, true]) {
    test(`${masked ? 'masked (client)' : 'unmasked (server)'}: one final binary frame per packet, payloads intact`, () => {
      const input = packets();
      const chunks = encodeWsFrames(input, 0, input.length, masked);
      const frames = decodeFrames(Buffer.concat(chunks));
      assert.equal(frames.length, input.length);
      frames.forEach((f, i) => {
        assert.equal(f.fin, true);
        assert.equal(f.opcode, 2, 'binary');
        assert.equal(f.masked, masked);
        assert.ok(f.payload.equals(input[i]), `payload ${i} (${input[i].length} bytes)`);
      });
      // masking works on a copy: what the caller handed over is not changed
      input.forEach((p, i) => assert.ok(p.equals(Buffer.alloc(SIZES[i], i + 1))));
      if (masked) {
        assert.equal(chunks.length, 1, 'a client batch is one buffer');
      } else {
        // large payloads follow uncopied; everything else shares buffers
        const large = input.filter((p) => p.length >= 16384);
        for (const p of large) assert.ok(chunks.includes(p), `a ${p.length}-byte payload is written as is`);
        assert.equal(chunks.length, large.length * 2, 'header run + payload for each large packet');
      }
    });
  }

  test('a sub-range of the batch is framed alone', () => {
    const input = packets();
    const frames = decodeFrames(Buffer.concat(encodeWsFrames(input, 2, 5, false)));
    assert.deepEqual(
      frames.map((f) => f.payload.length),
      SIZES.slice(2, 5),
    );
  });
});

describe('WebSocket frame tracker', () => {
  // two messages, a ping between fragments of the second, all as a client sends them (masked)
  function stream(): { bytes: Buffer; messages: number } {
    const bytes = Buffer.concat([
      wsFrame({ opcode: 2, payload: Buffer.alloc(300, 7) }),
      wsFrame({ fin: false, opcode: 2, payload: Buffer.alloc(10, 1) }),
      wsFrame({ opcode: 9, payload: Buffer.from('ping') }),
      wsFrame({ opcode: 0, payload: Buffer.alloc(20, 2) }),
      wsFrame({ opcode: 2, payload: Buffer.alloc(70000, 3), masked: false }),
    ]);
    return { bytes, messages: 3 };
  }

  test('counts whole messages however the bytes are split, headers split too', () => {
    const { bytes, messages } = stream();
    for (const size of [1, 2, 3, 5, 13, 64, 1000, bytes.length]) {
      const tracker = new WsFrameTracker();
      let completed = 0;
      for (let at = 0; at < bytes.length; at += size) {
        completed += tracker.push(bytes.subarray(at, at + size));
      }
      assert.equal(completed, messages, `chunks of ${size}`);
      assert.equal(tracker.pendingBytes, 0, `nothing held after the last message (chunks of ${size})`);
    }
  });

  test('a partial header, a partial payload and an open fragmented message are pending', () => {
    const { bytes } = stream();
    const tracker = new WsFrameTracker();
    tracker.push(bytes.subarray(0, 1));
    assert.ok(tracker.pendingBytes > 0, 'one header byte');
    tracker.push(bytes.subarray(1, 100));
    assert.ok(tracker.pendingBytes > 0, 'part of the payload');
    const firstEnd = 2 + 2 + 4 + 300;
    assert.equal(tracker.push(bytes.subarray(100, firstEnd)), 1);
    assert.equal(tracker.pendingBytes, 0);
    tracker.push(bytes.subarray(firstEnd, firstEnd + 12));
    assert.ok(tracker.pendingBytes > 0, 'a fragment without FIN keeps the message open');
  });
});

describe('WebSocket frames between real peers', () => {
  let running: RunningApp & { url: string };
  const clients: MsgTransClient[] = [];
  const sockets: WebSocket[] = [];

  after(async () => {
    for (const c of clients) c.close();
    for (const s of sockets) s.terminate();
    await running?.close().catch(() => undefined);
  });

  test('a turn of requests of every length encoding is answered intact (ws checks masking both ways)', async () => {
    running = await startMsgTrans({ listen: 'ws://127.0.0.1:0/frames' });
    const client = new MsgTransClient({ url: running.url, connectTimeout: WAIT_MS, requestTimeout: WAIT_MS });
    clients.push(client);
    const values = [...SIZES, 1024 * 1024].map((n, i) => String.fromCharCode(97 + (i % 26)).repeat(n));
    const replies = await within(
      Promise.all(values.map((v) => lastValueFrom(client.send<string>('echo', v)))),
      WAIT_MS,
      'echo replies',
    );
    replies.forEach((r, i) => assert.equal(r, values[i], `reply ${i} (${values[i].length} chars)`));
  });

  test('a turn of replies reaches the socket in one write, not one per packet', async () => {
    const client = new MsgTransClient({ url: running.url, connectTimeout: WAIT_MS, requestTimeout: WAIT_MS });
    clients.push(client);
    await lastValueFrom(client.send('echo', 'warm'));
    const port = Number(new URL(running.url).port);
    let writes = 0;
    const write = net.Socket.prototype.write;
    net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
      if (this.localPort === port) writes++;
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof write;
    const count = 32;
    try {
      const replies = await within(
        Promise.all(Array.from({ length: count }, (_, i) => lastValueFrom(client.send<number>('echo', i)))),
        WAIT_MS,
        'echo replies',
      );
      assert.deepEqual(replies, Array.from({ length: count }, (_, i) => i));
    } finally {
      net.Socket.prototype.write = write;
    }
    // one request write arrives as one chunk or a few: each turn's replies are one write
    // (ws.send per packet made two socket writes per reply)
    assert.ok(writes >= 1 && writes <= 4, `${count} replies took ${writes} socket writes`);
  });

  test('a raw ws peer reads the server frames of a whole turn, one message per packet', async () => {
    const ws = new WebSocket(running.url, { perMessageDeflate: false });
    sockets.push(ws);
    await within(new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject)), WAIT_MS, 'open');
    const received: Buffer[] = [];
    ws.on('message', (data) => received.push(data as Buffer));
    SIZES.forEach((n, i) => {
      ws.send(
        encode({
          packetType: REQUEST,
          messageId: i + 1,
          flags: HAS_ROUTE_TAG | CODEC,
          ext: 'route:echo',
          payload: JSON.stringify('x'.repeat(n)),
        }),
      );
    });
    await within(
      new Promise<void>((resolve) => {
        const check = () => (received.length >= SIZES.length ? resolve() : setTimeout(check, 10));
        check();
      }),
      WAIT_MS,
      'all replies',
    );
    const byId = new Map(received.map((m) => parsePacket(m)).map((p) => [p.messageId, p]));
    SIZES.forEach((n, i) => {
      const p = byId.get(i + 1);
      assert.ok(p, `reply ${i + 1}`);
      assert.equal(p.packetType, RESPONSE);
      assert.equal(JSON.parse(p.payload.toString('utf8')), 'x'.repeat(n));
    });
  });
});
