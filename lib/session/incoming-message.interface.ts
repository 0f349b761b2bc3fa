import type { PacketType } from '../codec/packet.js';

/** A request or event as it reaches a handler. */
export interface IncomingMessage {
  packetType: PacketType;
  messageId: number;
  bizType: number;
  flags: number;
  /** The pattern: the `route` entry, else the biz_type as a decimal string. */
  route: string;
  /** Every extension-header entry other than `route`. */
  metadata: Record<string, string> | undefined;
  /**
   * Payload length as it arrived (compressed if it was sent compressed), known
   * without decoding: what holding the message costs before it is handled.
   */
  readonly payloadSize: number;
  /**
   * Decoded payload: codec value, or a `Buffer` for raw payloads. Decoded on
   * first read, so route and authorise from the fields above first. A payload
   * that cannot be decoded throws a `MsgTransProtocolError` (BAD_PAYLOAD,
   * DECOMPRESSION_FAILED, DECOMPRESSED_TOO_LARGE) on that read and closes
   * the connection it came on.
   */
  readonly data: unknown;
}
