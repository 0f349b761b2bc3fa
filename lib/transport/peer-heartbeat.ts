import { encodePacket } from '../codec/packet-encoder.js';
import { PacketFlag, PacketType, type MsgTransPacket } from '../codec/packet.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import { joinHeartbeat } from './heartbeat.js';

/**
 * Flags only a peer that speaks Part B sets. The reference implementation
 * sets none (PROTOCOL.md Part C), so one of these on any packet proves the
 * peer understands a CANCEL for message id 0 as a no-op.
 */
export const PART_B_FLAGS = PacketFlag.ERROR | PacketFlag.MORE | PacketFlag.CODEC | PacketFlag.END | PacketFlag.CANCEL;

const EMPTY = Buffer.alloc(0);

/** The heartbeat: a CANCEL for message id 0, which no request ever has. Never changes, so shared. */
export const HEARTBEAT_PACKET = encodePacket({
  compression: 0,
  packetType: PacketType.ONE_WAY,
  bizType: 0,
  messageId: 0,
  flags: PacketFlag.CANCEL,
  extHeader: EMPTY,
  payload: EMPTY,
});

/** True for a heartbeat (or any CANCEL for id 0): nothing for the session. */
export function isHeartbeat(packet: MsgTransPacket): boolean {
  return packet.messageId === 0 && packet.packetType === PacketType.ONE_WAY && (packet.flags & PacketFlag.CANCEL) !== 0;
}

/** What a {@link PeerHeartbeat} needs of its connection. */
export interface PeerHeartbeatHost {
  /** True while the connection does not read (backpressure): silence then proves nothing. */
  readonly readingPaused: boolean;
  /** Queues {@link HEARTBEAT_PACKET} unless bytes already wait for the peer. */
  sendHeartbeat(): void;
  close(error: Error): void;
}

// Ticks per interval: a side sends something at least once per interval and
// drops its peer after two intervals of silence, with a tick of slack so that
// one late timer on a busy process never drops a healthy peer.
const TICKS_PER_INTERVAL = 2;
const SILENT_TICKS_ALLOWED = 2 * TICKS_PER_INTERVAL;

/**
 * An application heartbeat for byte-stream protocols, where the transport has
 * no ping of its own. Runs only between peers known to speak Part B (or when
 * the user forces it): a side that has sent nothing for an interval sends a
 * CANCEL for message id 0, and a side that has received nothing at all for
 * two intervals drops its peer. The connection flags traffic in both
 * directions with two booleans, so the hot path pays no timer or clock read.
 */
export class PeerHeartbeat {
  /** Set by the connection whenever bytes arrive. */
  received = true;
  /** Set by the connection whenever it queues a packet. */
  sent = false;
  private silentTicks = 0;
  private leave: (() => void) | null;

  constructor(
    private readonly interval: number,
    private readonly host: PeerHeartbeatHost,
  ) {
    this.leave = joinHeartbeat(Math.max(1, Math.round(interval / TICKS_PER_INTERVAL)), this);
  }

  /** @internal heartbeat tick */
  beat(): void {
    if (this.received || this.host.readingPaused) {
      this.silentTicks = 0;
    } else if (++this.silentTicks >= SILENT_TICKS_ALLOWED) {
      this.stop();
      this.host.close(
        new MsgTransConnectionError(
          MsgTransErrorCode.HEARTBEAT_TIMEOUT,
          `Peer sent nothing for ${2 * this.interval} ms (heartbeatInterval ${this.interval} ms)`,
        ),
      );
      return;
    }
    this.received = false;
    if (!this.sent) this.host.sendHeartbeat();
    this.sent = false;
  }

  stop(): void {
    this.leave?.();
    this.leave = null;
  }
}
