import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Controller, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import {
  Observable,
  Subject,
  filter,
  finalize,
  firstValueFrom,
  interval,
  lastValueFrom,
  map,
  take,
  timeout,
  toArray,
  type Subscription,
} from 'rxjs';
import {
  MsgTransClient,
  MsgTransErrorCode,
  MsgTransModule,
  MsgTransServer,
  MsgTransSessions,
  NO_MESSAGE_HANDLER,
  PacketFlag,
  PacketType,
  type IncomingMessage,
  type MsgTransClientOptions,
  type MsgTransContext,
  type MsgTransSession,
  type MsgTransSessionClosed,
} from '../../lib/index.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { waitFor } from '../support/test-app.js';

const BOUND = 2000;

/** The first value of `source` within the bound. */
function next<T>(source: Observable<T>, what = 'value'): Promise<T> {
  return firstValueFrom(
    source.pipe(timeout({ first: BOUND, with: () => Promise.reject(new Error(`no ${what} within ${BOUND} ms`)) })),
  );
}

/** Every value of `source` until it completes, within the bound. */
function all<T>(source: Observable<T>): Promise<T[]> {
  return lastValueFrom(source.pipe(toArray(), timeout(BOUND)));
}

@Controller()
class RoomController {
  constructor(private readonly sessions: MsgTransSessions) {}

  @MessagePattern('whoami')
  whoami(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    return ctx.getSessionId();
  }

  @MessagePattern('room.join')
  join(@Payload() room: string, @Ctx() ctx: MsgTransContext) {
    return this.sessions.join(ctx.getSessionId(), room);
  }

  @MessagePattern('room.leave')
  leave(@Payload() room: string, @Ctx() ctx: MsgTransContext) {
    this.sessions.leave(ctx.getSessionId(), room);
    return this.sessions.roomsOfSession(ctx.getSessionId());
  }

  /** Tells the rest of the room; returns how many heard it. */
  @MessagePattern('room.say')
  say(@Payload() data: { room: string; text: string }, @Ctx() ctx: MsgTransContext) {
    const from = ctx.getSessionId();
    return this.sessions.emitToRoom(data.room, 'room.message', { from, text: data.text }, { except: from });
  }

  /** While handling the caller's request, asks the caller something and relays the answer. */
  @MessagePattern('ask.back')
  async askBack(@Payload() data: { pattern: string; data: unknown }, @Ctx() ctx: MsgTransContext) {
    const answer = await lastValueFrom(this.sessions.sendTo(ctx.getSessionId(), data.pattern, data.data));
    return { relayed: answer };
  }
}

/** A client, its session id on the server, and everything the server pushed to it. */
interface Peer {
  client: MsgTransClient;
  id: string;
  inbox: IncomingMessage[];
}

