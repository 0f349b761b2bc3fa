export * from './msgtrans-options.interface.js';
export * from './msgtrans-events.interface.js';
