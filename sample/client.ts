import { lastValueFrom, toArray } from 'rxjs';
import { MsgTransClient } from '../lib/index.js';

/**
 * Calls every sample handler once through a MsgTransClient and prints what
 * came back, one line per call.
 */
export async function runClient(url: string, print: (line: string) => void = console.log): Promise<void> {
  const client = new MsgTransClient({ url });
  client.setOnDispatchHook((packet) => {
    packet.metadata = { 'trace-id': 'sample-trace' };
  });
  try {
    print(`echo        -> ${JSON.stringify(await lastValueFrom(client.send('echo', { hello: 'msgtrans' })))}`);
    print(`math.sum    -> ${await lastValueFrom(client.send('math.sum', [1, 2, 3, 4]))}`);
    print(`math.count  -> ${JSON.stringify(await lastValueFrom(client.send('math.count', { to: 5 }).pipe(toArray())))}`);
    const pong = await lastValueFrom(client.send<Buffer>(1, Buffer.from('raw bytes')));
    print(`biz_type 1  -> ${pong.toString()}`);
    await lastValueFrom(client.emit('audit.log', 'sample client was here'));
    print('audit.log   -> event sent');
    const error = await lastValueFrom(client.send('math.sum', 'not an array')).catch((err) => err);
    print(`error       -> ${JSON.stringify(error)}`);
  } finally {
    client.close();
  }
}
