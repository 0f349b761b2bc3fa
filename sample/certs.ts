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

/**
 * The sample's development certificates (for tls://, wss:// and quic://):
 * read from `dir`, or made and written there on first run. Never committed.
 */
export async function loadOrCreateCertificates(dir: string): Promise<DevCertificates> {
  try {
    const entries = await Promise.all(
      Object.entries(FILES).map(async ([key, file]) => [key, await readFile(join(dir, file), 'utf8')] as const),
    );
    return Object.fromEntries(entries) as unknown as DevCertificates;
  } catch {
    const certs = await createDevCertificates();
    await mkdir(dir, { recursive: true });
    await Promise.all(Object.entries(FILES).map(([key, file]) => writeFile(join(dir, file), certs[key as keyof DevCertificates])));
    return certs;
  }
}
