export * from './msgtrans-module-options.interface.js';
export * from './msgtrans.module-definition.js';
export * from './inject-msgtrans-client.decorator.js';
export * from './msgtrans.module.js';
