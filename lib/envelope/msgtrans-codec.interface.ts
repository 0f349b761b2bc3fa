/**
 * Turns handler data into payload bytes and back. Data that is already a
 * `Buffer`/`Uint8Array` never reaches the codec: it travels raw. Both ends of
 * a connection must use the same codec.
 */
export interface MsgTransCodec {
  /** Encodes a value; a string is sent as its UTF-8 bytes. `undefined` must encode to empty. */
  encode(value: unknown): string | Uint8Array;
  /** Decodes a payload; an empty payload must decode to `undefined`. */
  decode(payload: Buffer): unknown;
}
