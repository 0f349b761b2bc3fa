import type { PacketType } from '../codec/packet.js';

/** A request or event as it reaches a handler, decoded from its packet. */
export interface IncomingMessage {
  packetType: PacketType;
  messageId: number;
  bizType: number;
  flags: number;
  /** The pattern: the `route` entry, else the biz_type as a decimal string. */
  route: string;
  /** Every extension-header entry other than `route`. */
  metadata: Record<string, string> | undefined;
  /** Decoded payload: codec value, or a `Buffer` for raw payloads. */
  data: unknown;
}
