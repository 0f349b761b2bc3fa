/** Plain traffic figures of one protocol, kept with or without OpenTelemetry. */
export interface MsgTransProtocolStats {
  /** Sessions open now. */
  sessions: number;
  /** Packets received and sent (requests, events, replies, cancels). */
  messagesIn: number;
  messagesOut: number;
  /** Their bytes as on the wire (header, extension header and payload as sent). */
  bytesIn: number;
  bytesOut: number;
  /** Connections closed for a limit or protocol violation, or lost with an error, by error code. */
  errors: Record<string, number>;
}

/** The counters of one protocol; sessions of that protocol add to them as packets pass. */
export class TrafficCounter implements MsgTransProtocolStats {
  sessions = 0;
  messagesIn = 0;
  messagesOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  errors: Record<string, number> = {};

  constructor(readonly protocol: string) {}

  countError(code: string): void {
    this.errors[code] = (this.errors[code] ?? 0) + 1;
  }

  snapshot(): MsgTransProtocolStats {
    const { sessions, messagesIn, messagesOut, bytesIn, bytesOut } = this;
    return { sessions, messagesIn, messagesOut, bytesIn, bytesOut, errors: { ...this.errors } };
  }
}

/** Counters by protocol, made on first use. */
export class TrafficCounters {
  private readonly byProtocol = new Map<string, TrafficCounter>();

  of(protocol: string): TrafficCounter {
    let counter = this.byProtocol.get(protocol);
    if (counter === undefined) this.byProtocol.set(protocol, (counter = new TrafficCounter(protocol)));
    return counter;
  }

  all(): IterableIterator<TrafficCounter> {
    return this.byProtocol.values();
  }

  snapshot(): Record<string, MsgTransProtocolStats> {
    const out: Record<string, MsgTransProtocolStats> = {};
    for (const [protocol, counter] of this.byProtocol) out[protocol] = counter.snapshot();
    return out;
  }
}
