import { Controller, Logger } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { interval, map, take } from 'rxjs';
import type { MsgTransContext } from '../lib/index.js';

/** The sample's handlers: plain Nest code, nothing protocol-specific. */
@Controller()
export class MathController {
  private readonly logger = new Logger(MathController.name);
  readonly audit: string[] = [];

  @MessagePattern('echo')
  echo(@Payload() data: unknown) {
    return data;
  }

  @MessagePattern('math.sum')
  sum(@Payload() numbers: number[]) {
    if (!Array.isArray(numbers)) throw new RpcException('math.sum expects an array of numbers');
    return numbers.reduce((total, n) => total + n, 0);
  }

  /** A streamed reply: 1..to, one value every 20 ms. */
  @MessagePattern('math.count')
  count(@Payload() { to }: { to: number }) {
    return interval(20).pipe(
      take(to),
      map((i) => i + 1),
    );
  }

  /** biz_type 1: what a plain msgtrans peer calls without any route. Raw bytes in, raw bytes out. */
  @MessagePattern(1)
  ping(@Payload() data: Buffer) {
    return Buffer.concat([Buffer.from('pong: '), data]);
  }

  // <string>: Nest 12's typed-events overload would otherwise reject a second (context) parameter
  @EventPattern<string>('audit.log')
  log(@Payload() entry: string, @Ctx() ctx: MsgTransContext) {
    this.audit.push(entry);
    this.logger.log(`audit event over ${ctx.getProtocol()}: ${entry}`);
  }
}
