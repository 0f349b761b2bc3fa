// RFC 6455 §5.2: FIN bit, opcode nibble, MASK bit, 7-bit length with 16/64-bit extensions.
const FIN = 0x80;
const OPCODE = 0x0f;
const MASK = 0x80;
const LENGTH = 0x7f;
const FIRST_CONTROL_OPCODE = 0x8;

/**
 * Follows the frame headers of what a WebSocket peer sends, to know whether
 * part of a message is held: a frame partly in, or a fragmented message whose
 * final frame has not come. `ws` assembles messages out of sight and offers no
 * public way to ask, and reading its private state misses the gap between two
 * fragments. Only headers are looked at; payload bytes are skipped over.
 */
export class WsFrameTracker {
  // a header split over two chunks, gathered byte by byte; allocated the first time one is
  private header: Buffer | null = null;
  private headerFill = 0;
  // payload bytes of the current frame still to come
  private payloadLeft = 0;
  private inPayload = false;
  private frameIsData = false;
  private frameIsFinal = false;
  // a data frame without FIN was seen: the message goes on in continuation frames
  private messageOpen = false;
  private messageBytes = 0;

  /** Bytes held of a message (or frame) that has not fully arrived; 0 when none is. */
  get pendingBytes(): number {
    return this.headerFill > 0 || this.inPayload || this.messageOpen ? Math.max(1, this.messageBytes) : 0;
  }

  /** Reads one chunk; returns how many data messages it completed. */
  push(chunk: Buffer): number {
    let completed = 0;
    let offset = 0;
    const length = chunk.length;
    while (offset < length) {
      if (this.inPayload) {
        const take = Math.min(this.payloadLeft, length - offset);
        this.payloadLeft -= take;
        offset += take;
        this.messageBytes += take;
        if (this.payloadLeft === 0 && this.endFrame()) completed++;
        continue;
      }
      // a whole header in this chunk is read in place (the common case)
      if (this.headerFill === 0 && offset + 1 < length) {
        const size = headerLength(chunk[offset + 1]);
        if (offset + size <= length) {
          this.startFrame(chunk, offset);
          offset += size;
          this.messageBytes += size;
          if (this.payloadLeft === 0 && this.endFrame()) completed++;
          continue;
        }
      }
      const header = (this.header ??= Buffer.allocUnsafe(14));
      header[this.headerFill++] = chunk[offset++];
      this.messageBytes++;
      if (this.headerFill < 2 || this.headerFill < headerLength(header[1])) continue;
      this.headerFill = 0;
      this.startFrame(header, 0);
      if (this.payloadLeft === 0 && this.endFrame()) completed++;
    }
    return completed;
  }

  /** Starts the frame whose header begins at `at`. */
  private startFrame(h: Buffer, at: number): void {
    const len = h[at + 1] & LENGTH;
    // above 2^53 ws rejects the frame and closes; a double is exact up to there
    this.payloadLeft =
      len === 126 ? h.readUInt16BE(at + 2) : len === 127 ? h.readUInt32BE(at + 2) * 2 ** 32 + h.readUInt32BE(at + 6) : len;
    this.frameIsData = (h[at] & OPCODE) < FIRST_CONTROL_OPCODE;
    this.frameIsFinal = (h[at] & FIN) !== 0;
    this.inPayload = true;
  }

  /** A frame is complete; true when it completed a data message. */
  private endFrame(): boolean {
    this.inPayload = false;
    if (!this.frameIsData) {
      if (!this.messageOpen) this.messageBytes = 0;
      return false;
    }
    this.messageOpen = !this.frameIsFinal;
    if (this.messageOpen) return false;
    this.messageBytes = 0;
    return true;
  }
}

/** Header size from its second byte (MASK bit and 7-bit length). */
function headerLength(second: number): number {
  const len = second & LENGTH;
  return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (second & MASK ? 4 : 0);
}
