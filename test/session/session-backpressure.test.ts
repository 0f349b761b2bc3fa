/**
 * The session's side of backpressure against a scripted connection: what it
 * hands to `send()`, what it holds once `send()` returns false, and what it
 * releases on `onDrain()` (the connection interface's contract), without
 * sockets or timing.
 */
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Subject, from } from 'rxjs';
import { PacketFlag, PacketType, type MsgTransPacket } from '../../lib/codec/packet.js';
import { JsonCodec } from '../../lib/envelope/json-codec.js';
import { MsgTransSession, type MsgTransSessionHandler } from '../../lib/session/msgtrans-session.js';
import type { MsgTransConnection, MsgTransConnectionSink } from '../../lib/transport/msgtrans-connection.interface.js';
import { parsePacket } from '../support/raw-wire.js';

const LIMIT = 1000;

/** A connection whose backlog only empties when the test says so. */
class ScriptedConnection implements MsgTransConnection {
  readonly protocol = 'scripted';
  readonly remoteAddress = undefined;
  readonly remotePort = undefined;
  closed = false;
  sink: MsgTransConnectionSink | null = null;
  readonly written: Buffer[] = [];
  bufferedAmount = 0;

  open(sink: MsgTransConnectionSink): void {
    this.sink = sink;
  }

  send(packet: Buffer): boolean {
    this.written.push(packet);
    this.bufferedAmount += packet.length;
    return this.bufferedAmount < LIMIT;
  }

  /** The peer took everything: the backlog is empty and the sink hears it. */
  drain(): void {
    this.bufferedAmount = 0;
    this.sink?.onDrain?.();
  }

  close(): void {
    this.closed = true;
  }

  unwrap<T>(): T {
    return this as unknown as T;
  }
}

const handler: MsgTransSessionHandler = { onRequest() {}, onEvent() {}, onClose() {} };

function newSession(sessionHandler = handler): { session: MsgTransSession; connection: ScriptedConnection } {
  const connection = new ScriptedConnection();
  const session = new MsgTransSession(
    connection,
    {
      limits: { maxPacketSize: 1 << 20, maxExtHeaderSize: 1 << 14, incompleteMessageTimeout: 0, maxSendBufferSize: LIMIT, sendStallTimeout: 0 },
      maxInFlight: 100,
      codec: new JsonCodec(),
      compression: undefined,
      requestTimeout: 0,
    },
    sessionHandler,
  );
  return { session, connection };
}

/** A request from the peer, delivered as a packet so the session counts it. */
function peerRequest(connection: ScriptedConnection, messageId: number): MsgTransPacket {
  const packet: MsgTransPacket = {
    compression: 0,
    packetType: PacketType.REQUEST,
    bizType: 1,
    messageId,
    flags: PacketFlag.CODEC,
    extHeader: Buffer.alloc(0),
    payload: Buffer.from('null'),
  };
  connection.sink!.onPacket(packet);
  return packet;
}

const payloads = (connection: ScriptedConnection) => connection.written.map((p) => parsePacket(p).payload.toString());

describe('session backpressure (scripted connection)', () => {
  test('after send() returns false, packets wait in the session and leave in order on onDrain', () => {
    const { session, connection } = newSession();
    const event = (i: number) => session.emit(1, undefined, `${i}${'x'.repeat(300)}`, undefined);
    for (let i = 0; i < 4; i++) event(i);
    // the fourth send filled the backlog: it was handed over, nothing after it is
    assert.equal(connection.written.length, 4);
    assert.equal(session.congested, true);
    for (let i = 4; i < 7; i++) event(i);
    assert.equal(connection.written.length, 4, 'held while congested');
    connection.drain();
    assert.equal(connection.written.length, 7);
    assert.equal(session.congested, false);
    assert.deepEqual(
      payloads(connection).map((p) => p.slice(1, 2)),
      ['0', '1', '2', '3', '4', '5', '6'],
    );
    session.close();
  });

  test('pushes held past maxSendBufferSize drop the peer (SEND_BUFFER_FULL) instead of growing without bound', () => {
    const closed: Array<Error | undefined> = [];
    const { session, connection } = newSession({ ...handler, onClose: (_s, error) => closed.push(error) });
    for (let i = 0; i < 4; i++) session.emit(1, undefined, 'x'.repeat(300), undefined);
    for (let i = 0; i < 3; i++) session.emit(1, undefined, 'x'.repeat(300), undefined);
    assert.equal(session.closed, false, 'held: 3 x ~320 bytes, under the limit');
    session.emit(1, undefined, 'x'.repeat(300), undefined);
    assert.equal(session.closed, true);
    assert.equal(connection.closed, true);
    assert.equal((closed[0] as { code?: string }).code, 'ERR_MSGTRANS_SEND_BUFFER_FULL');
  });

  test('a streamed reply holds its values unencoded while congested and encodes them as the connection drains', () => {
    const { session, connection } = newSession();
    let encoded = 0;
    const value = (i: number) => ({ toJSON: () => (encoded++, `${i}${'v'.repeat(300)}`) });
    const request = peerRequest(connection, 9);
    const message = { ...request, route: '1', metadata: undefined, data: null, payloadSize: 4 };
    session.reply(message, from([0, 1, 2, 3, 4, 5, 6, 7].map(value)));
    // four values fill the backlog; the other four wait as references
    assert.equal(encoded, 4);
    assert.equal(session.activeRequests, 1, 'the reply has not ended');
    connection.drain();
    assert.equal(encoded, 8);
    connection.drain();
    const flags = connection.written.map((p) => parsePacket(p).flags);
    assert.deepEqual(flags, [...Array(8).fill(PacketFlag.MORE | PacketFlag.CODEC), PacketFlag.END]);
    assert.equal(session.activeRequests, 0);
    session.close();
  });

  test('while the connection keeps up nothing waits: a value is handed over as it is produced', () => {
    const { session, connection } = newSession();
    const request = peerRequest(connection, 3);
    const source = new Subject<number>();
    session.reply({ ...request, route: '1', metadata: undefined, data: null, payloadSize: 4 }, source);
    source.next(1);
    source.next(2);
    assert.equal(connection.written.length, 2, 'a second value shows it is a stream: both go at once');
    source.next(3);
    assert.equal(connection.written.length, 3);
    source.complete();
    assert.equal(session.congested, false);
    assert.deepEqual(payloads(connection), ['1', '2', '3', '']);
    session.close();
  });

  test('a graceful close hands waiting events to the connection but not waiting requests', () => {
    const { session, connection } = newSession();
    session.emit(1, undefined, 'e'.repeat(1200), undefined);
    assert.equal(session.congested, true);
    session.emit(1, undefined, 'held event', undefined);
    const errors: unknown[] = [];
    session.request(1, undefined, 'held request', undefined, { next() {}, error: (e) => errors.push(e), complete() {} });
    session.close();
    assert.deepEqual(
      connection.written.map((p) => parsePacket(p).packetType),
      [PacketType.ONE_WAY, PacketType.ONE_WAY],
    );
    assert.equal(errors.length, 1, 'the held request failed instead');
  });
});
