/**
 * Preloaded (`--import`) into a benchmark child by bench/cost.ts: counts the
 * UDP datagrams the process sends and receives, and the bytes and time of
 * its sends, in /tmp/msgtrans-udp-<pid>.json (rewritten every 100 ms).
 */
import * as dgram from 'node:dgram';
import { renameSync, writeFileSync } from 'node:fs';

const counts = { sent: 0, received: 0, sentBytes: 0, sendNs: 0 };
type Send = (this: dgram.Socket, ...args: unknown[]) => void;
const send = dgram.Socket.prototype.send as unknown as Send;
(dgram.Socket.prototype as unknown as { send: Send }).send = function (this: dgram.Socket, ...args: unknown[]) {
  counts.sent++;
  counts.sentBytes += typeof args[2] === 'number' ? args[2] : (args[0] as Buffer).length;
  const start = process.hrtime.bigint();
  try {
    send.apply(this, args);
  } finally {
    counts.sendNs += Number(process.hrtime.bigint() - start);
  }
};
type Emit = (this: dgram.Socket, event: string | symbol, ...args: unknown[]) => boolean;
const emit = dgram.Socket.prototype.emit as Emit;
(dgram.Socket.prototype as unknown as { emit: Emit }).emit = function (this: dgram.Socket, event: string | symbol, ...args: unknown[]) {
  if (event === 'message') counts.received++;
  return emit.call(this, event, ...args);
};
const file = `/tmp/msgtrans-udp-${process.pid}.json`;
setInterval(() => {
  // written aside and renamed, so that a reader never sees half a file
  writeFileSync(`${file}.tmp`, JSON.stringify(counts));
  renameSync(`${file}.tmp`, file);
}, 100).unref();
