import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import type { PemInput } from '../tls-options.interface.js';

/** PEM option values (one or several) as one PEM text. */
export function pemText(input: PemInput | PemInput[] | undefined): string | undefined {
  if (input === undefined) return undefined;
  return (Array.isArray(input) ? input : [input]).map((p) => (typeof p === 'string' ? p : p.toString('utf8'))).join('\n');
}

let bundledRoots: Uint8Array | undefined;

/**
 * The CA store BoringSSL verifies the peer's chain against: the configured
 * `ca`, else Node's bundled roots (as `tls://` does). Chain building,
 * signatures, validity dates, basic constraints and key usage are all
 * BoringSSL's; nothing here parses a chain.
 */
export function trustStore(ca: PemInput | PemInput[] | undefined): Uint8Array {
  const configured = pemText(ca);
  if (configured !== undefined) return Buffer.from(configured);
  return (bundledRoots ??= Buffer.from(rootCertificates.join('\n')));
}

/**
 * Checks the name the client dialled against the leaf certificate BoringSSL
 * already validated: an IP SAN for addresses, a DNS name otherwise. Returns
 * why it does not match, or undefined when it does.
 */
export function hostMismatch(leafDer: Uint8Array | undefined, host: string): string | undefined {
  if (!leafDer) return 'the server presented no certificate';
  const leaf = new X509Certificate(leafDer);
  const ok = isIP(host) ? leaf.checkIP(host) : leaf.checkHost(host);
  if (ok !== undefined) return undefined;
  return `the server certificate is not valid for ${isIP(host) ? 'IP address' : 'host name'} "${host}" (${leaf.subjectAltName ?? leaf.subject.replace(/\n/g, ', ')})`;
}

// TLS alerts (RFC 8446 §6) carried as QUIC CRYPTO_ERROR 0x100 + alert.
const ALERT_TEXT: Record<number, string> = {
  40: 'TLS handshake failure (no common parameters)',
  42: 'bad certificate (verification failed: signature, host name or constraints)',
  43: 'unsupported certificate (not valid for this purpose: check its extended key usage and basic constraints)',
  44: 'certificate revoked',
  45: 'certificate expired or not yet valid',
  46: 'certificate unknown',
  48: 'certificate not trusted: it does not chain to the configured CA (unknown CA)',
  49: 'access denied',
  50: 'TLS decode error',
  51: 'TLS decrypt error (a signature did not verify: a CA of the same name but another key?)',
  70: 'TLS protocol version not supported',
  80: 'TLS internal error',
  109: 'TLS extension missing',
  112: 'unrecognized server name',
  116: 'a client certificate is required (mutual TLS)',
  120: 'no common application protocol (ALPN)',
};

/** A readable reason for a TLS alert, with hints for the usual mistakes. */
export function describeAlert(alert: number, local: boolean, caConfigured: boolean): string {
  let text = ALERT_TEXT[alert] ?? `TLS alert ${alert}`;
  if (alert === 48 && local && !caConfigured) text += '; no tls.ca is configured, so only the bundled public roots are trusted';
  return text;
}

