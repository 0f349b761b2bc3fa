/**
 * `nestjs-msgtrans/browser`: the msgtrans client for web pages (and Deno,
 * Node >= 22), built to one self-contained ES module,
 * `dist/browser/msgtrans-web.js`. Nothing here may import a Node built-in,
 * `Buffer`, rxjs or ws: only WebSocket, Uint8Array/DataView,
 * TextEncoder/TextDecoder and (De)CompressionStream.
 */
export { MsgTransErrorCode } from '../errors/error-codes.js';
export { MsgTransWebClient } from './msgtrans-web-client.js';
export type { MsgTransWebAnswerer, MsgTransWebCallOptions, MsgTransWebListener, MsgTransWebStatus } from './msgtrans-web-client.js';
export { MsgTransWebError } from './msgtrans-web-error.js';
export type {
  MsgTransWebClientOptions,
  MsgTransWebReconnectOptions,
  WebSocketConstructorLike,
  WebSocketLike,
} from './web-client-options.js';
export type { MsgTransWebMessageInfo } from './web-connection.js';
