import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import * as dgram from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { formatHostPort, type MsgTransEndpoint } from '../endpoint.js';
import type {
  MsgTransConnection,
  MsgTransListener,
  MsgTransListenerAddress,
} from '../msgtrans-connection.interface.js';
import type { ConnectionLimits } from '../msgtrans-protocol.interface.js';
import type { MsgTransTlsOptions } from '../tls-options.interface.js';
import { isLoopbackAddress, serverQuicheConfig, type QuicTransportSettings } from './quic-config.js';
import { QUIC_CLOSE_LINGER, QuicConnection, type QuicConnectionOwner } from './quic-connection.js';
import { quiche, type QuicheConfig } from './quic-native.js';
import { literalLookup, QuicUdpSocket } from './quic-udp-socket.js';

/** Length of the connection ids this server issues (quiche's maximum, 20). */
const CID_LEN: number = quiche.MAX_CONN_ID_LEN;
/** ms a Retry token stays valid. */
const TOKEN_LIFETIME = 10_000;
const TOKEN_MAC = 16;
// RFC 9000 §10.3: a stateless reset is at least 21 bytes and shorter than what triggered it.
const RESET_MIN = 21;
const RESET_MAX = 43;

/** What a QUIC listener needs beyond the endpoint. */
export interface QuicListenerSettings extends QuicTransportSettings {
  heartbeatInterval: number;
  handshakeTimeout: number;
  /** Replaces maxDatagramSize when listening on a loopback address. */
  loopbackDatagramSize: number;
  /** Validate client addresses with a Retry before keeping any state. */
  retry: boolean;
  /** Secret for stateless-reset tokens and Retry tokens; stable across restarts. */
  statelessResetKey: Buffer;
  /** Connections (including ones still handshaking) held at once; more are ignored. */
  maxConnections: number;
}

/**
 * Serves `quic://host:port` on one UDP socket: routes datagrams to
 * connections by destination connection id, accepts new ones (after a
 * Retry when address validation is on), and answers packets for unknown
 * connections with a stateless reset so that clients of a previous process
 * on this port learn at once that their connection is gone.
 */
export class QuicListener implements MsgTransListener, QuicConnectionOwner {
  readonly protocol = 'quic';
  private io: QuicUdpSocket | null = null;
  private config: QuicheConfig | null = null;
  private readonly connections = new Map<string, QuicConnection>();
  // every id a connection is found by: its own, and without Retry the client's original one
  private readonly ids = new Map<QuicConnection, string[]>();
  private onConnection: (connection: MsgTransConnection) => void = () => undefined;
  private localHost = '';
  private localPort = 0;
  private closing = false;

  constructor(
    private readonly endpoint: MsgTransEndpoint,
    private readonly limits: ConnectionLimits,
    private readonly tls: MsgTransTlsOptions,
    private readonly settings: QuicListenerSettings,
  ) {}

