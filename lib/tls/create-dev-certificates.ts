import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransConfigError } from '../errors/msgtrans-config-error.js';
import {
  derBitString,
  derBoolean,
  derCommonName,
  derElement,
  derExplicit,
  derNamedBits,
  derOctetString,
  derOid,
  derSequence,
  derSmallInteger,
  derTime,
  derUnsignedInteger,
} from './der.js';

/** PEM material for a development CA and the certificates it signed. */
export interface DevCertificates {
  /** CA certificate: what clients (and servers requiring client certificates) trust, as `tls.ca`. */
  ca: string;
  /** Server private key (PKCS#8 PEM), for the server's `tls.key`. */
  serverKey: string;
  /** Server certificate, valid for every name in `hosts`, for the server's `tls.cert`. */
  serverCert: string;
  /** Client private key, for a client's `tls.key` under mutual TLS. */
  clientKey: string;
  /** Client certificate (subject `CN=msgtrans-client`), for a client's `tls.cert` under mutual TLS. */
  clientCert: string;
}

/** Options of {@link createDevCertificates}. */
export interface DevCertificatesOptions {
  /**
   * Host names and IP addresses the server certificate is valid for (its
   * subjectAltName; the first is also its common name). Default
   * `['localhost', '127.0.0.1', '::1']`.
   */
  hosts?: string[];
  /** Days the certificates stay valid (they start one day in the past, for clock skew). Default 30. */
  validDays?: number;
}

const DEFAULT_HOSTS = ['localhost', '127.0.0.1', '::1'];
const DEFAULT_VALID_DAYS = 30;
const DAY = 24 * 3600_000;

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

// keyUsage bit numbers (RFC 5280 4.2.1.3)
const DIGITAL_SIGNATURE = 0;
const KEY_ENCIPHERMENT = 2;
const KEY_CERT_SIGN = 5;
const CRL_SIGN = 6;

interface Issued {
  certificate: Buffer;
  privateKey: KeyObject;
  keyId: Buffer;
}

interface CertificateSpec {
  subject: string;
  issuer?: { name: string; privateKey: KeyObject; keyId: Buffer };
  ca: boolean;
  extendedKeyUsage?: string;
  hosts?: string[];
  notBefore: Date;
  notAfter: Date;
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  return derSequence(derOid(oid), ...(critical ? [derBoolean(true)] : []), derOctetString(value));
}

function subjectAltName(hosts: string[]): Buffer {
  const names = hosts.map((host) => {
    const family = isIP(host);
    if (family === 0) return derElement(0x82, Buffer.from(host, 'ascii')); // [2] dNSName
    return derElement(0x87, ipBytes(host, family)); // [7] iPAddress
  });
  return derSequence(...names);
}

function ipBytes(address: string, family: number): Buffer {
  if (family === 4) return Buffer.from(address.split('.').map(Number));
  const [head, tail = ''] = address.includes('::') ? address.split('::') : [address, undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const groups = [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill('0'), ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), i * 2));
  return out;
}

function issue(spec: CertificateSpec): Issued {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  // RFC 5280 method 1 would hash only the key bits; hashing the whole SPKI is as unique and simpler.
  const keyId = createHash('sha1').update(spki).digest();
  const issuer = spec.issuer ?? { name: spec.subject, privateKey, keyId };
  const serial = randomBytes(16);
  serial[0] &= 0x7f;
  const extensions = [
    extension(OID.basicConstraints, spec.ca, derSequence(...(spec.ca ? [derBoolean(true)] : []))),
    extension(
      OID.keyUsage,
      true,
      derNamedBits(spec.ca ? [KEY_CERT_SIGN, CRL_SIGN] : [DIGITAL_SIGNATURE, KEY_ENCIPHERMENT]),
    ),
    extension(OID.subjectKeyIdentifier, false, derOctetString(keyId)),
    extension(OID.authorityKeyIdentifier, false, derSequence(derElement(0x80, issuer.keyId))),
    ...(spec.extendedKeyUsage ? [extension(OID.extKeyUsage, false, derSequence(derOid(spec.extendedKeyUsage)))] : []),
    ...(spec.hosts ? [extension(OID.subjectAltName, false, subjectAltName(spec.hosts))] : []),
  ];
  const signatureAlgorithm = derSequence(derOid(OID.ecdsaWithSha256));
  const tbs = derSequence(
    derExplicit(0, derSmallInteger(2)), // v3
    derUnsignedInteger(serial),
    signatureAlgorithm,
    derCommonName(issuer.name),
    derSequence(derTime(spec.notBefore), derTime(spec.notAfter)),
    derCommonName(spec.subject),
    spki,
    derExplicit(3, derSequence(...extensions)),
  );
  const signature = sign('sha256', tbs, issuer.privateKey); // DER ECDSA-Sig-Value
  return { certificate: derSequence(tbs, signatureAlgorithm, derBitString(signature)), privateKey, keyId };
}

function certificatePem(der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`;
}

const keyPem = (key: KeyObject): string => key.export({ type: 'pkcs8', format: 'pem' }) as string;

/**
 * Makes a throwaway CA plus a server certificate (for `tls://`, `wss://` and
 * `quic://` endpoints) and a client certificate (for mutual TLS), ECDSA P-256,
 * using node:crypto only. Clients trust the result with `tls: { ca }`. For
 * development and tests only: the keys are never protected and nothing here is
 * fit for production.
 */
export async function createDevCertificates(options: DevCertificatesOptions = {}): Promise<DevCertificates> {
  const hosts = options.hosts ?? DEFAULT_HOSTS;
  const validDays = options.validDays ?? DEFAULT_VALID_DAYS;
  if (!Array.isArray(hosts) || hosts.length === 0 || hosts.some((host) => typeof host !== 'string' || host === '')) {
    throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, 'createDevCertificates: hosts must be a non-empty array of host names or IP addresses');
  }
  if (typeof validDays !== 'number' || !(validDays > 0)) {
    throw new MsgTransConfigError(MsgTransErrorCode.INVALID_OPTION, 'createDevCertificates: validDays must be a positive number');
  }
  const notBefore = new Date(Date.now() - DAY);
  const notAfter = new Date(Date.now() + validDays * DAY);
  const ca = issue({ subject: 'msgtrans dev CA', ca: true, notBefore, notAfter });
  const issuer = { name: 'msgtrans dev CA', privateKey: ca.privateKey, keyId: ca.keyId };
  const server = issue({
    subject: hosts[0],
    issuer,
    ca: false,
    extendedKeyUsage: OID.serverAuth,
    hosts,
    notBefore,
    notAfter,
  });
  const client = issue({
    subject: 'msgtrans-client',
    issuer,
    ca: false,
    extendedKeyUsage: OID.clientAuth,
    notBefore,
    notAfter,
  });
  return {
    ca: certificatePem(ca.certificate),
    serverKey: keyPem(server.privateKey),
    serverCert: certificatePem(server.certificate),
    clientKey: keyPem(client.privateKey),
    clientCert: certificatePem(client.certificate),
  };
}
