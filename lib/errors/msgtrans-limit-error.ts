import { MsgTransError } from './msgtrans-error.js';

/**
 * A peer went past one of the configured limits (connections, requests in
 * flight, unsent bytes, a stalled partial packet). Only that connection is
 * closed.
 */
export class MsgTransLimitError extends MsgTransError {}
