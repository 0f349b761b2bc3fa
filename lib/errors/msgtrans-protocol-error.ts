import { MsgTransError } from './msgtrans-error.js';

/**
 * The peer broke the wire contract (malformed or oversized packet, bad
 * compression, undecodable payload). The connection it arrived on is closed;
 * no other session is affected.
 */
export class MsgTransProtocolError extends MsgTransError {}
