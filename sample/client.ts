import { firstValueFrom, lastValueFrom, take, timeout, toArray } from 'rxjs';
import { MsgTransClient, type MsgTransClientOptions } from '../lib/index.js';

interface ChatMessage {
  room: string;
  from: string;
  text: string;
}

/**
 * Calls every sample handler through MsgTransClients on one endpoint and
 * prints what came back, one line per call.
 */
export async function runClient(options: MsgTransClientOptions, print: (line: string) => void = console.log): Promise<void> {
  const client = new MsgTransClient(options);
  client.setOnDispatchHook((packet) => {
    packet.metadata = { 'trace-id': 'sample-trace' };
  });
  const alice = new MsgTransClient(options);
  const bob = new MsgTransClient(options);
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

    // Chat: bob hears what alice says in the room, pushed by the server.
    await lastValueFrom(alice.send('chat.join', { room: 'lobby', name: 'alice' }));
    const bobHears = firstValueFrom(
      bob.incoming<ChatMessage>('chat.message').pipe(
        take(2),
        toArray(),
        timeout(5000),
      ),
    );
    const joined = await lastValueFrom(bob.send('chat.join', { room: 'lobby', name: 'bob' }));
    print(`chat.join   -> bob joined ${joined.room}, ${joined.members} members`);
    const said = await lastValueFrom(alice.send('chat.say', { room: 'lobby', text: 'hi bob' }));
    print(`chat.say    -> delivered to ${said.delivered}`);
    alice.close();
    for (const message of await bobHears) print(`bob hears   -> ${message.from}: ${message.text}`);
    const left = await lastValueFrom(bob.send('chat.leave', { room: 'lobby' }));
    print(`chat.leave  -> bob left ${left.left}`);
  } finally {
    client.close();
    alice.close();
    bob.close();
  }
}
