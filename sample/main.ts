import { join } from 'node:path';
import { loadOrCreateCertificates } from './certs.js';
import { startServer } from './server.js';

// `nest start` / `node dist/sample/main.js`: serve until stopped (Ctrl+C, SIGTERM).
const listen = (process.env.MSGTRANS_LISTEN ?? 'tcp://127.0.0.1:8001,ws://127.0.0.1:8002/msgtrans,quic://127.0.0.1:8001').split(',');
const certs = await loadOrCreateCertificates(process.env.MSGTRANS_CERT_DIR ?? join(process.cwd(), 'sample', 'certs'));
await startServer(listen, certs);
