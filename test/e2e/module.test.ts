import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  Controller,
  Inject,
  Injectable,
  Logger,
  Module,
  type ConfigurableModuleOptionsFactory,
  type DynamicModule,
  type INestMicroservice,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxy, ClientTCP, Ctx, MessagePattern, Payload, Transport } from '@nestjs/microservices';
import { Test, type TestingModule } from '@nestjs/testing';
import { NEVER, finalize, firstValueFrom, lastValueFrom, take, timeout } from 'rxjs';
import {
  InjectMsgTransClient,
  MSGTRANS_TRANSPORT,
  MsgTransClient,
  MsgTransErrorCode,
  MsgTransModule,
  MsgTransServer,
  MsgTransSessions,
  NO_MESSAGE_HANDLER,
  type MsgTransClientOptions,
  type MsgTransClientOptionsFactory,
  type MsgTransContext,
  type MsgTransModuleOptions,
  type MsgTransSessionClosed,
} from '../../lib/index.js';
import { testCertificates } from '../support/protocols.js';
import { waitFor } from '../support/test-app.js';

// Startup failures below are expected; keep Nest's logger from printing them.
Logger.overrideLogger(false);

const BOUND = 2000;

/** Counts what the server-side handlers saw. */
class Seen {
  neverCancelled = 0;
}
const seen = new Seen();

@Controller()
class MathController {
  @MessagePattern('sum')
  sum(@Payload() data: number[]) {
    return data.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('whoami')
  whoami(@Payload() _data: unknown, @Ctx() ctx: MsgTransContext) {
    return ctx.getSessionId();
  }

  @MessagePattern('never')
  never() {
    return NEVER.pipe(finalize(() => seen.neverCancelled++));
  }

  @MessagePattern('only.msgtrans', MSGTRANS_TRANSPORT)
  onlyMsgTrans() {
    return 'served by msgtrans';
  }

  @MessagePattern('only.tcp', Transport.TCP)
  onlyTcp() {
    return 'served by tcp';
  }
}

@Module({
  imports: [MsgTransModule.forRoot({ server: { listen: 'tcp://127.0.0.1:0' } })],
  controllers: [MathController],
})
class ServerAppModule {}

// Set once the server app listens; read by the config providers below.
let serverUrl = '';

@Injectable()
class Config {
  get url(): string {
    return serverUrl;
  }
}

@Module({ providers: [Config], exports: [Config] })
class ConfigModule {}

@Injectable()
class ModuleOptionsFactory implements ConfigurableModuleOptionsFactory<MsgTransModuleOptions, 'createMsgTransOptions'> {
  constructor(private readonly config: Config) {}
  createMsgTransOptions(): MsgTransModuleOptions {
    return { clients: [{ name: 'MATH', url: this.config.url }] };
  }
}

@Injectable()
class ClientOptionsFactory implements MsgTransClientOptionsFactory {
  async createMsgTransClientOptions(): Promise<MsgTransClientOptions> {
    await new Promise((resolve) => setImmediate(resolve));
    return { url: serverUrl };
  }
}

/** Injects the client both ways. */
@Injectable()
class Caller {
  constructor(
    @InjectMsgTransClient('MATH') readonly viaDecorator: MsgTransClient,
    @Inject('MATH') readonly viaInject: ClientProxy,
  ) {}
}

/** A module that injects MATH but does not import MsgTransModule. */
@Injectable()
class FeatureService {
  constructor(@InjectMsgTransClient('MATH') readonly client: MsgTransClient) {}
}
@Module({ providers: [FeatureService], exports: [FeatureService] })
class FeatureModule {}

const modules: TestingModule[] = [];
async function compile(imports: Array<DynamicModule | typeof FeatureModule>, providers: any[] = []): Promise<TestingModule> {
  const moduleRef = await Test.createTestingModule({ imports, providers }).compile();
  modules.push(moduleRef);
  return moduleRef;
}

/** Compiling a module with these imports rejects with this code and a message matching `message`. */
async function rejectsAtCompile(imports: DynamicModule[], code: string, message: RegExp): Promise<void> {
  await assert.rejects(Test.createTestingModule({ imports }).compile(), (err: any) => {
    assert.equal(err?.code, code, `code of ${err}`);
    assert.match(err.message, message);
    return true;
  });
}

const sum = (client: ClientProxy, values: number[]) =>
  firstValueFrom(client.send<number>('sum', values).pipe(timeout(BOUND)));

describe('MsgTransModule', () => {
  let serverApp: INestMicroservice;
  let server: MsgTransServer;

  before(async () => {
    serverApp = await NestFactory.createMicroservice(ServerAppModule, {
      ...MsgTransModule.microservice(),
      logger: false,
      abortOnError: false,
    });
    await serverApp.listen();
    server = serverApp.get(MsgTransServer);
    serverUrl = server.addresses()[0]?.url ?? '';
  });

  after(async () => {
    for (const moduleRef of modules) await moduleRef.close();
    await serverApp?.close();
  });

  describe('forRoot', () => {
    test('provides the server, its sessions and named clients', async () => {
      const moduleRef = await compile([
        MsgTransModule.forRoot({
          server: { listen: 'tcp://127.0.0.1:0' },
          clients: [{ name: 'MATH', url: 'tcp://127.0.0.1:1' }],
        }),
      ]);
      const provided = moduleRef.get(MsgTransServer);
      assert.ok(provided instanceof MsgTransServer);
      const sessions = moduleRef.get(MsgTransSessions);
      assert.ok(sessions instanceof MsgTransSessions);
      assert.equal(sessions, provided.sessions);
      assert.ok(moduleRef.get('MATH') instanceof MsgTransClient);
      // nothing is bound until a microservice serves it
      assert.deepEqual(provided.addresses(), []);
    });

    test('microservice() serves with the module\'s server instance', async () => {
      assert.ok(server instanceof MsgTransServer);
      const [address] = server.addresses();
      assert.ok(address, 'the strategy is bound');
      assert.equal(address.protocol, 'tcp');
      assert.ok(address.port > 0);
      assert.equal(serverApp.get(MsgTransSessions), server.sessions);
    });

    test('a client module injects the client by @InjectMsgTransClient and @Inject, and calls work', async () => {
      const moduleRef = await compile([MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: serverUrl }] })], [Caller]);
      const caller = moduleRef.get(Caller);
      assert.ok(caller.viaDecorator instanceof MsgTransClient);
      assert.equal(caller.viaDecorator, caller.viaInject);
      assert.equal(await sum(caller.viaDecorator, [1, 2, 3]), 6);
      assert.equal(await sum(caller.viaInject, [10, 20]), 30);
      // it really went to the served app: the session exists there
      const sessionId = await firstValueFrom(caller.viaDecorator.send<string>('whoami', {}).pipe(timeout(BOUND)));
      assert.ok(server.sessions.get(sessionId));
    });