for (const protocol of PROTOCOL_CASES) {
  describe(`server push over msgtrans/${protocol.name}`, () => {
    let app: INestMicroservice;
    let server: MsgTransServer;
    let sessions: MsgTransSessions;
    let url: string;
    let a: Peer;
    let b: Peer;
    let c: Peer;
    const clients: MsgTransClient[] = [];
    const subscriptions: Subscription[] = [];
    let markers = 0;

    const newClient = async (extra: Partial<MsgTransClientOptions> = {}) => {
      const client = new MsgTransClient({ ...protocol.client(url, await testCertificates()), ...extra });
      clients.push(client);
      return client;
    };

    const newPeer = async (extra: Partial<MsgTransClientOptions> = {}): Promise<Peer> => {
      const client = await newClient(extra);
      const inbox: IncomingMessage[] = [];
      subscriptions.push(client.incomingMessages().subscribe((m) => inbox.push(m)));
      const id = await next(client.send<string>('whoami', {}), 'session id');
      return { client, id, inbox };
    };

    /**
     * What the server pushed to `peer` since the last call, as route and
     * data. A marker event sent to the peer last (same connection, so
     * delivered after anything sent before it) shows nothing is in flight.
     */
    const received = async (peer: Peer): Promise<Array<{ route: string; data: unknown }>> => {
      const marker = `marker.${++markers}`;
      const arrived = next(peer.client.incoming(marker), marker);
      assert.equal(sessions.emitTo(peer.id, marker, null), true, 'marker sent');
      await arrived;
      const index = peer.inbox.findIndex((m) => m.route === marker);
      const before = peer.inbox.slice(0, index);
      peer.inbox.splice(0, index + 1);
      return before.map((m) => ({ route: m.route, data: m.data }));
    };

    const join = (peer: Peer, room: string) => next(peer.client.send<boolean>('room.join', room));
    const ids = (list: MsgTransSession[]) => list.map((s) => s.id).sort();

    before(async () => {
      const certs = await testCertificates();
      app = await NestFactory.createMicroservice(
        { imports: [MsgTransModule.forRoot({ server: protocol.server(certs) })], controllers: [RoomController] },
        { ...MsgTransModule.microservice(), logger: false, abortOnError: false },
      );
      await app.listen();
      server = app.get(MsgTransServer);
      sessions = app.get(MsgTransSessions);
      url = server.addresses()[0].url;
      a = await newPeer();
      b = await newPeer();
      c = await newPeer();
    });

    after(async () => {
      for (const s of subscriptions) s.unsubscribe();
      for (const client of clients) client.close();
      await app?.close();
    });

    test('the module provides the serving server\'s sessions', () => {
      assert.ok(server.addresses()[0].port > 0);
      assert.equal(sessions, server.sessions);
      assert.ok(sessions.size >= 3);
      for (const peer of [a, b, c]) assert.equal(sessions.get(peer.id)?.protocol, protocol.name);
    });

    describe('events', () => {
      test('emitTo reaches that session only', async () => {
        const got = next(a.client.incoming('direct'));
        assert.equal(sessions.emitTo(a.id, 'direct', { n: 1 }), true);
        assert.deepEqual(await got, { n: 1 });
        assert.deepEqual(await received(a), [{ route: 'direct', data: { n: 1 } }]);
        assert.deepEqual(await received(b), []);
        assert.deepEqual(await received(c), []);
      });

      test('emitTo takes a session object and metadata; an unknown session gives false', async () => {
        const got = next(b.client.incomingMessages().pipe(filter((m) => m.route === 'direct.meta')));
        assert.equal(sessions.emitTo(sessions.get(b.id)!, 'direct.meta', 'x', { 'trace-id': 'abc' }), true);
        const message = await got;
        assert.equal(message.packetType, PacketType.ONE_WAY);
        assert.equal(message.data, 'x');
        assert.deepEqual(message.metadata, { 'trace-id': 'abc' });
        assert.equal(sessions.emitTo('no-such-session', 'direct', 1), false);
        assert.deepEqual(await received(b), [{ route: 'direct.meta', data: 'x' }]);
      });

      test('an integer pattern travels as biz_type and incoming(int) receives it', async () => {
        const got = next(a.client.incoming(42));
        const raw = next(a.client.incomingMessages().pipe(filter((m) => m.bizType === 42)));
        sessions.emitTo(a.id, 42, { biz: true });
        assert.deepEqual(await got, { biz: true });
        const message = await raw;
        assert.equal(message.route, '42');
        assert.equal(message.flags & PacketFlag.HAS_ROUTE_TAG, 0, 'no route entry for a biz_type pattern');
        assert.deepEqual(await received(a), [{ route: '42', data: { biz: true } }]);
      });

      test('an object pattern matches whatever the key order', async () => {
        const got = next(a.client.incoming({ v: 1, cmd: 'tick' }));
        sessions.emitTo(a.id, { cmd: 'tick', v: 1 }, [1, 2]);
        assert.deepEqual(await got, [1, 2]);
        assert.equal((await received(a)).length, 1);
      });

      test('raw Buffers are pushed raw', async () => {
        const got = next(a.client.incoming<Buffer>('bytes'));
        sessions.emitTo(a.id, 'bytes', Buffer.from([1, 2, 255]));
        const bytes = await got;
        assert.ok(Buffer.isBuffer(bytes));
        assert.deepEqual([...bytes], [1, 2, 255]);
        await received(a);
      });

      test('emitToRoom reaches the members and nobody else', async () => {
        assert.equal(await join(a, 'lobby'), true);
        assert.equal(await join(b, 'lobby'), true);
        assert.deepEqual(ids(sessions.members('lobby')), [a.id, b.id].sort());
        assert.deepEqual(sessions.roomsOfSession(a.id), ['lobby']);
        const gotA = next(a.client.incoming('room.message'));
        const gotB = next(b.client.incoming('room.message'));
        assert.equal(sessions.emitToRoom('lobby', 'room.message', { text: 'all' }), 2);
        assert.deepEqual(await gotA, { text: 'all' });
        assert.deepEqual(await gotB, { text: 'all' });
        assert.deepEqual(await received(a), [{ route: 'room.message', data: { text: 'all' } }]);
        assert.deepEqual(await received(b), [{ route: 'room.message', data: { text: 'all' } }]);
        assert.deepEqual(await received(c), [], 'a non-member got the room event');
        assert.equal(sessions.emitToRoom('empty-room', 'room.message', {}), 0);
      });

      test('except leaves the sender out', async () => {
        const gotB = next(b.client.incoming('room.message'));
        assert.equal(await next(a.client.send('room.say', { room: 'lobby', text: 'hi' })), 1);
        assert.deepEqual(await gotB, { from: a.id, text: 'hi' });
        assert.deepEqual(await received(a), [], 'the sender got its own message');
        assert.deepEqual(await received(b), [{ route: 'room.message', data: { from: a.id, text: 'hi' } }]);
        assert.deepEqual(await received(c), []);
        // a session object works as `except` too
        assert.equal(sessions.emitToRoom('lobby', 'room.message', 'x', { except: sessions.get(b.id)! }), 1);
        assert.deepEqual(await received(a), [{ route: 'room.message', data: 'x' }]);
        assert.deepEqual(await received(b), []);
      });

      test('a session that leaves a room no longer gets its events', async () => {
        assert.deepEqual(await next(b.client.send('room.leave', 'lobby')), []);
        assert.deepEqual(ids(sessions.members('lobby')), [a.id]);
        assert.equal(sessions.emitToRoom('lobby', 'room.message', 'after-leave'), 1);
        assert.deepEqual(await received(a), [{ route: 'room.message', data: 'after-leave' }]);
        assert.deepEqual(await received(b), []);
      });

      test('broadcast reaches every session, optionally but one, with metadata', async () => {
        const gots = [a, b, c].map((p) => next(p.client.incoming('news')));
        assert.equal(sessions.broadcast('news', { v: 1 }), sessions.size);
        for (const got of gots) assert.deepEqual(await got, { v: 1 });
        for (const peer of [a, b, c]) assert.deepEqual(await received(peer), [{ route: 'news', data: { v: 1 } }]);
        const withMeta = next(a.client.incomingMessages().pipe(filter((m) => m.route === 'news')));
        assert.equal(sessions.broadcast('news', { v: 2 }, { except: c.id, metadata: { region: 'eu' } }), sessions.size - 1);
        assert.deepEqual((await withMeta).metadata, { region: 'eu' });
        assert.deepEqual(await received(a), [{ route: 'news', data: { v: 2 } }]);
        assert.deepEqual(await received(b), [{ route: 'news', data: { v: 2 } }]);
        assert.deepEqual(await received(c), [], 'the excluded session got the broadcast');
      });
    });

    describe('server-to-client requests', () => {
      test('answered with a value', async () => {
        const seen: unknown[] = [];
        const stop = a.client.answer('ask.value', (data: { n: number }, message) => {
          seen.push(message.packetType);
          return data.n * 2;
        });
        try {
          assert.equal(await next(sessions.sendTo<number>(a.id, 'ask.value', { n: 21 })), 42);
          assert.deepEqual(seen, [PacketType.REQUEST]);
        } finally {
          stop();
        }
      });

      test('answered with a Promise', async () => {
        const stop = a.client.answer('ask.promise', async (data: string) => {
          await new Promise((resolve) => setTimeout(resolve, 10));
          return `${data}!`;
        });
        try {
          assert.deepEqual(await all(sessions.sendTo(a.id, 'ask.promise', 'later')), ['later!']);
        } finally {
          stop();
        }
      });

      test('answered with an Observable of several values, streamed as they come', async () => {
        const source = new Subject<number>();
        let asked = 0;
        const stop = b.client.answer('ask.stream', () => {
          asked++;
          return source;
        });
        try {
          const values: number[] = [];
          let completed = false;
          const sub = sessions.sendTo<number>(b.id, 'ask.stream', {}).subscribe({
            next: (v) => values.push(v),
            complete: () => (completed = true),
          });
          subscriptions.push(sub);
          await waitFor(() => asked === 1, BOUND);
          // each value travels as it is produced, not when the next one comes
          source.next(1);
          await waitFor(() => values.length === 1, BOUND);
          source.next(2);
          await waitFor(() => values.length === 2, BOUND);
          source.next(3);
          await waitFor(() => values.length === 3, BOUND);
          assert.equal(completed, false);
          source.complete();
          await waitFor(() => completed, BOUND);
          assert.deepEqual(values, [1, 2, 3]);
        } finally {
          stop();
        }
      });

      test('an integer pattern and an object pattern can be answered', async () => {
        const stops = [
          a.client.answer(9, (data: number) => data + 1),
          a.client.answer({ q: 'x', n: 1 }, () => 'object answered'),
        ];
        try {
          assert.equal(await next(sessions.sendTo(a.id, 9, 1)), 2);
          assert.equal(await next(sessions.sendTo(a.id, { n: 1, q: 'x' }, {})), 'object answered');
        } finally {
          stops.forEach((stop) => stop());
        }
      });

      test('a thrown error, a rejection and an erroring Observable reach the server as errors', async () => {
        const stops = [
          a.client.answer('ask.throw', () => {
            throw new Error('client says no');
          }),
          a.client.answer('ask.reject', async () => {
            throw { code: 7, reason: 'custom' };
          }),
          a.client.answer('ask.stream.fail', () => new Observable((s) => {
            s.next(1);
            s.next(2);
            s.error(new Error('mid-stream'));
          })),
        ];
        try {
          await assert.rejects(next(sessions.sendTo(a.id, 'ask.throw', {})), (err) => {
            assert.deepEqual(err, { status: 'error', message: 'client says no' });
            return true;
          });
          await assert.rejects(next(sessions.sendTo(a.id, 'ask.reject', {})), (err) => {
            assert.deepEqual(err, { code: 7, reason: 'custom' });
            return true;
          });
          const values: unknown[] = [];
          const error = await new Promise((resolve) =>
            sessions.sendTo(a.id, 'ask.stream.fail', {}).pipe(timeout(BOUND)).subscribe({
              next: (v) => values.push(v),
              error: resolve,
              complete: () => resolve('completed'),
            }),
          );
          assert.deepEqual(values, [1, 2]);
          assert.deepEqual(error, { status: 'error', message: 'mid-stream' });
        } finally {
          stops.forEach((stop) => stop());
        }
        // the connection is still good
        assert.equal(await next(a.client.send('whoami', {})), a.id);
      });

      test('an unanswered pattern gets the "no matching message handler" error', async () => {
        await assert.rejects(next(sessions.sendTo(a.id, 'ask.nobody', {})), (err) => err === NO_MESSAGE_HANDLER);
        // a handler removed by the function answer() returned no longer answers
        const stop = a.client.answer('ask.removed', () => 'still here');
        assert.equal(await next(sessions.sendTo(a.id, 'ask.removed', {})), 'still here');
        stop();
        await assert.rejects(next(sessions.sendTo(a.id, 'ask.removed', {})), (err) => err === NO_MESSAGE_HANDLER);
      });

      test('a session that is not open errors at once', async () => {
        await assert.rejects(next(sessions.sendTo('no-such-session', 'ask.value', {})), /not open/);
      });

      test('unsubscribing early sends CANCEL: the client stops producing', async () => {
        let finalized = 0;
        let produced = 0;
        const stop = c.client.answer('ask.ticker', () =>
          interval(5).pipe(
            map((i) => {
              produced++;
              return i;
            }),
            finalize(() => finalized++),
          ),
        );
        try {
          assert.deepEqual(await all(sessions.sendTo(c.id, 'ask.ticker', {}).pipe(take(2))), [0, 1]);
          await waitFor(() => finalized === 1, BOUND);
          const count = produced;
          await new Promise((resolve) => setTimeout(resolve, 40));
          assert.equal(produced, count, 'the client kept producing after CANCEL');
        } finally {
          stop();
        }
      });

      test('a handler can ask its caller back while handling the request', async () => {
        const stop = b.client.answer('ask.back.inner', (data: number) => data * 10);
        try {
          assert.deepEqual(await next(b.client.send('ask.back', { pattern: 'ask.back.inner', data: 4 })), { relayed: 40 });
        } finally {
          stop();
        }
      });

      test('a request pending when the client goes away fails on the server', async () => {
        const d = await newPeer();
        let asked = false;
        d.client.answer('ask.hang', () => {
          asked = true;
          return new Promise(() => undefined);
        });
        const pending = next(sessions.sendTo(d.id, 'ask.hang', {}));
        await waitFor(() => asked, BOUND);
        d.client.close();
        await assert.rejects(pending, (err: any) => {
          assert.equal(err.code, MsgTransErrorCode.CONNECTION_CLOSED);
          return true;
        });
      });
    });

    describe('session lifecycle', () => {
      test('connected$ emits on connect', async () => {
        const connected = next(sessions.connected$, 'connected$ emission');
        const e = await newPeer();
        const session = await connected;
        assert.equal(session.id, e.id);
        assert.equal(session.protocol, protocol.name);
        assert.equal(sessions.get(e.id), session);
      });

      test('closed$ emits with the rooms the session left; its rooms are cleaned up', async () => {
        const d = await newPeer();
        assert.equal(await join(d, 'r1'), true);
        assert.equal(await join(d, 'r2'), true);
        assert.equal(await join(a, 'r1'), true);
        assert.deepEqual(ids(sessions.members('r1')), [a.id, d.id].sort());
        assert.deepEqual(sessions.roomsOfSession(d.id).sort(), ['r1', 'r2']);
        const closed = next(sessions.closed$.pipe(filter((e) => e.session.id === d.id)), 'closed$ emission');
        d.client.close();
        const event: MsgTransSessionClosed = await closed;
        assert.deepEqual([...event.rooms].sort(), ['r1', 'r2']);
        assert.equal(event.error, undefined, `a normal close reported an error: ${event.error?.message}`);
        assert.equal(sessions.get(d.id), undefined);
        assert.deepEqual(ids(sessions.members('r1')), [a.id]);
        assert.deepEqual(sessions.members('r2'), []);
        assert.deepEqual(sessions.roomsOfSession(d.id), []);
        assert.equal(sessions.join(d.id, 'r1'), false, 'a closed session can join a room');
        assert.equal(sessions.emitTo(d.id, 'direct', 1), false);
        assert.equal(sessions.emitToRoom('r1', 'room.message', 'only a'), 1);
        assert.deepEqual(await received(a), [{ route: 'room.message', data: 'only a' }]);
      });

      test('the server closing a session emits closed$ and the client sees the disconnect', async () => {
        // no reconnection: it would add a session while later tests watch connected$
        const d = await newPeer({ reconnect: false });
        await join(d, 'r3');
        const disconnected = new Promise<void>((resolve) => d.client.on('disconnect', () => resolve()));
        const closed = next(sessions.closed$.pipe(filter((e) => e.session.id === d.id)), 'closed$ emission');
        sessions.get(d.id)!.close();
        assert.deepEqual((await closed).rooms, ['r3']);
        await Promise.race([
          disconnected,
          new Promise((_, reject) => setTimeout(() => reject(new Error('client saw no disconnect')), BOUND)),
        ]);
        assert.deepEqual(sessions.members('r3'), []);
      });

      test('a client that only connects, sending nothing, is a session that receives pushes', async () => {
        const connected = next(sessions.connected$, 'connected$ emission');
        const quiet = await newClient();
        await quiet.connect();
        const session = await connected;
        assert.equal(session.protocol, protocol.name);
        // an event
        const got = next(quiet.incoming('hello'));
        assert.equal(sessions.emitTo(session.id, 'hello', { to: 'quiet' }), true);
        assert.deepEqual(await got, { to: 'quiet' });
        // a room
        assert.equal(sessions.join(session, 'quiet-room'), true);
        const inRoom = next(quiet.incoming('room.message'));
        assert.equal(sessions.emitToRoom('quiet-room', 'room.message', 'r'), 1);
        assert.equal(await inRoom, 'r');
        // a request
        quiet.answer('ask.quiet', () => 'answered');
        assert.equal(await next(sessions.sendTo(session.id, 'ask.quiet', {})), 'answered');
      });
    });
  });
}
