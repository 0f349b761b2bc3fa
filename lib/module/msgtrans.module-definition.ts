import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { MsgTransModuleOptions } from './msgtrans-module-options.interface.js';

/** Extras of forRoot / forRootAsync beyond the options themselves. */
export interface MsgTransModuleExtras {
  /** Make the providers available to every module. Default `false`. */
  isGlobal?: boolean;
  /**
   * forRootAsync only: the names of the clients the factory will configure.
   * Providers must exist before the factory runs, so the names are given here.
   */
  clientNames?: Array<string | symbol>;
}

export const {
  ConfigurableModuleClass: MsgTransConfigurableModule,
  MODULE_OPTIONS_TOKEN: MSGTRANS_MODULE_OPTIONS,
  OPTIONS_TYPE: MSGTRANS_OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE: MSGTRANS_ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<MsgTransModuleOptions>()
  .setClassMethodName('forRoot')
  .setFactoryMethodName('createMsgTransOptions')
  .setExtras<MsgTransModuleExtras>({ isGlobal: false, clientNames: [] }, (definition, extras) => ({
    ...definition,
    global: extras.isGlobal,
  }))
  .build();
