/** Size of the fixed msgtrans v1 header, in bytes. */
export const HEADER_SIZE = 16;

/** The only wire version this library speaks. */
export const PROTOCOL_VERSION = 1;

/** Largest extension header the u16 length field can declare. */
export const MAX_EXT_HEADER_LEN = 0xffff;

/** `packet_type` values (PROTOCOL.md Part A). */
export const PacketType = {
  ONE_WAY: 0,
  REQUEST: 1,
  RESPONSE: 2,
} as const;
export type PacketType = (typeof PacketType)[keyof typeof PacketType];

/** `compression` values. zstd is 1 and zlib 2: not alphabetical. */
export const Compression = {
  NONE: 0,
  ZSTD: 1,
  ZLIB: 2,
} as const;
export type Compression = (typeof Compression)[keyof typeof Compression];

/**
 * Bits of the `flags` word. The first three belong to msgtrans itself
 * (Part A); the rest are the ones the Nest envelope adds (Part B).
 */
export const PacketFlag = {
  /** Reserved; never sent in v1 and rejected on receipt. */
  FRAGMENTED: 0x0001,
  /** Scheduling hint only. */
  HIGH_PRIORITY: 0x0002,
  /** The extension header carries a `route` entry. */
  HAS_ROUTE_TAG: 0x0004,
  /** Response: the payload is the encoded error and ends the reply. */
  ERROR: 0x0008,
  /** Response: one value of a streamed reply; more follow. */
  MORE: 0x0010,
  /** The payload is the codec's encoding of the data (else raw bytes). */
  CODEC: 0x0020,
  /** Response: the reply ends here and carries no value. */
  END: 0x0040,
  /** One-way: the sender no longer wants the reply to `message_id`. */
  CANCEL: 0x0080,
} as const;

/** One msgtrans v1 packet. `extHeader` and `payload` may be views into a larger buffer. */
export interface MsgTransPacket {
  compression: Compression;
  packetType: PacketType;
  /** 0–255, chosen by the application. */
  bizType: number;
  /** u32; 0 is never allocated by a counter but is legal on the wire. */
  messageId: number;
  /** u16 bit set, see {@link PacketFlag}. */
  flags: number;
  extHeader: Buffer;
  /** As sent: still compressed when `compression` is not NONE. */
  payload: Buffer;
}

/** Limits a receiver enforces from the header, before it allocates anything. */
export interface PacketLimits {
  /** Largest whole packet (header + extension header + payload) accepted. */
  maxPacketSize: number;
  /** Largest extension header accepted. */
  maxExtHeaderSize: number;
}