  async listen(
    onConnection: (connection: MsgTransConnection) => void,
    onError: (error: Error) => void = () => undefined,
  ): Promise<MsgTransListenerAddress> {
    this.onConnection = onConnection;
    // a listener may serve again after close() (MsgTransServer#listen after #close)
    this.closing = false;
    const host = isIP(this.endpoint.host) ? this.endpoint.host : (await lookup(this.endpoint.host)).address;
    // only a loopback listener knows every peer is on this host; elsewhere a peer's own size is not trusted
    const datagram = isLoopbackAddress(host) ? this.settings.loopbackDatagramSize : this.settings.maxDatagramSize;
    this.config = serverQuicheConfig(this.tls, { ...this.settings, maxDatagramSize: datagram });
    const socket = dgram.createSocket({ type: isIP(host) === 6 ? 'udp6' : 'udp4', lookup: literalLookup as never });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', (err: NodeJS.ErrnoException) => {
        socket.close();
        reject(
          Object.assign(new Error(`quic://${formatHostPort(this.endpoint.host, this.endpoint.port)}: ${err.message}`, { cause: err }), {
            code: err.code,
          }),
        );
      });
      socket.bind(this.endpoint.port, host, () => resolve());
    });
    socket.removeAllListeners('error');
    socket.on('error', onError);
    const io = new QuicUdpSocket(socket, datagram);
    io.raiseBuffers();
    this.io = io;
    const bound = socket.address();
    this.localHost = bound.address;
    this.localPort = bound.port;
    socket.on('message', this.onMessage);
    return { protocol: 'quic', host: bound.address, port: bound.port, url: `quic://${formatHostPort(bound.address, bound.port)}` };
  }

  async close(): Promise<void> {
    this.closing = true;
    const io = this.io;
    if (!io) return;
    for (const connection of [...this.connections.values()]) {
      if (!connection.established) connection.close(new Error('The server is closing'));
    }
    // connections handed out are closed by their sessions; wait (bounded) for them to drain
    const deadline = Date.now() + QUIC_CLOSE_LINGER + 1_000;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const connection of [...this.connections.values()]) connection.close(new Error('listener closed'));
    this.connections.clear();
    this.ids.clear();
    this.io = null;
    await new Promise<void>((resolve) => io.socket.close(() => resolve()));
  }

  unwrap<T = unknown>(): T {
    return this.io?.socket as T;
  }

  ready(connection: QuicConnection): void {
    this.onConnection(connection);
  }

  done(connection: QuicConnection): void {
    const ids = this.ids.get(connection);
    if (ids === undefined) return;
    this.ids.delete(connection);
    for (const id of ids) this.connections.delete(id);
  }

  private readonly onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const length = msg.length;
    if (length === 0) return;
    const long = (msg[0] & 0x80) !== 0;
    let id: string;
    if (long) {
      if (length < 7 || msg[5] > CID_LEN || length < 6 + msg[5]) return;
      id = msg.toString('latin1', 6, 6 + msg[5]);
    } else {
      if (length < 1 + CID_LEN) return;
      id = msg.toString('latin1', 1, 1 + CID_LEN);
    }
    const connection = this.connections.get(id);
    if (connection !== undefined) connection.receive(msg);
    else if (long) this.accept(msg, rinfo);
    else this.statelessReset(msg, rinfo);
  };

  private accept(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const io = this.io;
    if (!io || this.closing) return;
    let header: ReturnType<typeof quiche.Header.fromSlice>;
    try {
      header = quiche.Header.fromSlice(msg, CID_LEN);
    } catch {
      return;
    }
    if (!quiche.versionIsSupported(header.version)) {
      const view = io.datagramView();
      const n = quiche.negotiateVersion(header.scid, header.dcid, view);
      io.commit(view, n, rinfo.port, rinfo.address);
      return;
    }
    // only a client Initial (padded to 1200 bytes) may create state
    if (header.ty !== quiche.Type.Initial || msg.length < 1200) return;
    if (this.ids.size >= this.settings.maxConnections) return;
    let scid: Buffer;
    let odcid: Buffer | undefined;
    if (this.settings.retry) {
      const token = header.token;
      if (!token || token.length === 0) {
        const view = io.datagramView();
        const n = quiche.retry(header.scid, header.dcid, randomBytes(CID_LEN), this.mintToken(header.dcid, rinfo), header.version, view);
        io.commit(view, n, rinfo.port, rinfo.address);
        return;
      }
      odcid = this.validateToken(Buffer.from(token), rinfo);
      // a bad or stale token: the client starts over after its handshake times out
      if (odcid === undefined || header.dcid.length !== CID_LEN) return;
      scid = Buffer.from(header.dcid);
    } else {
      scid = randomBytes(CID_LEN);
    }
    const config = this.config!;
    config.setStatelessResetToken(resetTokenValue(this.settings.statelessResetKey, scid));
    const local = { host: this.localHost, port: this.localPort };
    const remote = { host: rinfo.address, port: rinfo.port };
    let conn: ReturnType<typeof quiche.Connection.accept>;
    try {
      conn = quiche.Connection.accept(scid, odcid, local, remote, config);
    } catch {
      return;
    }
    const connection = new QuicConnection({
      io,
      conn,
      isServer: true,
      host: rinfo.address,
      port: rinfo.port,
      recvInfo: { from: remote, to: local },
      limits: this.limits,
      heartbeatInterval: this.settings.heartbeatInterval,
      handshakeTimeout: this.settings.handshakeTimeout,
      caConfigured: this.tls.ca !== undefined,
      owner: this,
    });
    const ids = [scid.toString('latin1')];
    // without Retry the client repeats its Initial to the id it chose until it hears from us
    if (odcid === undefined) ids.push(Buffer.from(header.dcid).toString('latin1'));
    for (const id of ids) this.connections.set(id, connection);
    this.ids.set(connection, ids);
    connection.receive(msg);
  }

  private statelessReset(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const io = this.io;
    const size = Math.min(msg.length - 1, RESET_MAX);
    if (!io || size < RESET_MIN) return;
    const token = resetToken(this.settings.statelessResetKey, msg.subarray(1, 1 + CID_LEN));
    const view = io.datagramView();
    randomBytes(size - 16).copy(view, 0);
    // a short header: fixed bit set, long-header bit clear
    view[0] = 0x40 | (view[0] & 0x3f);
    token.copy(view, size - 16);
    io.commit(view, size, rinfo.port, rinfo.address);
  }

  /** Retry token: expiry, original destination id, and a MAC binding both to the client's address. */
  private mintToken(odcid: Uint8Array, rinfo: dgram.RemoteInfo): Buffer {
    const body = Buffer.allocUnsafe(9 + odcid.length);
    body.writeDoubleBE(Date.now() + TOKEN_LIFETIME, 0);
    body[8] = odcid.length;
    body.set(odcid, 9);
    return Buffer.concat([body, this.tokenMac(body, rinfo)]);
  }

  private validateToken(token: Buffer, rinfo: dgram.RemoteInfo): Buffer | undefined {
    if (token.length < 9 + TOKEN_MAC) return undefined;
    const body = token.subarray(0, token.length - TOKEN_MAC);
    if (body.length !== 9 + body[8]) return undefined;
    if (!timingSafeEqual(this.tokenMac(body, rinfo), token.subarray(body.length))) return undefined;
    if (body.readDoubleBE(0) < Date.now()) return undefined;
    return Buffer.from(body.subarray(9));
  }

  private tokenMac(body: Buffer, rinfo: dgram.RemoteInfo): Buffer {
    return createHmac('sha256', this.settings.statelessResetKey)
      .update('msgtrans retry token')
      .update(`${rinfo.address}|${rinfo.port}|`)
      .update(body)
      .digest()
      .subarray(0, TOKEN_MAC);
  }
}

/** The stateless-reset token of connection id `cid`: a MAC under the server's key. */
function resetToken(key: Buffer, cid: Uint8Array): Buffer {
  return createHmac('sha256', key).update('msgtrans stateless reset').update(cid).digest().subarray(0, 16);
}

/** The token as quiche takes it: a u128 of the big-endian bytes. */
function resetTokenValue(key: Buffer, cid: Uint8Array): bigint {
  return BigInt(`0x${resetToken(key, cid).toString('hex')}`);
}
