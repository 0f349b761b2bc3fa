import { runClient } from './client.js';
import { startServer } from './server.js';

// `npm start`: the server on a free port, the client calling each handler, then a clean stop.
const { app, server } = await startServer(['tcp://127.0.0.1:0']);
try {
  for (const address of server.addresses()) {
    console.log(`\n--- client over ${address.url}`);
    await runClient(address.url);
  }
} finally {
  await app.close();
}
