import { MsgTransError } from './msgtrans-error.js';

/**
 * A value could not be encoded (the codec threw: a cycle, a BigInt). Only
 * that one message fails; the connection is unaffected.
 */
export class MsgTransEncodeError extends MsgTransError {}
