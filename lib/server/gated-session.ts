import type { MsgTransPacket } from '../codec/packet.js';
import { MsgTransSession } from '../session/msgtrans-session.js';

/** Takes packets of a session that is not admitted yet, before anything decodes them. */
export interface PacketGate {
  /** True if the gate took the packet; false lets the session handle it as usual. */
  take(session: GatedSession, packet: MsgTransPacket): boolean;
}

/**
 * A server session that waits for the `authenticate` hook. While `gate` is
 * set, packets reach it as they came off the wire (payload still compressed
 * and encoded), so a peer nobody has accepted costs no decompression and no
 * decoding, and what it may queue is bounded in bytes.
 */
export class GatedSession extends MsgTransSession {
  /** @internal set by the authenticator while the session is held */
  gate: PacketGate | null = null;

  /** @internal connection sink */
  override onPacket(packet: MsgTransPacket): void {
    if (this.gate === null || !this.gate.take(this, packet)) super.onPacket(packet);
  }
}
