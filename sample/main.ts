import { startServer } from './server.js';

// `nest start` / `node dist/sample/main.js`: serve until stopped (Ctrl+C).
const listen = (process.env.MSGTRANS_LISTEN ?? 'tcp://127.0.0.1:8001').split(',');
await startServer(listen);
