import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

/** PEM material for a development CA and certificates it signed. */
export interface DevCertificates {
  /** CA certificate: what clients trust. */
  ca: string;
  /** Server key and certificate, valid for localhost, 127.0.0.1 and ::1. */
  serverKey: string;
  serverCert: string;
  /** A client key and certificate for mutual TLS (subject CN=msgtrans-client). */
  clientKey: string;
  clientCert: string;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

// the library's types are the DOM's; Node's webcrypto is the same API
x509.cryptoProvider.set(webcrypto as any);

async function keyPair(): Promise<any> {
  return webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']);
}

async function pemKey(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trimEnd()}\n-----END PRIVATE KEY-----\n`;
}

/**
 * Makes a throwaway CA plus server and client certificates (ECDSA P-256, valid
 * one day back to 30 days ahead). For tests and the sample only: nothing here
 * is fit for production.
 */
export async function createDevCertificates(): Promise<DevCertificates> {
  const notBefore = new Date(Date.now() - 24 * 3600_000);
  const notAfter = new Date(Date.now() + 30 * 24 * 3600_000);
  const caKeys = await keyPair();
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: 'CN=msgtrans dev CA',
    keys: caKeys,
    signingAlgorithm: ALG,
    notBefore,
    notAfter,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const issue = async (subject: string, server: boolean) => {
    const keys = await keyPair();
    const cert = await x509.X509CertificateGenerator.create({
      subject,
      issuer: ca.subject,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: ALG,
      notBefore,
      notAfter,
      extensions: [
        new x509.BasicConstraintsExtension(false),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
        ...(server
          ? [
              new x509.SubjectAlternativeNameExtension([
                { type: 'dns', value: 'localhost' },
                { type: 'ip', value: '127.0.0.1' },
                { type: 'ip', value: '::1' },
              ]),
            ]
          : []),
      ],
    });
    return { key: await pemKey(keys.privateKey), cert: cert.toString('pem') };
  };
  const server = await issue('CN=localhost', true);
  const client = await issue('CN=msgtrans-client', false);
  return {
    ca: ca.toString('pem'),
    serverKey: server.key,
    serverCert: server.cert,
    clientKey: client.key,
    clientCert: client.cert,
  };
}
