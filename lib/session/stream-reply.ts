import type { Observable, Observer, Subscription } from 'rxjs';
import { PacketFlag } from '../codec/packet.js';
import { MsgTransErrorCode } from '../errors/error-codes.js';
import { MsgTransLimitError } from '../errors/msgtrans-limit-error.js';
import { Fifo } from '../common/fifo.js';
import type { IncomingMessage } from './incoming-message.interface.js';

const EMPTY = Buffer.alloc(0);
const FINAL = 0;
const NONE = -1;

/** What a reply needs from its session. */
export interface ReplySink {
  /** True while the connection's backlog is full and packets wait in the session. */
  readonly congested: boolean;
  readonly maxStreamBacklog: number;
  /**
   * Sends one response packet (held in order while congested, unless
   * `direct`); with the ERROR flag `data` is the error. An ERROR goes
   * instead of a value that cannot be encoded or is too large; then it
   * returns false and the reply is over.
   */
  sendResponse(request: IncomingMessage, flags: number, data: unknown, direct: boolean): boolean;
  /** Calls {@link StreamReply.turnEnded} once the current turn is over. */
  holdUntilTurnEnd(reply: StreamReply): void;
  /** Takes a place at the back of the session's backlog for one waiting value (or the end) of the reply. */
  enqueueReply(reply: StreamReply): void;
  /** The reply is over: ended, failed, cancelled or its session closed. Called once. */
  replyEnded(reply: StreamReply): void;
}

/**
 * The reply to one request whose handler returned an Observable
 * (PROTOCOL.md Part B). Values go out as they are produced, flagged MORE,
 * then END; a reply of exactly one value is one plain response. Whether a
 * first value is alone is known only at the end, so it is held until the
 * stream completes or the current turn ends (all of the turn's microtasks
 * have run), never until a next value comes.
 *
 * While the connection is congested the values wait here unencoded, by
 * reference, each with a place in the session's backlog so that packets
 * leave in the order they were produced, and are encoded one at a time as
 * the connection drains; more than `maxStreamBacklog` of them fail this
 * reply alone.
 */
export class StreamReply implements Observer<unknown> {
  /** Nothing more is sent for this reply. */
  ended = false;
  // the source has completed, errored or been unsubscribed: it produces no more
  private sourceDone = false;
  private subscribing = true;
  private subscription: Subscription | null = null;
  // the reply ended while subscribe() ran, before there was a subscription to end
  private unsubscribeOnStart = false;
  private held: unknown = undefined;
  private holding = false;
  private streamed = false;
  // values waiting for the connection, unencoded; the session's backlog holds one place per value
  private queue: Fifo<unknown> | null = null;
  private terminalFlags = NONE;
  private terminalData: unknown = undefined;

  constructor(
    private readonly sink: ReplySink,
    readonly request: IncomingMessage,
    readonly done: (() => void) | undefined,
  ) {}

  /** Subscribes; false if the reply was over before subscribe returned. */
  start(stream: Observable<unknown>): boolean {
    const subscription = stream.subscribe(this);
    this.subscribing = false;
    if (this.unsubscribeOnStart) subscription.unsubscribe();
    if (this.ended) return false;
    if (!this.sourceDone) this.subscription = subscription;
    if (this.holding) this.sink.holdUntilTurnEnd(this);
    return true;
  }

  /** True if the first value is still held, waiting for the end of the turn. */
  get undecided(): boolean {
    return this.holding && !this.streamed && !this.ended;
  }

  next(value: unknown): void {
    if (this.sourceDone || this.ended) return;
    if (!this.streamed) {
      if (!this.holding) {
        this.held = value;
        this.holding = true;
        // a value emitted during subscribe: complete() may follow at once (of(x))
        if (!this.subscribing) this.sink.holdUntilTurnEnd(this);
        return;
      }
      this.releaseHeld();
      if (this.ended) return;
    }
    this.push(value);
  }

  error(err: unknown): void {
    if (this.sourceDone || this.ended) return;
    this.sourceDone = true;
    if (this.holding) this.releaseHeld();
    // the held value itself may have failed and ended the reply with its own ERROR
    if (this.ended) return;
    this.finish(PacketFlag.ERROR, err);
  }

  complete(): void {
    if (this.sourceDone || this.ended) return;
    this.sourceDone = true;
    if (this.holding && !this.streamed) {
      const value = this.held;
      this.held = undefined;
      this.holding = false;
      this.finish(FINAL, value);
      return;
    }
    this.finish(PacketFlag.END, EMPTY);
  }

  /** End of the turn: a first value still held is part of a stream. */
  turnEnded(): void {
    if (this.undecided && !this.sourceDone) this.releaseHeld();
  }

  /** The peer sent CANCEL (maybe before the reply started) or the session closed: stop, send nothing. */
  cancel(): void {
    if (this.ended) return;
    this.end();
  }

  /**
   * Called by the session when one of this reply's places in its backlog
   * comes up (one per waiting value or end, in the order they were
   * produced): sends that value or the end, directly.
   */
  drainOne(): void {
    if (this.ended) return;
    const queue = this.queue;
    if (queue !== null && queue.size > 0) {
      if (!this.sink.sendResponse(this.request, PacketFlag.MORE, queue.shift(), true)) this.end();
      return;
    }
    if (this.terminalFlags !== NONE) this.sendTerminal(true);
  }

  private releaseHeld(): void {
    const value = this.held;
    this.held = undefined;
    this.holding = false;
    this.streamed = true;
    this.push(value);
  }

  private push(value: unknown): void {
    // values of this reply wait only while the session is congested: not congested, none wait
    if (!this.sink.congested) {
      if (!this.sink.sendResponse(this.request, PacketFlag.MORE, value, false)) this.end();
      return;
    }
    const queue = (this.queue ??= new Fifo());
    if (queue.size >= this.sink.maxStreamBacklog) {
      this.queue = null;
      this.terminalFlags = NONE;
      this.sink.sendResponse(
        this.request,
        PacketFlag.ERROR,
        new MsgTransLimitError(
          MsgTransErrorCode.STREAM_BACKLOG_FULL,
          `Streamed reply produced more than ${this.sink.maxStreamBacklog} values while the connection was congested`,
        ),
        false,
      );
      this.end();
      return;
    }
    queue.push(value);
    this.sink.enqueueReply(this);
  }

  private finish(flags: number, data: unknown): void {
    this.terminalFlags = flags;
    this.terminalData = data;
    // congested: behind whatever was produced before it, values of this reply included
    if (this.sink.congested) this.sink.enqueueReply(this);
    else this.sendTerminal(false);
  }

  private sendTerminal(direct: boolean): void {
    const data = this.terminalData;
    this.terminalData = undefined;
    this.sink.sendResponse(this.request, this.terminalFlags, data, direct);
    this.terminalFlags = NONE;
    this.end();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.queue = null;
    this.held = undefined;
    if (!this.sourceDone) {
      this.sourceDone = true;
      // during subscribe there is no subscription yet: start() unsubscribes
      if (this.subscription !== null) this.subscription.unsubscribe();
      else this.unsubscribeOnStart = true;
    }
    this.subscription = null;
    this.sink.replyEnded(this);
  }
}