    test('a client module with NestFactory.createApplicationContext works too', async () => {
      const app = await NestFactory.createApplicationContext(
        { imports: [MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: serverUrl }] })], providers: [Caller] },
        { logger: false, abortOnError: false },
      );
      try {
        assert.equal(await sum(app.get(Caller).viaInject, [4, 5]), 9);
      } finally {
        await app.close();
      }
    });

    test('microservice() without server options fails clearly', async () => {
      await assert.rejects(
        NestFactory.createMicroservice(
          { imports: [MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: serverUrl }] })] },
          { ...MsgTransModule.microservice(), logger: false, abortOnError: false },
        ),
        (err: any) => {
          assert.equal(err.code, MsgTransErrorCode.INVALID_OPTION);
          assert.match(err.message, /no server options/);
          return true;
        },
      );
    });

    test('a client registered twice is refused', () => {
      assert.throws(
        () => MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: serverUrl }, { name: 'MATH', url: serverUrl }] }),
        (err: any) => err.code === MsgTransErrorCode.INVALID_OPTION && /MATH is registered twice/.test(err.message),
      );
    });
  });

  describe('forRootAsync', () => {
    test('useFactory with an injected config provider from an imported module', async () => {
      const moduleRef = await compile(
        [
          MsgTransModule.forRootAsync({
            imports: [ConfigModule],
            inject: [Config],
            useFactory: (config: Config) => ({ clients: [{ name: 'MATH', url: config.url }] }),
            clientNames: ['MATH'],
          }),
        ],
        [Caller],
      );
      const caller = moduleRef.get(Caller);
      assert.ok(caller.viaDecorator instanceof MsgTransClient);
      assert.equal(caller.viaDecorator, caller.viaInject);
      assert.equal(await sum(caller.viaDecorator, [2, 3]), 5);
    });

    test('useFactory may be async and configure a server too', async () => {
      const moduleRef = await compile([
        MsgTransModule.forRootAsync({
          useFactory: async () => ({ server: { listen: 'ws://127.0.0.1:0/x' }, clients: [{ name: 'MATH', url: serverUrl }] }),
          clientNames: ['MATH'],
        }),
      ]);
      assert.ok(moduleRef.get(MsgTransServer) instanceof MsgTransServer);
      assert.equal(moduleRef.get(MsgTransSessions), moduleRef.get(MsgTransServer).sessions);
      assert.equal(await sum(moduleRef.get<MsgTransClient>('MATH'), [7, 7]), 14);
    });

    test('useClass with a class implementing createMsgTransOptions()', async () => {
      const moduleRef = await compile(
        [MsgTransModule.forRootAsync({ imports: [ConfigModule], useClass: ModuleOptionsFactory, clientNames: ['MATH'] })],
        [Caller],
      );
      assert.equal(await sum(moduleRef.get(Caller).viaInject, [1, 1]), 2);
    });

    test('a name in clientNames that the factory does not configure is a startup error', async () => {
      await rejectsAtCompile(
        [MsgTransModule.forRootAsync({ useFactory: () => ({ clients: [] }), clientNames: ['MATH'] })],
        MsgTransErrorCode.INVALID_OPTION,
        /MATH is listed in clientNames/,
      );
    });
  });

  describe('isGlobal', () => {
    test('without it, a module that does not import MsgTransModule cannot inject the client', async () => {
      await assert.rejects(
        Test.createTestingModule({
          imports: [MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: serverUrl }] }), FeatureModule],
        }).compile(),
        /MATH/,
      );
    });

    test('forRoot({ isGlobal: true }) makes the client injectable everywhere', async () => {
      const moduleRef = await compile([
        MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: serverUrl }], isGlobal: true }),
        FeatureModule,
      ]);
      const feature = moduleRef.get(FeatureService);
      assert.ok(feature.client instanceof MsgTransClient);
      assert.equal(await sum(feature.client, [3, 4]), 7);
    });

    test('forRootAsync({ isGlobal: true }) too', async () => {
      const moduleRef = await compile([
        MsgTransModule.forRootAsync({
          imports: [ConfigModule],
          inject: [Config],
          useFactory: (config: Config) => ({ clients: [{ name: 'MATH', url: config.url }] }),
          clientNames: ['MATH'],
          isGlobal: true,
        }),
        FeatureModule,
      ]);
      assert.equal(await sum(moduleRef.get(FeatureService).client, [5, 6]), 11);
    });

    test('registerClients(…, { isGlobal: true }) too', async () => {
      const moduleRef = await compile([
        MsgTransModule.registerClients([{ name: 'MATH', url: serverUrl }], { isGlobal: true }),
        FeatureModule,
      ]);
      assert.equal(await sum(moduleRef.get(FeatureService).client, [6, 6]), 12);
    });
  });

  describe('shutdown', () => {
    test('app.close() closes injected clients: status, pending requests, and the server-side session', async () => {
      const app = await NestFactory.createApplicationContext(
        { imports: [MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: serverUrl }] })], providers: [Caller] },
        { logger: false, abortOnError: false },
      );
      const client = app.get(Caller).viaDecorator;
      const statuses: string[] = [];
      client.status.subscribe((status) => statuses.push(status));
      const sessionId = await firstValueFrom(client.send<string>('whoami', {}).pipe(timeout(BOUND)));
      assert.deepEqual(statuses, ['connected']);
      const closed = firstValueFrom(
        server.sessions.closed$.pipe(
          take(1),
          timeout({ first: BOUND, with: () => Promise.reject(new Error('server saw no disconnect')) }),
        ),
      );
      const cancelledBefore = seen.neverCancelled;
      const pending = lastValueFrom(client.send('never', {}));
      await waitFor(() => server.sessions.get(sessionId) !== undefined);
      await new Promise((resolve) => setTimeout(resolve, 20));

      await app.close();

      await assert.rejects(pending, (err: any) => {
        assert.equal(err.code, MsgTransErrorCode.CLIENT_CLOSED);
        return true;
      });
      assert.deepEqual(statuses, ['connected', 'disconnected']);
      const event: MsgTransSessionClosed = await closed;
      assert.equal(event.session.id, sessionId);
      assert.equal(server.sessions.get(sessionId), undefined);
      // the server stopped the handler that would never have answered
      await waitFor(() => seen.neverCancelled === cancelledBefore + 1, BOUND);
    });

    test('registerClients clients are closed on shutdown too', async () => {
      const moduleRef = await Test.createTestingModule({
        imports: [MsgTransModule.registerClients([{ name: 'MATH', url: serverUrl }])],
      }).compile();
      const client = moduleRef.get<MsgTransClient>('MATH');
      const sessionId = await firstValueFrom(client.send<string>('whoami', {}).pipe(timeout(BOUND)));
      const pending = lastValueFrom(client.send('never', {}));
      await new Promise((resolve) => setTimeout(resolve, 20));
      await moduleRef.close();
      await assert.rejects(pending, (err: any) => err.code === MsgTransErrorCode.CLIENT_CLOSED);
      await waitFor(() => server.sessions.get(sessionId) === undefined, BOUND);
    });
  });

  describe('registerClients / registerClientsAsync', () => {
    test('registerClients([{ name, url }]) provides injectable clients', async () => {
      const moduleRef = await compile(
        [
          MsgTransModule.registerClients([
            { name: 'MATH', url: serverUrl },
            { name: 'MATH2', url: serverUrl, requestTimeout: 1000 },
          ]),
        ],
        [Caller],
      );
      const caller = moduleRef.get(Caller);
      assert.ok(caller.viaDecorator instanceof MsgTransClient);
      assert.equal(caller.viaDecorator, caller.viaInject);
      assert.equal(await sum(caller.viaDecorator, [8, 9]), 17);
      const other = moduleRef.get<MsgTransClient>('MATH2');
      assert.notEqual(other, caller.viaDecorator);
      assert.equal(await sum(other, [1, 9]), 10);
    });

    test('registerClientsAsync with useFactory and inject', async () => {
      const moduleRef = await compile(
        [
          MsgTransModule.registerClientsAsync([
            { name: 'MATH', imports: [ConfigModule], inject: [Config], useFactory: (config: Config) => ({ url: config.url }) },
          ]),
        ],
        [Caller],
      );
      assert.equal(await sum(moduleRef.get(Caller).viaInject, [2, 2]), 4);
    });

    test('registerClientsAsync with useClass', async () => {
      const moduleRef = await compile(
        [MsgTransModule.registerClientsAsync([{ name: 'MATH', useClass: ClientOptionsFactory }])],
        [Caller],
      );
      assert.equal(await sum(moduleRef.get(Caller).viaInject, [3, 3]), 6);
    });

    test('registerClientsAsync without a factory is refused', () => {
      assert.throws(
        () => MsgTransModule.registerClientsAsync([{ name: 'MATH' }]),
        (err: any) => err.code === MsgTransErrorCode.INVALID_OPTION && /useFactory, useClass or useExisting/.test(err.message),
      );
    });
  });

  describe('startup validation', () => {
    test('an unknown protocol in a client URL', async () => {
      await rejectsAtCompile(
        [MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: 'bogus://127.0.0.1:1' }] })],
        MsgTransErrorCode.UNKNOWN_PROTOCOL,
        /Unknown protocol "bogus"/,
      );
    });

    test('an unknown protocol in a server URL', async () => {
      await rejectsAtCompile(
        [MsgTransModule.forRoot({ server: { listen: 'htp://127.0.0.1:0' } })],
        MsgTransErrorCode.UNKNOWN_PROTOCOL,
        /Unknown protocol "htp"/,
      );
    });

    for (const listen of ['quic://127.0.0.1:0', 'wss://127.0.0.1:0/x', 'tls://127.0.0.1:0']) {
      test(`a ${listen.split(':')[0]} server without a certificate`, async () => {
        await rejectsAtCompile(
          [MsgTransModule.forRoot({ server: { listen } })],
          MsgTransErrorCode.INVALID_OPTION,
          /needs tls\.key/,
        );
      });
    }

    test('the same servers with a certificate compile', async () => {
      const certs = await testCertificates();
      const tls = { key: certs.serverKey, cert: certs.serverCert };
      await compile([
        MsgTransModule.forRoot({ server: { listen: ['quic://127.0.0.1:0', 'wss://127.0.0.1:0/x', 'tls://127.0.0.1:0'], tls } }),
      ]);
    });

    for (const port of [70000, -1]) {
      test(`port ${port} in a server URL, a client URL and an endpoint object`, async () => {
        await rejectsAtCompile(
          [MsgTransModule.forRoot({ server: { listen: `tcp://127.0.0.1:${port}` } })],
          MsgTransErrorCode.INVALID_OPTION,
          new RegExp(String(port)),
        );
        await rejectsAtCompile(
          [MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: `tcp://127.0.0.1:${port}` }] })],
          MsgTransErrorCode.INVALID_OPTION,
          new RegExp(String(port)),
        );
        await rejectsAtCompile(
          [MsgTransModule.forRoot({ server: { listen: { protocol: 'tcp', host: '127.0.0.1', port } } })],
          MsgTransErrorCode.INVALID_OPTION,
          new RegExp(`port ${port} is not an integer from 0 to 65535`),
        );
      });
    }

    test('an unknown server option is named', async () => {
      await rejectsAtCompile(
        [MsgTransModule.forRoot({ server: { lisen: 'tcp://127.0.0.1:0' } as any })],
        MsgTransErrorCode.INVALID_OPTION,
        /Unknown server option "lisen"/,
      );
    });

    test('an unknown client option is named', async () => {
      await rejectsAtCompile(
        [MsgTransModule.forRoot({ clients: [{ name: 'MATH', url: serverUrl, timeOut: 5 } as any] })],
        MsgTransErrorCode.INVALID_OPTION,
        /Unknown client option "timeOut"/,
      );
    });

    test('forRootAsync and registerClients(Async) report the same errors at compile time', async () => {
      await rejectsAtCompile(
        [
          MsgTransModule.forRootAsync({
            useFactory: async () => ({ clients: [{ name: 'MATH', url: 'bogus://x:1' }] }),
            clientNames: ['MATH'],
          }),
        ],
        MsgTransErrorCode.UNKNOWN_PROTOCOL,
        /bogus/,
      );
      await rejectsAtCompile(
        [MsgTransModule.registerClients([{ name: 'MATH', url: serverUrl, timeOut: 5 } as any])],
        MsgTransErrorCode.INVALID_OPTION,
        /"timeOut"/,
      );
      await rejectsAtCompile(
        [MsgTransModule.registerClientsAsync([{ name: 'MATH', useFactory: () => ({ url: 'tcp://127.0.0.1:70000' }) }])],
        MsgTransErrorCode.INVALID_OPTION,
        /70000/,
      );
    });

    test('NestFactory.createMicroservice rejects (no abort) on a bad server option', async () => {
      await assert.rejects(
        NestFactory.createMicroservice(
          { imports: [MsgTransModule.forRoot({ server: { listen: 'tcp://127.0.0.1:0', lisen: 1 } as any })] },
          { ...MsgTransModule.microservice(), logger: false, abortOnError: false },
        ),
        (err: any) => err.code === MsgTransErrorCode.INVALID_OPTION && /"lisen"/.test(err.message),
      );
    });
  });

  describe('a handler bound to MSGTRANS_TRANSPORT alone', () => {
    let tcpApp: INestMicroservice;
    let tcpClient: ClientTCP;
    let client: MsgTransClient;

    before(async () => {
      // the same module, also served by Nest's TCP transport
      tcpApp = await NestFactory.createMicroservice(ServerAppModule, {
        transport: Transport.TCP,
        options: { host: '127.0.0.1', port: 0 },
        logger: false,
        abortOnError: false,
      });
      await tcpApp.listen();
      const port = (tcpApp as any).serverInstance?.server?.address()?.port;
      assert.ok(port, 'Nest TCP port found');
      tcpClient = new ClientTCP({ host: '127.0.0.1', port });
      client = new MsgTransClient({ url: serverUrl });
    });

    after(async () => {
      client?.close();
      tcpClient?.close();
      await tcpApp?.close();
    });

    test('is served by MsgTransServer', async () => {
      assert.equal(await firstValueFrom(client.send('only.msgtrans', {}).pipe(timeout(BOUND))), 'served by msgtrans');
    });

    test('a handler bound to Transport.TCP is not', async () => {
      await assert.rejects(firstValueFrom(client.send('only.tcp', {}).pipe(timeout(BOUND))), (err) => err === NO_MESSAGE_HANDLER);
    });

    test('and the other way round on Nest TCP', async () => {
      assert.equal(await firstValueFrom(tcpClient.send('only.tcp', {}).pipe(timeout(BOUND))), 'served by tcp');
      await assert.rejects(firstValueFrom(tcpClient.send('only.msgtrans', {}).pipe(timeout(BOUND))), (err: any) =>
        String(err?.message ?? err).includes('no matching message handler'),
      );
      // unbound handlers are served by both
      assert.equal(await firstValueFrom(tcpClient.send('sum', [1, 2]).pipe(timeout(BOUND))), 3);
    });
  });
});
