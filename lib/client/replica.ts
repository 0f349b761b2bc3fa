import type { MsgTransConnectionState } from '../interfaces/msgtrans-events.interface.js';
import type { MsgTransSession } from '../session/msgtrans-session.js';
import { formatHostPort, type MsgTransEndpoint } from '../transport/endpoint.js';
import { ConnectionStateMachine, type ConnectionPolicy } from './connection-state-machine.js';

/** What a replica asks of its pool's client. */
export interface ReplicaHost {
  /** Opens a connection to `endpoint` as a session of the client. */
  dial(endpoint: MsgTransEndpoint): Promise<MsgTransSession>;
  /** Presents the credentials (see `ConnectionDriver.authenticate`). */
  authenticate(session: MsgTransSession, where: string): Promise<unknown> | undefined;
  /** True while the replica should stay connected with no call waiting. */
  wantsConnection(): boolean;
  /** A replica's state changed. */
  transition(replica: Replica, from: MsgTransConnectionState, to: MsgTransConnectionState, error: Error | undefined): void;
}

/** One address of a service: its endpoint and its own connection state machine. */
export class Replica {
  readonly connection: ConnectionStateMachine;
  /** `scheme://host:port`, for messages and as the replica's key. */
  readonly name: string;
  /** The `dns://` name this address came from; undefined for a configured address. */
  source: MsgTransEndpoint | undefined;
  /** Gone from DNS: takes no new calls, closes once idle. */
  retired = false;

  constructor(
    readonly endpoint: MsgTransEndpoint,
    host: ReplicaHost,
    policy: ConnectionPolicy,
  ) {
    this.name = `${endpoint.protocol}://${formatHostPort(endpoint.host, endpoint.port)}`;
    this.connection = new ConnectionStateMachine(
      {
        dial: () => host.dial(endpoint),
        authenticate: (session) => host.authenticate(session, this.name),
        wantsConnection: () => host.wantsConnection(),
        transition: (from, to, error) => host.transition(this, from, to, error),
        describeEndpoint: () => this.name,
      },
      policy,
    );
  }
}
