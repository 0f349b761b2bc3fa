import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { MsgTransClient } from '../client/msgtrans-client.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import type { MsgTransClientOptions } from '../interfaces/msgtrans-options.interface.js';
import { MsgTransServer } from '../server/msgtrans-server.js';
import { MsgTransSessions } from '../server/msgtrans-sessions.js';
import type {
  MsgTransClientAsyncRegistration,
  MsgTransClientOptionsFactory,
  MsgTransClientRegistration,
  MsgTransModuleOptions,
} from './msgtrans-module-options.interface.js';
import {
  MSGTRANS_ASYNC_OPTIONS_TYPE,
  MSGTRANS_MODULE_OPTIONS,
  MSGTRANS_OPTIONS_TYPE,
  MsgTransConfigurableModule,
} from './msgtrans.module-definition.js';

function clientOptionsFor(options: MsgTransModuleOptions, name: string | symbol): MsgTransClientOptions {
  const registration = options.clients?.find((c) => c.name === name);
  if (!registration) {
    throw new MsgTransConfigError(
      MsgTransErrorCode.INVALID_OPTION,
      `MsgTransModule: client ${String(name)} is listed in clientNames but the options have no client of that name`,
    );
  }
  const { name: _name, ...clientOptions } = registration;
  return clientOptions;
}

function clientProvider(name: string | symbol): Provider {
  return {
    provide: name,
    useFactory: (options: MsgTransModuleOptions) => new MsgTransClient(clientOptionsFor(options, name)),
    inject: [MSGTRANS_MODULE_OPTIONS],
  };
}

/** The server (null when the options have none) and its sessions, from the module options. */
const SERVER_PROVIDERS: Provider[] = [
  {
    provide: MsgTransServer,
    useFactory: (options: MsgTransModuleOptions) => (options.server ? new MsgTransServer(options.server) : null),
    inject: [MSGTRANS_MODULE_OPTIONS],
  },
  {
    provide: MsgTransSessions,
    useFactory: (server: MsgTransServer | null) => server?.sessions ?? null,
    inject: [MsgTransServer],
  },
];

function withProviders(definition: DynamicModule, clientNames: Array<string | symbol>): DynamicModule {
  const duplicate = clientNames.find((name, i) => clientNames.indexOf(name) !== i);
  if (duplicate !== undefined) {
    throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, `MsgTransModule: client ${String(duplicate)} is registered twice`);
  }
  const providers = [...SERVER_PROVIDERS, ...clientNames.map(clientProvider)];
  return {
    ...definition,
    providers: [...(definition.providers ?? []), ...providers],
    exports: [...(definition.exports ?? []), MsgTransServer, MsgTransSessions, ...clientNames],
  };
}

/**
 * Configures the transport the Nest way.
 *
 * ```ts
 * @Module({
 *   imports: [
 *     MsgTransModule.forRoot({
 *       server: { listen: ['tcp://0.0.0.0:8001', 'ws://0.0.0.0:8002/ws'] },
 *       clients: [{ name: 'BILLING', url: 'tcp://billing:8001' }],
 *     }),
 *   ],
 * })
 * export class AppModule {}
 *
 * // main.ts: serve with the configured server instance
 * const app = await NestFactory.createMicroservice(AppModule, MsgTransModule.microservice());
 * ```
 *
 * Provides `MsgTransServer`, `MsgTransSessions` (server push) and every named
 * client (`@InjectMsgTransClient('BILLING')`).
 */
@Module({})
export class MsgTransModule extends MsgTransConfigurableModule {
  /** Configures the server and named clients from static options. */
  static override forRoot(options: typeof MSGTRANS_OPTIONS_TYPE): DynamicModule {
    return withProviders(super.forRoot(options), (options.clients ?? []).map((c) => c.name));
  }

  /**
   * Configures them from a factory (`useFactory` + `inject`, `useClass`, or
   * `useExisting`). Name the clients the factory will return in `clientNames`.
   */
  static override forRootAsync(options: typeof MSGTRANS_ASYNC_OPTIONS_TYPE): DynamicModule {
    return withProviders(super.forRootAsync(options), options.clientNames ?? []);
  }

  /** Only clients, as `ClientsModule.register` does. */
  static registerClients(clients: MsgTransClientRegistration[], options: { isGlobal?: boolean } = {}): DynamicModule {
    const providers: Provider[] = clients.map(({ name, ...clientOptions }) => ({
      provide: name,
      useFactory: () => new MsgTransClient(clientOptions),
    }));
    return { module: MsgTransModule, global: options.isGlobal, providers, exports: clients.map((c) => c.name) };
  }

  /** Only clients, each from its own factory, as `ClientsModule.registerAsync` does. */
  static registerClientsAsync(
    clients: MsgTransClientAsyncRegistration[],
    options: { isGlobal?: boolean } = {},
  ): DynamicModule {
    const providers: Provider[] = [];
    for (const client of clients) {
      if (client.useFactory) {
        providers.push({
          provide: client.name,
          useFactory: async (...args: unknown[]) => new MsgTransClient(await client.useFactory!(...args)),
          inject: client.inject ?? [],
        });
        continue;
      }
      const factoryClass = client.useExisting ?? client.useClass;
      if (!factoryClass) {
        throw new MsgTransConfigError(
          MsgTransErrorCode.INVALID_OPTION,
          `MsgTransModule: client ${String(client.name)} needs useFactory, useClass or useExisting`,
        );
      }
      if (client.useClass) providers.push({ provide: client.useClass, useClass: client.useClass });
      providers.push({
        provide: client.name,
        useFactory: async (factory: MsgTransClientOptionsFactory) => new MsgTransClient(await factory.createMsgTransClientOptions()),
        inject: [factoryClass],
      });
    }
    const imports = [...new Set(clients.flatMap((c) => c.imports ?? []))];
    return { module: MsgTransModule, global: options.isGlobal, imports, providers, exports: clients.map((c) => c.name) };
  }

  /**
   * Options for `NestFactory.createMicroservice(AppModule, …)` that serve with
   * the module's `MsgTransServer` instance.
   */
  static microservice(): { inject: [typeof MsgTransServer]; useFactory: (server: MsgTransServer | null) => { strategy: MsgTransServer } } {
    return {
      inject: [MsgTransServer],
      useFactory: (server) => {
        if (!server) {
          throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, 'MsgTransModule has no server options to serve');
        }
        return { strategy: server };
      },
    };
  }
}
