export * from './packet.js';
export * from './packet-encoder.js';
export * from './packet-decoder.js';
export * from './packet-stream-decoder.js';
export * from './compression.js';
export * from './ext-header.js';
export * from './message-id-counter.js';
