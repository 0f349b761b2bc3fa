import { join } from 'node:path';
import { loadOrCreateCertificates } from './certs.js';
import { runClient } from './client.js';
import { startServer } from './server.js';

// `npm start`: the server on TCP, WebSocket and QUIC at once (free ports), the
// client calling each handler over each protocol, then a clean stop.
const certs = await loadOrCreateCertificates(process.env.MSGTRANS_CERT_DIR ?? join(process.cwd(), 'sample', 'certs'));
const { app, server } = await startServer(['tcp://127.0.0.1:0', 'ws://127.0.0.1:0/msgtrans', 'quic://127.0.0.1:0'], certs);
try {
  for (const address of server.addresses()) {
    console.log(`\n--- client over ${address.url}`);
    await runClient({ url: address.url, tls: { ca: certs.ca } });
  }
} finally {
  await app.close();
}
