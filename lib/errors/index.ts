export * from './error-codes.js';
export * from './msgtrans-error.js';
export * from './msgtrans-protocol-error.js';
export * from './msgtrans-connection-error.js';
export * from './msgtrans-timeout-error.js';
export * from './msgtrans-config-error.js';
export * from './msgtrans-limit-error.js';
export * from './msgtrans-encode-error.js';
