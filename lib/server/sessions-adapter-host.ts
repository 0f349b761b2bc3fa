import type { Observable } from 'rxjs';
import type { MsgTransCodec } from '../envelope/msgtrans-codec.interface.js';
import type { WireRoute } from '../envelope/route.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';
import type {
  MsgTransAdapter,
  MsgTransAdapterHost,
  MsgTransPresenceEvent,
  MsgTransPush,
  MsgTransPushTarget,
  MsgTransSessionInfo,
} from './msgtrans-adapter.interface.js';
import type { MsgTransSessions } from './msgtrans-sessions.js';

/** Node name of sessions when there is no adapter. */
const LOCAL_NODE = 'local';

/** What the cluster is told about a session of this instance. */
export function sessionInfo(session: MsgTransSession, adapter: MsgTransAdapter | null, rooms: string[]): MsgTransSessionInfo {
  return {
    id: session.id,
    node: adapter?.nodeId ?? LOCAL_NODE,
    protocol: session.protocol,
    remoteAddress: session.connection.remoteAddress,
    rooms,
  };
}

/**
 * The adapter's view of one instance's `MsgTransSessions`: what is local,
 * and nothing that would hand a push back to the adapter.
 */
export class SessionsAdapterHost implements MsgTransAdapterHost {
  constructor(
    private readonly sessions: MsgTransSessions,
    readonly codec: MsgTransCodec,
    private readonly presence: (event: MsgTransPresenceEvent) => void,
  ) {}

  localSessions(): MsgTransSessionInfo[] {
    return this.sessions.all().map((s) => sessionInfo(s, null, this.sessions.roomsOfSession(s)));
  }

  isLocal(sessionId: string): boolean {
    return this.sessions.get(sessionId) !== undefined;
  }

  deliverLocal(target: MsgTransPushTarget, push: MsgTransPush): number {
    let targets: MsgTransSession[];
    if ('room' in target) targets = this.sessions.members(target.room);
    else if ('session' in target) targets = [this.sessions.get(target.session)].filter((s): s is MsgTransSession => s !== undefined);
    else targets = this.sessions.all();
    let sent = 0;
    for (const session of targets) {
      if (session.closed || session.id === push.except) continue;
      session.emit(push.wire.bizType, push.wire.route, push.data, push.metadata);
      sent++;
    }
    return sent;
  }

  joinLocal(sessionId: string, room: string): boolean {
    return this.isLocal(sessionId) && this.sessions.join(sessionId, room);
  }

  leaveLocal(sessionId: string, room: string): void {
    if (this.isLocal(sessionId)) this.sessions.leave(sessionId, room);
  }

  sendToLocal<T>(sessionId: string, wire: WireRoute, data: unknown, metadata: Record<string, string> | undefined): Observable<T> {
    return this.sessions.sendTo<T>(sessionId, wire.route ?? wire.bizType, data, metadata);
  }

  remotePresence(event: MsgTransPresenceEvent): void {
    this.presence(event);
  }
}
