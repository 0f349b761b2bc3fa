import type { MsgTransCodec } from './msgtrans-codec.interface.js';

/** The default codec: JSON in UTF-8 (PROTOCOL.md Part B). */
export class JsonCodec implements MsgTransCodec {
  encode(value: unknown): string {
    // JSON.stringify(undefined) is undefined; an empty payload is how undefined travels
    return value === undefined ? '' : (JSON.stringify(value) ?? '');
  }

  decode(payload: Buffer): unknown {
    return payload.length === 0 ? undefined : JSON.parse(payload.toString('utf8'));
  }
}
