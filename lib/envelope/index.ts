export * from './msgtrans-codec.interface.js';
export * from './json-codec.js';
export * from './route.js';
