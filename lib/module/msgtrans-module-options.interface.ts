import type { ConfigurableModuleOptionsFactory, FactoryProvider, ModuleMetadata, Type } from '@nestjs/common';
import type { MsgTransClientOptions, MsgTransServerOptions } from '../interfaces/msgtrans-options.interface.js';

/** A client the module provides, injectable by `name`. */
export interface MsgTransClientRegistration extends MsgTransClientOptions {
  /** Injection token: `@InjectMsgTransClient(name)` or `@Inject(name)`. */
  name: string | symbol;
}

/** Options of `MsgTransModule.forRoot()`. */
export interface MsgTransModuleOptions {
  /** The server to provide as `MsgTransServer` (with `MsgTransSessions`). Omit in modules that only call out. */
  server?: MsgTransServerOptions;
  /** Named clients, each connecting lazily on first use and closed on application shutdown. */
  clients?: MsgTransClientRegistration[];
}

/** What `MsgTransModule.forRootAsync({ useClass | useExisting })` expects: `createMsgTransOptions()`. */
export type MsgTransModuleOptionsFactory = ConfigurableModuleOptionsFactory<MsgTransModuleOptions, 'createMsgTransOptions'>;

/** Builds client options for `registerClientsAsync({ useClass | useExisting })`. */
export interface MsgTransClientOptionsFactory {
  createMsgTransClientOptions(): MsgTransClientOptions | Promise<MsgTransClientOptions>;
}

/** One client of `MsgTransModule.registerClientsAsync()`. */
export interface MsgTransClientAsyncRegistration extends Pick<ModuleMetadata, 'imports'> {
  name: string | symbol;
  useFactory?: (...args: any[]) => MsgTransClientOptions | Promise<MsgTransClientOptions>;
  inject?: FactoryProvider['inject'];
  useClass?: Type<MsgTransClientOptionsFactory>;
  useExisting?: Type<MsgTransClientOptionsFactory>;
}
