import { Subject, type Observable } from 'rxjs';
import { toWireRoute } from '../envelope/route.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConnectionError } from '../errors/msgtrans-connection-error.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';
import { requestObservable } from '../session/request-observable.js';

/** A session that ended, and why. */
export interface MsgTransSessionClosed {
  session: MsgTransSession;
  /** Set when the session did not end normally (peer vanished, bad input, heartbeat missed). */
  error: Error | undefined;
  /** The rooms it was in when it closed (it has left them). */
  rooms: string[];
}

type SessionRef = MsgTransSession | string;

/**
 * The server's open sessions, their rooms, and server push: events and
 * requests sent to one session, a room, or everyone. Injectable from
 * `MsgTransModule`; also `server.sessions`.
 *
 * ```ts
 * sessions.join(ctx.getSessionId(), 'room:lobby');
 * sessions.emitToRoom('room:lobby', 'chat.message', { from, text });
 * sessions.sendTo(sessionId, 'client.ping', {}).subscribe(reply => …);
 * ```
 */
export class MsgTransSessions {
  private readonly open = new Map<string, MsgTransSession>();
  private readonly rooms = new Map<string, Set<string>>();
  private readonly roomsOf = new Map<string, Set<string>>();
  private readonly connectedSubject = new Subject<MsgTransSession>();
  private readonly closedSubject = new Subject<MsgTransSessionClosed>();

  /** Emits every session as it connects. */
  readonly connected$: Observable<MsgTransSession> = this.connectedSubject.asObservable();
  /** Emits every session as it closes, with the reason and the rooms it left. */
  readonly closed$: Observable<MsgTransSessionClosed> = this.closedSubject.asObservable();

  /** Number of open sessions. */
  get size(): number {
    return this.open.size;
  }

  /** The open session with this id. */
  get(id: string): MsgTransSession | undefined {
    return this.open.get(id);
  }

  /** Every open session. */
  all(): MsgTransSession[] {
    return [...this.open.values()];
  }

  /** Puts a session in a room (a named group). Returns false if the session is not open. */
  join(session: SessionRef, room: string): boolean {
    const id = idOf(session);
    if (!this.open.has(id)) return false;
    let members = this.rooms.get(room);
    if (!members) this.rooms.set(room, (members = new Set()));
    members.add(id);
    let joined = this.roomsOf.get(id);
    if (!joined) this.roomsOf.set(id, (joined = new Set()));
    joined.add(room);
    return true;
  }

  /** Takes a session out of a room. */
  leave(session: SessionRef, room: string): void {
    const id = idOf(session);
    const members = this.rooms.get(room);
    members?.delete(id);
    if (members?.size === 0) this.rooms.delete(room);
    this.roomsOf.get(id)?.delete(room);
  }

  /** The sessions in a room. */
  members(room: string): MsgTransSession[] {
    const ids = this.rooms.get(room);
    if (!ids) return [];
    return [...ids].map((id) => this.open.get(id)!).filter(Boolean);
  }

  /** The rooms a session is in. */
  roomsOfSession(session: SessionRef): string[] {
    return [...(this.roomsOf.get(idOf(session)) ?? [])];
  }

  /** Sends an event to one session. Returns false if it is not open. */
  emitTo(session: SessionRef, pattern: unknown, data: unknown, metadata?: Record<string, string>): boolean {
    const target = this.open.get(idOf(session));
    if (!target || target.closed) return false;
    const wire = toWireRoute(pattern);
    target.emit(wire.bizType, wire.route, data, metadata);
    return true;
  }

  /** Sends an event to every session in a room, optionally but one. Returns how many it went to. */
  emitToRoom(room: string, pattern: unknown, data: unknown, options: PushOptions = {}): number {
    return this.emitToMany(this.members(room), pattern, data, options);
  }

  /** Sends an event to every open session, optionally but one. Returns how many it went to. */
  broadcast(pattern: unknown, data: unknown, options: PushOptions = {}): number {
    return this.emitToMany(this.all(), pattern, data, options);
  }

  /**
   * Sends a request to a session; the Observable (cold, like
   * `ClientProxy.send`) emits the client's reply. Errors at once with
   * `ERR_MSGTRANS_UNKNOWN_SESSION` if the session is not open.
   */
  sendTo<T = unknown>(session: SessionRef, pattern: unknown, data: unknown, metadata?: Record<string, string>): Observable<T> {
    const id = idOf(session);
    const wire = toWireRoute(pattern);
    return requestObservable<T>(
      () =>
        this.open.get(id) ??
        Promise.reject(new MsgTransConnectionError(MsgTransErrorCode.UNKNOWN_SESSION, `Session ${id} is not open`)),
      () => ({ wire, data, metadata }),
    );
  }

  /** @internal called by the server */
  add(session: MsgTransSession): void {
    this.open.set(session.id, session);
    this.connectedSubject.next(session);
  }

  /** @internal called by the server */
  remove(session: MsgTransSession, error: Error | undefined): void {
    if (!this.open.delete(session.id)) return;
    const rooms = this.roomsOfSession(session);
    for (const room of rooms) this.leave(session, room);
    this.roomsOf.delete(session.id);
    this.closedSubject.next({ session, error, rooms });
  }

  private emitToMany(targets: MsgTransSession[], pattern: unknown, data: unknown, options: PushOptions): number {
    const wire = toWireRoute(pattern);
    const except = options.except === undefined ? undefined : idOf(options.except);
    let sent = 0;
    for (const target of targets) {
      if (target.closed || target.id === except) continue;
      target.emit(wire.bizType, wire.route, data, options.metadata);
      sent++;
    }
    return sent;
  }
}

/** Options of room and broadcast pushes. */
export interface PushOptions {
  /** A session to leave out (typically the sender). */
  except?: SessionRef;
  /** Extension-header metadata for the event. */
  metadata?: Record<string, string>;
}

function idOf(session: SessionRef): string {
  return typeof session === 'string' ? session : session.id;
}
