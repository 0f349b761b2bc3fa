import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Controller, Logger, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { NEVER, finalize, firstValueFrom, lastValueFrom } from 'rxjs';
import {
  MsgTransClient,
  MsgTransErrorCode,
  MsgTransRecord,
  MsgTransServer,
  MsgTransTimeoutError,
  type MsgTransContext,
} from '../../lib/index.js';
import { PROTOCOL_CASES, testCertificates, type ProtocolCase } from '../support/protocols.js';
import { waitFor } from '../support/test-app.js';
import { rejection, sleep, within } from '../support/async.js';

/** What the two services of the chain saw. */
class Seen {
  aStopped = 0;
  bStarted = 0;
  bStopped = 0;
  bDeadlines: (number | undefined)[] = [];
  bMetadata: unknown[] = [];
  aDeadline: number | undefined;
}

const seen = new Seen();
// A's client toward B, set before A starts
let toB: MsgTransClient;

@Controller()
class ServiceB {
  @MessagePattern('b.slow')
  slow(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    seen.bStarted++;
    seen.bDeadlines.push(ctx.getDeadline() === undefined ? undefined : ctx.getDeadline()! - Date.now());
    seen.bMetadata.push(ctx.getMetadata() ?? null);
    return NEVER.pipe(finalize(() => seen.bStopped++));
  }
}

@Controller()
class ServiceA {
  /** Relays to B: the reply is B's reply, so cancelling A's handler cancels the call to B. */
  @MessagePattern('a.relay')
  relay(@Payload() data: { detached?: boolean }, @Ctx() ctx: MsgTransContext) {
    seen.aDeadline = ctx.getDeadline();
    const payload = data.detached ? new MsgTransRecord({}, { deadline: 'detached', timeout: 20_000 }) : {};
    return toB.send('b.slow', payload).pipe(finalize(() => seen.aStopped++));
  }

  /** Awaits B: only the inherited budget ends the call to B. */
  @MessagePattern('a.await')
  async awaiting() {
    return firstValueFrom(toB.send('b.slow', {}));
  }
}

@Module({ controllers: [ServiceB] })
class ModuleB {}

@Module({ controllers: [ServiceA] })
class ModuleA {}

async function start(module: unknown, protocol: ProtocolCase): Promise<{ app: INestMicroservice; url: string }> {
  const certs = await testCertificates();
  const server = new MsgTransServer(protocol.server(certs));
  const app = await NestFactory.createMicroservice(module as never, { strategy: server, logger: false });
  await app.listen();
  return { app, url: server.addresses()[0].url };
}

before(() => Logger.overrideLogger(false));

for (const protocol of PROTOCOL_CASES) {
  describe(`deadlines over ${protocol.name}`, () => {
    let b: { app: INestMicroservice; url: string };
    let a: { app: INestMicroservice; url: string };
    let client: MsgTransClient;

    before(async () => {
      const certs = await testCertificates();
      b = await start(ModuleB, protocol);
      toB = new MsgTransClient(protocol.client(b.url, certs));
      a = await start(ModuleA, protocol);
      client = new MsgTransClient(protocol.client(a.url, certs));
    });

    after(async () => {
      client.close();
      toB.close();
      await a.app.close();
      await b.app.close();
    });

    const reset = () => Object.assign(seen, new Seen());

    it("the client's timeout cancels A's handler, A's call to B and B's handler", async () => {
      reset();
      const started = Date.now();
      const err = await rejection(lastValueFrom(client.send('a.relay', new MsgTransRecord({}, { timeout: 800 }))), 10_000, 'relay');
      assert.ok(err instanceof MsgTransTimeoutError, String(err));
      await waitFor(() => seen.aStopped === 1 && seen.bStopped === 1, 5000);
      assert.equal(seen.bStarted, 1);
      // A learnt the client's deadline; B got no more than what was left of it
      // (its clock starts on arrival, so only a generous upper bound holds on a busy machine)
      assert.ok(seen.aDeadline !== undefined && seen.aDeadline >= started + 800 && seen.aDeadline <= started + 800 + 3000, `A's deadline ${seen.aDeadline! - started}`);
      const bBudget = seen.bDeadlines[0];
      assert.ok(bBudget !== undefined && bBudget <= 800, `B's budget ${bBudget}`);
      // the reserved entry is not the handler's metadata
      assert.deepEqual(seen.bMetadata, [null]);
    });

    it("a handler's awaited call inherits the budget, so B is cancelled though A's handler cannot be", async () => {
      reset();
      const err = await rejection(lastValueFrom(client.send('a.await', new MsgTransRecord({}, { timeout: 600 }))), 10_000, 'await');
      assert.ok(err instanceof MsgTransTimeoutError, String(err));
      await waitFor(() => seen.bStopped === 1, 5000);
      assert.ok(seen.bDeadlines[0]! <= 600);
    });

    it("a detached call keeps its own timeout, not the caller's deadline", async () => {
      reset();
      await rejection(lastValueFrom(client.send('a.relay', new MsgTransRecord({ detached: true }, { timeout: 500 }))), 10_000, 'detached');
      await waitFor(() => seen.bStarted === 1, 5000);
      assert.ok(seen.bDeadlines[0]! > 5000, `B's budget ${seen.bDeadlines[0]}`);
      // A's handler is still cancelled with the client's call, and with it the call to B
      await waitFor(() => seen.bStopped === 1, 5000);
    });

    it('past the deadline the server stops the handler by itself and sends no reply', async () => {
      reset();
      const session = await within(toB.connect(), 5000, 'connect');
      const replies: string[] = [];
      // no timeout on this side: only the server's deadline can end it
      session.request(0, 'b.slow', {}, { 'msgtrans-timeout': '300' }, {
        next: () => replies.push('next'),
        error: () => replies.push('error'),
        complete: () => replies.push('complete'),
      }, 0);
      await waitFor(() => seen.bStopped === 1, 5000);
      assert.ok(seen.bDeadlines[0]! <= 300);
      await sleep(200);
      assert.deepEqual(replies, []);
      assert.equal(session.pendingRequests, 1);
    });

    it('a malformed budget is ignored: no deadline, and the entry is still not metadata', async () => {
      reset();
      const session = await within(toB.connect(), 5000, 'connect');
      const id = session.request(0, 'b.slow', {}, { 'msgtrans-timeout': '-5', tenant: 'acme' }, { next() {}, error() {}, complete() {} }, 0);
      await waitFor(() => seen.bStarted === 1, 5000);
      assert.deepEqual(seen.bDeadlines, [undefined]);
      assert.deepEqual(seen.bMetadata, [{ tenant: 'acme' }]);
      session.cancel(id);
      await waitFor(() => seen.bStopped === 1, 5000);
    });
  });
}

describe('deadline option', () => {
  it('rejects an unknown deadline mode', () => {
    assert.throws(() => new MsgTransRecord(1, { deadline: 'later' as never }), { code: MsgTransErrorCode.INVALID_OPTION });
  });
});
