import type { MsgTransClientOptions, MsgTransServerOptions } from '../../lib/index.js';
import { createDevCertificates, type DevCertificates } from '../../sample/dev-certs.js';

let certs: Promise<DevCertificates> | undefined;

/** One set of throwaway certificates per test process. */
export function testCertificates(): Promise<DevCertificates> {
  certs ??= createDevCertificates();
  return certs;
}

/**
 * A protocol the end-to-end suite runs against: how to make a server listen
 * on it and how a client reaches it. Adding a protocol to the suite means
 * adding an entry here, nothing else.
 */
export interface ProtocolCase {
  name: string;
  server(certs: DevCertificates): Omit<MsgTransServerOptions, 'listen'> & { listen: string };
  client(url: string, certs: DevCertificates): MsgTransClientOptions;
}

export const PROTOCOL_CASES: ProtocolCase[] = [
  {
    name: 'tcp',
    server: () => ({ listen: 'tcp://127.0.0.1:0' }),
    client: (url) => ({ url }),
  },
  {
    name: 'tls',
    server: (c) => ({ listen: 'tls://127.0.0.1:0', tls: { key: c.serverKey, cert: c.serverCert } }),
    client: (url, c) => ({ url, tls: { ca: c.ca } }),
  },
  {
    name: 'ws',
    server: () => ({ listen: 'ws://127.0.0.1:0/msgtrans' }),
    client: (url) => ({ url }),
  },
  {
    name: 'wss',
    server: (c) => ({ listen: 'wss://127.0.0.1:0/msgtrans', tls: { key: c.serverKey, cert: c.serverCert } }),
    client: (url, c) => ({ url, tls: { ca: c.ca } }),
  },
  {
    name: 'quic',
    server: (c) => ({ listen: 'quic://127.0.0.1:0', tls: { key: c.serverKey, cert: c.serverCert } }),
    client: (url, c) => ({ url, tls: { ca: c.ca } }),
  },
];
