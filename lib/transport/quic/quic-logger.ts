import { Logger as NestLogger } from '@nestjs/common';
import MatrixLogger, { Handler, LogLevel, type LogRecord } from '@matrixai/logger';

/** Sends the QUIC library's records to Nest's logger. */
class NestHandler extends Handler {
  constructor(private readonly nest: NestLogger) {
    super();
  }

  override handle(record: LogRecord): void {
    const message = `${record.keys}: ${record.msg ?? ''}`;
    if (record.level >= LogLevel.ERROR) this.nest.error(message);
    else if (record.level >= LogLevel.WARN) this.nest.warn(message);
    else this.nest.debug(message);
  }

  emit(): void {}
}

/**
 * A logger for the QUIC library that reports through Nest's logger. The
 * library is chatty at INFO (every socket start and stop), so only WARN and
 * above are passed on; records below the level are never even built.
 */
export function quicLogger(context: string, level: LogLevel = LogLevel.WARN): MatrixLogger {
  return new MatrixLogger('quic', level, [new NestHandler(new NestLogger(context))]);
}
