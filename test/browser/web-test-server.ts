/**
 * The Nest app the web client suites talk to: the shared test controller
 * (echo, biz_type 7, streams, errors, events) plus a few handlers that use
 * the server's `sessions` API, served by MsgTransServer on ws:// or wss://
 * with zlib compression and an `authenticate` hook.
 */
import 'reflect-metadata';
import { Controller, Inject, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom, toArray } from 'rxjs';
import { MsgTransServer, MsgTransSessions, type MsgTransContext, type MsgTransServerOptions } from '../../lib/index.js';
import { testCertificates } from '../support/protocols.js';
import { Observed, TestController } from '../support/test-app.js';

/** Credentials the test server accepts; none at all is accepted as `anonymous`. */
export const GOOD_TOKEN = 'good-token';

/** Server payloads of at least this many bytes go out zlib-compressed. */
export const SERVER_COMPRESSION_THRESHOLD = 512;

@Controller()
class WebController {
  constructor(@Inject(MsgTransSessions) private readonly sessions: MsgTransSessions) {}

  @MessagePattern('web.whoami')
  whoami(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    return { sessionId: ctx.getSessionId(), principal: ctx.getPrincipal() ?? null };
  }

  @MessagePattern('web.join')
  join(@Payload() room: string, @Ctx() ctx: MsgTransContext) {
    return this.sessions.join(ctx.getSessionId(), room);
  }

  /** What the handler received for a raw payload. */
  @MessagePattern('web.bytes')
  bytes(@Payload() data: unknown) {
    return { isBuffer: Buffer.isBuffer(data), bytes: Buffer.isBuffer(data) ? [...data] : null };
  }

  /** Asks the caller back (`sessions.sendTo`) while handling its request, and relays every value or the error. */
  @MessagePattern('web.ask')
  async ask(@Payload() question: { pattern: string; data: unknown }, @Ctx() ctx: MsgTransContext) {
    try {
      return { values: await lastValueFrom(this.sessions.sendTo(ctx.getSessionId(), question.pattern, question.data).pipe(toArray())) };
    } catch (error) {
      return { error };
    }
  }
}

export interface WebTestServer {
  app: INestMicroservice;
  server: MsgTransServer;
  sessions: MsgTransSessions;
  observed: Observed;
  /** ws://127.0.0.1:<port>/msgtrans or wss://… */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Starts the app on `listen` (`ws://127.0.0.1:0/msgtrans`, `wss://…`; a fixed port to restart on it). */
export async function startWebTestServer(listen: string, extra: Partial<MsgTransServerOptions> = {}): Promise<WebTestServer> {
  const certs = await testCertificates();
  const server = new MsgTransServer({
    listen,
    tls: { key: certs.serverKey, cert: certs.serverCert },
    compression: { algorithm: 'zlib', threshold: SERVER_COMPRESSION_THRESHOLD },
    authenticate: ({ credentials }) => {
      if (credentials === undefined) return 'anonymous';
      return (credentials as { token?: unknown } | null)?.token === GOOD_TOKEN ? 'user:good' : false;
    },
    ...extra,
  });
  const app = await NestFactory.createMicroservice(
    {
      module: class WebTestModule {},
      controllers: [TestController, WebController],
      providers: [Observed, { provide: MsgTransSessions, useValue: server.sessions }],
    },
    { strategy: server, logger: false },
  );
  await app.listen();
  const { port, url } = server.addresses()[0];
  return { app, server, sessions: server.sessions, observed: app.get(Observed), url, port, close: () => app.close() };
}
