import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

/** A key and a certificate chain (leaf first), PEM. */
export interface KeyAndChain {
  key: string;
  cert: string;
}

/**
 * Certificates a careful verifier must refuse although they chain to the
 * trusted CA, plus controls that it must accept. Test use only.
 */
export interface TrickyCertificates {
  /** The trusted CA. */
  ca: string;
  /** A proper server certificate (localhost, 127.0.0.1, ::1) issued by the CA. */
  server: KeyAndChain;
  /** A proper client certificate (clientAuth) issued by the CA. */
  client: KeyAndChain;
  /**
   * A server certificate signed by an end-entity certificate (CA:false) that
   * the CA issued; the chain sent is leaf + that end-entity certificate.
   */
  serverViaEndEntity: KeyAndChain;
  /** The same trick for a client certificate. */
  clientViaEndEntity: KeyAndChain;
  /** A server certificate for the right names whose extended key usage is clientAuth only. */
  serverClientAuthOnly: KeyAndChain;
  /** A server certificate from the CA for the name "elsewhere.example" only. */
  serverOtherName: KeyAndChain;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
x509.cryptoProvider.set(webcrypto as never);

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

async function pemKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as never));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd()}\n-----END PRIVATE KEY-----\n`;
}

interface Issuer {
  cert: x509.X509Certificate;
  keys: webcrypto.CryptoKeyPair;
}

const NAMES = [
  { type: 'dns', value: 'localhost' },
  { type: 'ip', value: '127.0.0.1' },
  { type: 'ip', value: '::1' },
] as const;

async function issue(
  issuer: Issuer,
  subject: string,
  usage: x509.ExtendedKeyUsage[],
  names: ReadonlyArray<{ type: 'dns' | 'ip'; value: string }>,
): Promise<Issuer> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: issuer.cert.subject,
    publicKey: keys.publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: ALG,
    notBefore: new Date(Date.now() - 24 * 3600_000),
    notAfter: new Date(Date.now() + 30 * 24 * 3600_000),
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex').replace(/^[89a-f]/, '1'),
    extensions: [
      new x509.BasicConstraintsExtension(false),
      // digitalSignature and keyCertSign: the end-entity "issuer" is refused for CA:false alone
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
      new x509.ExtendedKeyUsageExtension(usage),
      ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names.map((n) => ({ ...n })))] : []),
    ],
  });
  return { cert, keys };
}

async function chain(leaf: Issuer, ...rest: Issuer[]): Promise<KeyAndChain> {
  return { key: await pemKey(leaf.keys.privateKey), cert: [leaf, ...rest].map((c) => c.cert.toString('pem')).join('\n') };
}

/** Makes a fresh CA and the {@link TrickyCertificates} under it. */
export async function createTrickyCertificates(): Promise<TrickyCertificates> {
  const caKeys = await keyPair();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=msgtrans tricky test CA',
    keys: caKeys,
    signingAlgorithm: ALG,
    notBefore: new Date(Date.now() - 24 * 3600_000),
    notAfter: new Date(Date.now() + 30 * 24 * 3600_000),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const ca: Issuer = { cert: caCert, keys: caKeys };
  const { serverAuth, clientAuth } = x509.ExtendedKeyUsage;
  const endEntity = await issue(ca, 'CN=ordinary end entity', [serverAuth, clientAuth], NAMES);
  return {
    ca: caCert.toString('pem'),
    server: await chain(await issue(ca, 'CN=localhost', [serverAuth], NAMES)),
    client: await chain(await issue(ca, 'CN=good client', [clientAuth], [])),
    serverViaEndEntity: await chain(await issue(endEntity, 'CN=localhost', [serverAuth], NAMES), endEntity),
    clientViaEndEntity: await chain(await issue(endEntity, 'CN=impostor client', [clientAuth], []), endEntity),
    serverClientAuthOnly: await chain(await issue(ca, 'CN=localhost', [clientAuth], NAMES)),
    serverOtherName: await chain(await issue(ca, 'CN=elsewhere.example', [serverAuth], [{ type: 'dns', value: 'elsewhere.example' }])),
  };
}
