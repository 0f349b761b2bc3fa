import { X509Certificate, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { native, type QUICClientCrypto, type QUICServerCrypto } from '@matrixai/quic';
import type { PemInput } from '../tls-options.interface.js';

/** The library needs HMAC sign/verify on the server (retry tokens, connection ids). */
export async function serverCrypto(): Promise<QUICServerCrypto> {
  const raw = webcrypto.getRandomValues(new Uint8Array(32));
  const key = await webcrypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  return {
    key: raw.buffer,
    ops: {
      sign: (_key, data) => webcrypto.subtle.sign('HMAC', key, data),
      verify: (_key, data, sig) => webcrypto.subtle.verify('HMAC', key, sig, data),
    },
  };
}

/** Random bytes for the client side of the handshake. */
export const clientCrypto: QUICClientCrypto = {
  ops: {
    randomBytes: async (data) => {
      webcrypto.getRandomValues(new Uint8Array(data));
    },
  },
};

/** PEM option values as the library wants them. */
export function pemList(input: PemInput | PemInput[] | undefined): string[] | undefined {
  if (input === undefined) return undefined;
  return (Array.isArray(input) ? input : [input]).map((p) => (typeof p === 'string' ? p : p.toString('utf8')));
}

/**
 * Certificate verification done in Node rather than in the QUIC stack: its
 * native check matches DNS names only, so `quic://127.0.0.1` could never be
 * verified. Checks validity dates, every link of the presented chain, that
 * the chain ends at a trusted CA, and (when `host` is given) that the leaf
 * names the host (IP SAN for addresses, DNS names otherwise).
 */
export function verifyCallback(host: string | undefined) {
  let defaultRoots: X509Certificate[] | undefined;
  return async (certs: Uint8Array[], caDers: Uint8Array[]): Promise<native.CryptoError | undefined> => {
    try {
      if (certs.length === 0) return native.CryptoError.CertificateRequired;
      const chain = certs.map((der) => new X509Certificate(Buffer.from(der)));
      const now = Date.now();
      for (const cert of chain) {
        if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now) return native.CryptoError.CertificateExpired;
      }
      for (let i = 0; i + 1 < chain.length; i++) {
        if (!chain[i].checkIssued(chain[i + 1]) || !chain[i].verify(chain[i + 1].publicKey)) {
          return native.CryptoError.BadCertificate;
        }
      }
      const roots =
        caDers.length > 0
          ? caDers.map((der) => new X509Certificate(Buffer.from(der)))
          : (defaultRoots ??= rootCertificates.map((pem) => new X509Certificate(pem)));
      const top = chain[chain.length - 1];
      const anchored = roots.some(
        (root) => root.fingerprint256 === top.fingerprint256 || (top.checkIssued(root) && top.verify(root.publicKey)),
      );
      if (!anchored) return native.CryptoError.UnknownCA;
      if (host !== undefined) {
        const named = isIP(host) ? chain[0].checkIP(host) : chain[0].checkHost(host);
        if (named === undefined) return native.CryptoError.BadCertificate;
      }
      return undefined;
    } catch {
      return native.CryptoError.BadCertificate;
    }
  };
}
