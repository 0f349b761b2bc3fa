import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Logger, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { firstValueFrom, lastValueFrom } from 'rxjs';
import { MsgTransClient, MsgTransServer, type MsgTransContext, type MsgTransSessions } from '../../lib/index.js';
import { PROTOCOL_CASES, testCertificates } from '../support/protocols.js';
import { waitFor } from '../support/test-app.js';
import { rejection, within } from '../support/async.js';

// Client and server report to separate providers, as two processes would; they share only the wire.
const clientSpans = new InMemorySpanExporter();
const serverSpans = new InMemorySpanExporter();
const clientProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(clientSpans)] });
const serverProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(serverSpans)] });
const serverTracer = serverProvider.getTracer('test-handler');

// the handlers' onward client, reporting to the server's provider
let onward: MsgTransClient;
let sessions: MsgTransSessions;

@Controller()
class TracedController {
  @MessagePattern('trace.outer')
  async outer(@Payload() n: number) {
    serverTracer.startSpan('inner-work').end();
    return firstValueFrom(onward.send('trace.inner', n));
  }

  @MessagePattern('trace.inner')
  inner(@Payload() n: number) {
    return n + 1;
  }

  @MessagePattern('trace.fail')
  fail(@Payload() _data: unknown) {
    throw new RpcException('nope');
  }

  @MessagePattern('trace.push')
  push(@Payload() _n: unknown, @Ctx() ctx: MsgTransContext) {
    return sessions.sendTo(ctx.getSessionId(), 'client.ping', {});
  }

  @EventPattern('trace.event')
  event(@Payload() _data: unknown) {
    serverTracer.startSpan('event-work').end();
  }
}

@Module({ controllers: [TracedController] })
class TracedModule {}

const byName = (spans: ReadableSpan[], name: string, kind?: SpanKind) =>
  spans.filter((s) => s.name === name && (kind === undefined || s.kind === kind));
const one = (spans: ReadableSpan[], name: string, kind?: SpanKind): ReadableSpan => {
  const found = byName(spans, name, kind);
  assert.equal(found.length, 1, `one ${name} span (kind ${kind}), got ${found.length}: ${spans.map((s) => `${s.name}/${s.kind}`).join(', ')}`);
  return found[0];
};
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const idOf = (span: { spanContext(): { spanId: string } }) => span.spanContext().spanId;
const traceOf = (span: { spanContext(): { traceId: string } }) => span.spanContext().traceId;

before(() => {
  Logger.overrideLogger(false);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
});
after(() => {
  context.disable();
  propagation.disable();
});

