import type { MsgTransPacket, PacketType } from '../codec/packet.js';
import type { IncomingMessage } from './incoming-message.interface.js';

/** What a received message needs from its session to decode its payload. */
export interface PayloadDecoder {
  /** Decompresses and decodes; throws a {@link MsgTransProtocolError} for a bad payload. */
  decodePayload(packet: MsgTransPacket): unknown;
  /** Closes the connection the bad payload came on. */
  close(error?: Error): void;
}

const UNDECODED = Symbol('undecoded');

/**
 * An incoming request or event whose payload is decompressed and decoded on
 * first read of `data`, not on arrival: a server routes and authorises from
 * the header and extension header first, so a payload nobody will handle
 * costs nothing to receive.
 */
export class ReceivedMessage implements IncomingMessage {
  readonly packetType: PacketType;
  readonly messageId: number;
  readonly bizType: number;
  readonly flags: number;
  readonly payloadSize: number;
  private packet: MsgTransPacket | null;
  private value: unknown = UNDECODED;

  constructor(
    private readonly decoder: PayloadDecoder,
    packet: MsgTransPacket,
    readonly route: string,
    readonly metadata: Record<string, string> | undefined,
  ) {
    this.packetType = packet.packetType;
    this.messageId = packet.messageId;
    this.bizType = packet.bizType;
    this.flags = packet.flags;
    this.payloadSize = packet.payload.length;
    this.packet = packet;
  }

  get data(): unknown {
    if (this.value !== UNDECODED) return this.value;
    const packet = this.packet;
    if (packet === null) return undefined;
    // the payload may be a view into a larger read buffer: let it go once decoded
    this.packet = null;
    try {
      this.value = this.decoder.decodePayload(packet);
    } catch (err) {
      this.value = undefined;
      // a bad payload is the peer breaking the contract: only its connection closes
      this.decoder.close(err as Error);
      throw err;
    }
    return this.value;
  }
}
