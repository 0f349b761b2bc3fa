import { oneOf, positiveInteger } from '../common/resolve-options.js';

/** Options of one call or event, carried by a {@link MsgTransRecord}. */
export interface MsgTransRecordOptions {
  /**
   * Extension-header entries sent with this message; the handler reads them
   * with `ctx.getMetadata()`. Merged over what the dispatch hook set: on the
   * same key, the record wins. Default: none.
   */
  metadata?: Record<string, string>;
  /**
   * ms this call may take, overriding `requestTimeout`: it bounds the wait
   * for a connection and then the wait for each reply packet. For `emit`, it
   * bounds the wait for a connection. 0 disables. Default: `requestTimeout`.
   */
  timeout?: number;
  /**
   * A call made while handling a request inherits what is left of that
   * request's deadline when it is shorter than its own timeout
   * (`'inherit'`); `'detached'` gives it only its own timeout, for work
   * that must outlive the caller's wait. Default `'inherit'`.
   */
  deadline?: 'inherit' | 'detached';
}

/**
 * Data with per-call options, as Nest's `RmqRecord` is for RabbitMQ:
 * `client.send('orders.get', new MsgTransRecord({ id }, { metadata: { tenant: 'acme' }, timeout: 2000 }))`.
 * The handler receives `data` alone.
 */
export class MsgTransRecord<TData = any> {
  readonly options: MsgTransRecordOptions;

  constructor(
    readonly data: TData,
    options: MsgTransRecordOptions = {},
  ) {
    // checked now, so a bad timeout fails where it is written
    positiveInteger('timeout', options.timeout, 0);
    oneOf('deadline', options.deadline, ['inherit', 'detached'], 'inherit');
    this.options = options;
  }
}

/** Builds a {@link MsgTransRecord} step by step, as Nest's `RmqRecordBuilder` does. */
export class MsgTransRecordBuilder<TData = any> {
  private options: MsgTransRecordOptions = {};

  constructor(private data?: TData) {}

  setData(data: TData): this {
    this.data = data;
    return this;
  }

  setOptions(options: MsgTransRecordOptions): this {
    this.options = { ...this.options, ...options };
    return this;
  }

  setMetadata(metadata: Record<string, string>): this {
    return this.setOptions({ metadata });
  }

  setTimeout(timeout: number): this {
    return this.setOptions({ timeout });
  }

  build(): MsgTransRecord<TData> {
    return new MsgTransRecord(this.data as TData, this.options);
  }
}
