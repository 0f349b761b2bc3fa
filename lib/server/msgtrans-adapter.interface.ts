import type { Observable } from 'rxjs';
import type { MsgTransCodec } from '../envelope/msgtrans-codec.interface.js';
import type { WireRoute } from '../envelope/route.js';

/** A session as the cluster knows it (`MsgTransSessions#fetchSessions()`). */
export interface MsgTransSessionInfo {
  id: string;
  /** The instance (adapter node id) the session is connected to; `local` without an adapter. */
  node: string;
  protocol: string;
  remoteAddress: string | undefined;
  rooms: string[];
}

/** A session connected to or closed on some instance (`MsgTransSessions#presence$`). */
export interface MsgTransPresenceEvent {
  type: 'connected' | 'closed';
  session: Omit<MsgTransSessionInfo, 'rooms'>;
  /** True when the session is on this instance. */
  local: boolean;
}

/** Where a push goes. */
export type MsgTransPushTarget = { room: string } | { session: string } | { all: true };

/** A push to deliver: the wire route, data and the options of `emitToRoom`/`broadcast`. */
export interface MsgTransPush {
  wire: WireRoute;
  data: unknown;
  metadata: Record<string, string> | undefined;
  /** Session id to leave out. */
  except: string | undefined;
}

/** What `MsgTransSessions` offers its adapter: this instance's sessions, untouched by the adapter. */
export interface MsgTransAdapterHost {
  /** The server's codec, to carry non-binary data between instances as it travels on the wire. */
  readonly codec: MsgTransCodec;
  /** This instance's sessions. */
  localSessions(): MsgTransSessionInfo[];
  /** Is this session connected here? */
  isLocal(sessionId: string): boolean;
  /** Delivers a push to the sessions of this instance it targets; returns how many. */
  deliverLocal(target: MsgTransPushTarget, push: MsgTransPush): number;
  /** Room membership of a session of this instance. */
  joinLocal(sessionId: string, room: string): boolean;
  leaveLocal(sessionId: string, room: string): void;
  /** A request to a session of this instance. */
  sendToLocal<T>(sessionId: string, wire: WireRoute, data: unknown, metadata: Record<string, string> | undefined): Observable<T>;
  /** A session came or went on another instance. */
  remotePresence(event: MsgTransPresenceEvent): void;
}

/**
 * Makes a server's `MsgTransSessions` span every instance that shares the
 * adapter's medium (e.g. `MsgTransRedisAdapter` from `nestjs-msgtrans/redis`).
 * `MsgTransSessions` handles what is local and hands the adapter the rest;
 * an adapter never blocks or throws on a push: while its medium is
 * unreachable, cross-instance pushes are dropped (at most once) and local
 * delivery goes on.
 */
export interface MsgTransAdapter {
  /** This instance's id in the cluster. */
  readonly nodeId: string;
  /** Called once by the server before it listens. Should not reject when the medium is down (retry in the background). */
  attach(host: MsgTransAdapterHost): Promise<void>;
  /** Called by the server's close(): leave the cluster, release connections. */
  close(): Promise<void>;
  /** A session of this instance connected / closed (with the rooms it was in). */
  sessionAdded(info: MsgTransSessionInfo): void;
  sessionRemoved(info: MsgTransSessionInfo): void;
  /** A session of this instance joined / left a room. */
  roomJoined(sessionId: string, room: string, firstLocalMember: boolean): void;
  roomLeft(sessionId: string, room: string, lastLocalMember: boolean): void;
  /** Is a session with this id connected to another instance (as far as this one knows)? */
  isRemote(sessionId: string): boolean;
  /** Room membership of a session on another instance. */
  join(sessionId: string, room: string): void;
  leave(sessionId: string, room: string): void;
  /** A push for the sessions of other instances (this one has delivered to its own). */
  publish(target: MsgTransPushTarget, push: MsgTransPush): void;
  /** A request to a session on another instance; errors on timeout if that instance does not answer. */
  sendTo<T>(sessionId: string, wire: WireRoute, data: unknown, metadata: Record<string, string> | undefined): Observable<T>;
  /** Every session of the cluster; instances that do not answer in time are left out. */
  fetchSessions(): Promise<MsgTransSessionInfo[]>;
}
