import 'reflect-metadata';
import {
  Catch,
  Controller,
  Module,
  UseFilters,
  UseGuards,
  UseInterceptors,
  type CallHandler,
  type CanActivate,
  type ExecutionContext,
  type INestMicroservice,
  type NestInterceptor,
  type RpcExceptionFilter,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, MessagePattern, Payload, RpcException, type CustomStrategy } from '@nestjs/microservices';
import { EMPTY, NEVER, Observable, concat, finalize, interval, map, of, throwError } from 'rxjs';
import { MsgTransServer, type MsgTransContext, type MsgTransServerOptions } from '../../lib/index.js';

/** What handlers observed, for tests to assert on. */
export class Observed {
  events: unknown[] = [];
  cancelled = 0;
  ticks = 0;
}

class DenyGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return !(context.switchToRpc().getData() as { deny?: boolean }).deny;
  }
}

class DoubleInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(map((value) => (value as number) * 2));
  }
}

@Catch()
class TeapotFilter implements RpcExceptionFilter {
  catch(): Observable<never> {
    return throwError(() => ({ teapot: true }));
  }
}

@Controller()
export class TestController {
  constructor(private readonly observed: Observed) {}

  @MessagePattern('echo')
  echo(@Payload() data: unknown) {
    return data;
  }

  /** Which process answered: tells replicas apart. */
  @MessagePattern('pid')
  pid() {
    return process.pid;
  }

  @MessagePattern('echo.async')
  async echoAsync(@Payload() data: unknown) {
    await new Promise((resolve) => setImmediate(resolve));
    return data;
  }

  @MessagePattern('ctx')
  context(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    return {
      protocol: ctx.getProtocol(),
      sessionId: ctx.getSessionId(),
      messageId: ctx.getMessageId(),
      bizType: ctx.getBizType(),
      flags: ctx.getFlags(),
      pattern: ctx.getPattern(),
      metadata: ctx.getMetadata() ?? null,
      remoteAddress: ctx.getRemoteAddress() ?? null,
    };
  }

  @MessagePattern(7)
  byBizType(@Payload() data: unknown, @Ctx() ctx: MsgTransContext) {
    return { bizType: ctx.getBizType(), pattern: ctx.getPattern(), data };
  }

  @MessagePattern(10)
  rawPing(@Payload() data: Buffer) {
    return Buffer.isBuffer(data) && data.toString() === 'ping' ? Buffer.from('pong') : Buffer.from('?');
  }

  @MessagePattern({ cmd: 'sum', v: 1 })
  sum(@Payload() data: number[]) {
    return data.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('stream')
  stream(@Payload() data: { n: number }) {
    if (data.n === 0) return EMPTY;
    return of(...Array.from({ length: data.n }, (_, i) => i + 1));
  }

  @MessagePattern('stream.fail')
  streamFail() {
    return concat(of(1, 2), throwError(() => new RpcException('mid-stream')));
  }

  @MessagePattern('ticker')
  ticker() {
    return interval(10).pipe(
      map((i) => {
        this.observed.ticks++;
        return i;
      }),
      finalize(() => this.observed.cancelled++),
    );
  }

  @MessagePattern('never')
  never() {
    return NEVER.pipe(finalize(() => this.observed.cancelled++));
  }

  @MessagePattern('fail.rpc')
  failRpc() {
    throw new RpcException('bad input');
  }

  @MessagePattern('fail.rpc.object')
  failRpcObject() {
    throw new RpcException({ code: 42, reason: 'nope' });
  }

  @MessagePattern('fail.plain')
  failPlain() {
    throw new Error('boom');
  }

  @MessagePattern('fail.async')
  async failAsync() {
    throw new RpcException('async bad');
  }

  @MessagePattern('guarded')
  @UseGuards(DenyGuard)
  guarded(@Payload() data: unknown) {
    return { allowed: data };
  }

  @MessagePattern('intercepted')
  @UseInterceptors(DoubleInterceptor)
  intercepted(@Payload() data: number) {
    return data + 1;
  }

  @MessagePattern('filtered')
  @UseFilters(TeapotFilter)
  filtered() {
    throw new Error('to be filtered');
  }

  @MessagePattern('bigint')
  bigint() {
    return { n: 10n };
  }

  @EventPattern('event')
  event(@Payload() data: unknown) {
    this.observed.events.push(data);
  }

  @EventPattern(12)
  eventByBizType(@Payload() data: unknown) {
    this.observed.events.push({ biz12: Buffer.isBuffer(data) ? data.toString() : data });
  }
}

@Module({ controllers: [TestController], providers: [Observed] })
export class TestModule {}

/** A running Nest microservice with the test controller, served by the given strategy. */
export interface RunningApp {
  app: INestMicroservice;
  observed: Observed;
  close(): Promise<void>;
}

/** Starts the test controller on any Nest strategy (MsgTransServer or Nest's own transports). */
export async function startApp(options: CustomStrategy | Parameters<typeof NestFactory.createMicroservice>[1]): Promise<RunningApp> {
  const app = await NestFactory.createMicroservice(TestModule, { ...options, logger: false } as any);
  await app.listen();
  return { app, observed: app.get(Observed), close: () => app.close() };
}

/** Starts a MsgTransServer with the test controller; returns it with its first bound URL. */
export async function startMsgTrans(
  options: MsgTransServerOptions,
): Promise<RunningApp & { server: MsgTransServer; url: string }> {
  const server = new MsgTransServer(options);
  const running = await startApp({ strategy: server });
  return { ...running, server, url: server.addresses()[0].url };
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
