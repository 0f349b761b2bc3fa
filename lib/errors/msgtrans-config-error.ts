import { MsgTransError } from './msgtrans-error.js';

/** Options that cannot work, reported when the server or client is created. */
export class MsgTransConfigError extends MsgTransError {}
