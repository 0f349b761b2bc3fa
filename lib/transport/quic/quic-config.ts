import type { QUICConfig } from '@matrixai/quic';

/**
 * Transport settings, chosen from measurements on loopback (see README):
 * the library spends about a millisecond of CPU per UDP datagram, so
 * throughput is set by datagrams per second. Large datagrams (the IPv4 UDP
 * maximum, also valid on IPv6) plus coalesced stream writes put dozens of
 * packets in one datagram: ~90k req/s at 100 in flight instead of ~1k with
 * the defaults. Flow-control windows are raised so a full batch is never held
 * back waiting for credit, and reads take 64 KiB at a time.
 */
export function quicTransportConfig(heartbeatInterval: number): Partial<QUICConfig> {
  return {
    maxRecvUdpPayloadSize: 65507,
    maxSendUdpPayloadSize: 65507,
    initialMaxData: 64 * 1024 * 1024,
    initialMaxStreamDataBidiLocal: 16 * 1024 * 1024,
    initialMaxStreamDataBidiRemote: 16 * 1024 * 1024,
    readableChunkSize: 64 * 1024,
    // keep-alive pings at the heartbeat interval; two silent intervals mean the peer is gone
    maxIdleTimeout: heartbeatInterval > 0 ? heartbeatInterval * 2 : 0,
    keepAliveIntervalTime: heartbeatInterval > 0 ? heartbeatInterval : undefined,
  };
}
