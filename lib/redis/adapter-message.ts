import type { MsgTransCodec } from '../envelope/msgtrans-codec.interface.js';

/** Version byte of the messages instances exchange; a message of another version is ignored. */
const VERSION = 1;
const HEAD = 5;

/** How a message's data is carried after its header. */
const enum DataKind {
  NONE = 0,
  /** Bytes, as given (a Buffer stays a Buffer on the far side, as on the wire). */
  BYTES = 1,
  /** The server codec's encoding. */
  CODEC = 2,
}

/** A decoded message: its JSON header and its data. */
export interface AdapterMessage<H> {
  header: H;
  data: unknown;
}

/**
 * One message between instances as one Redis Pub/Sub payload: a version
 * byte, the header's length (u32 BE), the header as JSON, a data-kind byte,
 * then the data's bytes as they are: no base64, so a binary push costs its
 * size, and other data is what the server codec makes of it.
 */
export function encodeAdapterMessage(header: object, data: unknown, codec: MsgTransCodec): Buffer {
  const head = Buffer.from(JSON.stringify(header));
  let kind = DataKind.NONE;
  let body: Uint8Array | undefined;
  if (data instanceof Uint8Array) {
    kind = DataKind.BYTES;
    body = data;
  } else if (data !== undefined) {
    kind = DataKind.CODEC;
    const encoded = codec.encode(data);
    body = typeof encoded === 'string' ? Buffer.from(encoded) : encoded;
  }
  const out = Buffer.allocUnsafe(HEAD + head.length + 1 + (body?.length ?? 0));
  out[0] = VERSION;
  out.writeUInt32BE(head.length, 1);
  head.copy(out, HEAD);
  out[HEAD + head.length] = kind;
  if (body) out.set(body, HEAD + head.length + 1);
  return out;
}

/** The message in `raw`; throws on anything malformed (the caller drops it). */
export function decodeAdapterMessage<H>(raw: Buffer, codec: MsgTransCodec): AdapterMessage<H> {
  if (raw.length < HEAD + 1 || raw[0] !== VERSION) throw new Error('not a msgtrans adapter message');
  const headLength = raw.readUInt32BE(1);
  if (HEAD + headLength + 1 > raw.length) throw new Error('truncated adapter message');
  const header = JSON.parse(raw.toString('utf8', HEAD, HEAD + headLength)) as H;
  const kind = raw[HEAD + headLength];
  const body = raw.subarray(HEAD + headLength + 1);
  const data = kind === DataKind.BYTES ? Buffer.from(body) : kind === DataKind.CODEC ? codec.decode(body) : undefined;
  return { header, data };
}
