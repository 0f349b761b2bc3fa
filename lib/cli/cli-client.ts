import { MsgTransClient } from '../client/msgtrans-client.js';
import type { MsgTransClientOptions } from '../interfaces/msgtrans-options.interface.js';

/**
 * A connected client for one command: `-H` metadata on everything it sends,
 * connected before the command starts so that "cannot connect" (exit 3) is
 * told apart from errors of the call itself.
 */
export async function connectClient(options: MsgTransClientOptions, metadata: Record<string, string> | undefined): Promise<MsgTransClient> {
  const client = new MsgTransClient(options);
  if (metadata) {
    client.setOnDispatchHook((packet) => {
      packet.metadata = { ...metadata, ...packet.metadata };
    });
  }
  try {
    await client.connect();
  } catch (err) {
    client.close();
    throw err;
  }
  return client;
}
