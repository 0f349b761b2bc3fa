import { isAscii } from 'node:buffer';
import type { MsgTransCodec } from './msgtrans-codec.interface.js';

// Below this the check costs more than the UTF-8 decode it can save.
const ASCII_CHECK_FROM = 512;

/** The default codec: JSON in UTF-8 (PROTOCOL.md Part B). */
export class JsonCodec implements MsgTransCodec {
  encode(value: unknown): string {
    // JSON.stringify(undefined) is undefined; an empty payload is how undefined travels
    return value === undefined ? '' : (JSON.stringify(value) ?? '');
  }

  decode(payload: Buffer): unknown {
    if (payload.length === 0) return undefined;
    // ASCII (most JSON) is decoded as Latin-1, the same characters: a native check
    // and a copy instead of a UTF-8 decode, which costs several times more on large payloads
    const text = payload.length >= ASCII_CHECK_FROM && isAscii(payload) ? payload.toString('latin1') : payload.toString('utf8');
    return JSON.parse(text);
  }
}
