import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createDevCertificates, type DevCertificates } from '../lib/index.js';

const FILES: Record<keyof DevCertificates, string> = {
  ca: 'ca.pem',
  serverKey: 'server-key.pem',
  serverCert: 'server.pem',
  clientKey: 'client-key.pem',
  clientCert: 'client.pem',
};

// Certificates closer than this to expiry are replaced, so a run never starts with ones about to lapse.
const MIN_REMAINING_MS = 24 * 3600_000;

function stillValid(certs: DevCertificates): boolean {
  const until = Date.now() + MIN_REMAINING_MS;
  try {
    return [certs.ca, certs.serverCert, certs.clientCert].every((pem) => new Date(new X509Certificate(pem).validTo).getTime() > until);
  } catch {
    return false; // not a certificate
  }
}

async function readCertificates(dir: string): Promise<DevCertificates | undefined> {
  try {
    const entries = await Promise.all(
      Object.entries(FILES).map(async ([key, file]) => [key, await readFile(join(dir, file), 'utf8')] as const),
    );
    return Object.fromEntries(entries) as unknown as DevCertificates;
  } catch {
    return undefined;
  }
}

/**
 * The sample's development certificates (for tls://, wss:// and quic://):
 * read from `dir`, or made and written there on first run and whenever the
 * ones there are missing, unreadable or expire within a day. Never committed.
 */
export async function loadOrCreateCertificates(dir: string): Promise<DevCertificates> {
  const existing = await readCertificates(dir);
  if (existing && stillValid(existing)) return existing;
  const certs = await createDevCertificates();
  await mkdir(dir, { recursive: true });
  await Promise.all(Object.entries(FILES).map(([key, file]) => writeFile(join(dir, file), certs[key as keyof DevCertificates])));
  return certs;
}
