import type { MsgTransTelemetry } from './msgtrans-telemetry.js';
import type { TrafficCounter } from './traffic-counter.js';

/** What a server or client measures on each of its sessions. */
export interface SessionInstruments {
  /** The plain counters of the session's protocol (`stats()`). */
  traffic: TrafficCounter;
  /** OpenTelemetry spans and metrics; null when nothing reports them. */
  telemetry: MsgTransTelemetry | null;
}