for (const protocol of PROTOCOL_CASES) {
  describe(`tracing over ${protocol.name}`, () => {
    let app: INestMicroservice;
    let client: MsgTransClient;
    let url: string;

    before(async () => {
      const certs = await testCertificates();
      const server = new MsgTransServer({ ...protocol.server(certs), telemetry: { tracerProvider: serverProvider } });
      app = await NestFactory.createMicroservice(TracedModule, { strategy: server, logger: false });
      await app.listen();
      url = server.addresses()[0].url;
      sessions = server.sessions;
      onward = new MsgTransClient({ ...protocol.client(url, certs), telemetry: { tracerProvider: serverProvider } });
      client = new MsgTransClient({ ...protocol.client(url, certs), telemetry: { tracerProvider: clientProvider } });
      await within(client.connect(), 5000, 'connect');
      await within(onward.connect(), 5000, 'connect');
      clientSpans.reset();
      serverSpans.reset();
    });

    after(async () => {
      client.close();
      onward.close();
      await app.close();
    });

    it('one trace from the caller through the handler and its onward call', async () => {
      clientSpans.reset();
      serverSpans.reset();
      const root = clientProvider.getTracer('test').startSpan('root');
      const reply = await context.with(trace.setSpan(context.active(), root), () =>
        within(lastValueFrom(client.send('trace.outer', 1)), 5000, 'outer'),
      );
      root.end();
      assert.equal(reply, 2);
      await waitFor(() => byName(serverSpans.getFinishedSpans(), 'trace.outer', SpanKind.SERVER).length === 1, 5000);
      const c = clientSpans.getFinishedSpans();
      const s = serverSpans.getFinishedSpans();
      const call = one(c, 'trace.outer', SpanKind.CLIENT);
      const handled = one(s, 'trace.outer', SpanKind.SERVER);
      const work = one(s, 'inner-work');
      const onwardCall = one(s, 'trace.inner', SpanKind.CLIENT);
      const onwardHandled = one(s, 'trace.inner', SpanKind.SERVER);
      for (const span of [call, handled, work, onwardCall, onwardHandled]) assert.equal(traceOf(span), traceOf(root), `${span.name} in the trace`);
      assert.equal(parentOf(call), idOf(root));
      assert.equal(parentOf(handled), idOf(call));
      assert.equal(parentOf(work), idOf(handled));
      assert.equal(parentOf(onwardCall), idOf(handled));
      assert.equal(parentOf(onwardHandled), idOf(onwardCall));
      // RPC semantic conventions
      for (const span of [call, handled]) {
        assert.equal(span.attributes['rpc.system.name'], 'msgtrans');
        assert.equal(span.attributes['rpc.method'], 'trace.outer');
        assert.equal(span.attributes['server.address'], '127.0.0.1');
        assert.equal(typeof span.attributes['server.port'], 'number');
        assert.equal(span.attributes['network.protocol.name'], protocol.name);
        assert.equal(span.attributes['network.transport'], protocol.name === 'quic' ? 'quic' : 'tcp');
        assert.equal(span.attributes['network.peer.address'], '127.0.0.1');
        assert.equal(typeof span.attributes['network.peer.port'], 'number');
        assert.notEqual(span.status.code, SpanStatusCode.ERROR);
      }
      assert.equal(call.attributes['network.peer.port'], handled.attributes['server.port']);
    });

    it('a failed call gives error spans on both sides', async () => {
      clientSpans.reset();
      serverSpans.reset();
      await rejection(lastValueFrom(client.send('trace.fail', {})), 5000, 'fail');
      await waitFor(() => byName(serverSpans.getFinishedSpans(), 'trace.fail').length === 1, 5000);
      const call = one(clientSpans.getFinishedSpans(), 'trace.fail', SpanKind.CLIENT);
      const handled = one(serverSpans.getFinishedSpans(), 'trace.fail', SpanKind.SERVER);
      assert.equal(parentOf(handled), idOf(call));
      for (const span of [call, handled]) {
        assert.equal(span.status.code, SpanStatusCode.ERROR, `${span.kind} status`);
        assert.ok(span.attributes['error.type'], `${span.kind} error.type`);
      }
    });

    it('events: PRODUCER then CONSUMER, with the handler inside', async () => {
      clientSpans.reset();
      serverSpans.reset();
      await within(lastValueFrom(client.emit('trace.event', {})), 5000, 'emit');
      await waitFor(() => byName(serverSpans.getFinishedSpans(), 'event-work').length === 1, 5000);
      const produced = one(clientSpans.getFinishedSpans(), 'trace.event', SpanKind.PRODUCER);
      await waitFor(() => byName(serverSpans.getFinishedSpans(), 'trace.event').length === 1, 5000);
      const consumed = one(serverSpans.getFinishedSpans(), 'trace.event', SpanKind.CONSUMER);
      assert.equal(parentOf(consumed), idOf(produced));
      assert.equal(parentOf(one(serverSpans.getFinishedSpans(), 'event-work')), idOf(consumed));
    });

    it('a server -> client request is traced the same way', async () => {
      clientSpans.reset();
      serverSpans.reset();
      const remove = client.answer('client.ping', () => 'pong');
      try {
        assert.equal(await within(lastValueFrom(client.send('trace.push', {})), 5000, 'push'), 'pong');
        await waitFor(() => byName(serverSpans.getFinishedSpans(), 'trace.push', SpanKind.SERVER).length === 1, 5000);
        const c = clientSpans.getFinishedSpans();
        const s = serverSpans.getFinishedSpans();
        const handled = one(s, 'trace.push', SpanKind.SERVER);
        const pushed = one(s, 'client.ping', SpanKind.CLIENT);
        const answered = one(c, 'client.ping', SpanKind.SERVER);
        assert.equal(parentOf(handled), idOf(one(c, 'trace.push', SpanKind.CLIENT)));
        assert.equal(parentOf(pushed), idOf(handled));
        assert.equal(parentOf(answered), idOf(pushed));
        assert.equal(traceOf(answered), traceOf(handled));
      } finally {
        remove();
      }
    });
  });
}

describe('no SDK', () => {
  it('a server and client without a provider trace nothing and still work', async () => {
    const server = new MsgTransServer({ listen: 'tcp://127.0.0.1:0' });
    const app = await NestFactory.createMicroservice(TracedModule, { strategy: server, logger: false });
    await app.listen();
    const plain = new MsgTransClient({ url: server.addresses()[0].url });
    try {
      clientSpans.reset();
      serverSpans.reset();
      assert.equal(await within(lastValueFrom(plain.send('trace.inner', 1)), 5000, 'inner'), 2);
      assert.equal((server as unknown as { telemetry: unknown }).telemetry, null);
      assert.equal((plain as unknown as { telemetry: unknown }).telemetry, null);
      assert.equal(clientSpans.getFinishedSpans().length + serverSpans.getFinishedSpans().length, 0);
    } finally {
      plain.close();
      await app.close();
    }
  });
});
