import { MsgTransError } from './msgtrans-error.js';

/**
 * A connection could not be made, or went away (or was closed by the
 * application) while requests were waiting on it.
 */
export class MsgTransConnectionError extends MsgTransError {}
