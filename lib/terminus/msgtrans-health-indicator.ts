import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthIndicatorResult } from '@nestjs/terminus';
import { lastValueFrom } from 'rxjs';
import { MsgTransClient } from '../client/msgtrans-client.js';
import { MsgTransRecord } from '../client/msgtrans-record.js';
import { HEALTH_ROUTE, type MsgTransHealthReply } from '../health/msgtrans-health.js';
import type { MsgTransClientOptions } from '../interfaces/msgtrans-options.interface.js';
import type { MsgTransTlsOptions } from '../transport/tls-options.interface.js';

/** Which service to probe: a client already set up, or a URL to dial for each probe. */
export type MsgTransHealthTarget =
  | { client: MsgTransClient }
  | { url: string; tls?: MsgTransTlsOptions; credentials?: unknown; options?: Omit<MsgTransClientOptions, 'url' | 'tls' | 'credentials'> };

/** Options of one probe. */
export interface MsgTransHealthCheckOptions {
  /** ms the whole probe (connecting included) may take. Default 1000. */
  timeout?: number;
  /** The named check to ask about (`healthChecks` on the server); default `''`, the whole server. */
  service?: string;
}

const DEFAULT_TIMEOUT = 1000;

/**
 * Terminus health indicator for msgtrans services: one real
 * `msgtrans.health` round trip per check, `down` with the reason when the
 * service is unreachable, too slow or `NOT_SERVING`.
 *
 * ```ts
 * @Get('health') @HealthCheck()
 * check() {
 *   return this.health.check([() => this.msgtrans.isHealthy('orders', { url: 'tcp://orders:8001' }, { timeout: 800 })]);
 * }
 * ```
 */
@Injectable()
export class MsgTransHealthIndicator {
  constructor(private readonly healthIndicatorService: HealthIndicatorService) {}

  async isHealthy<const Key extends string>(
    key: Key,
    target: MsgTransHealthTarget,
    options: MsgTransHealthCheckOptions = {},
  ): Promise<HealthIndicatorResult<Key>> {
    const indicator = this.healthIndicatorService.check(key);
    const timeout = options.timeout ?? DEFAULT_TIMEOUT;
    const service = options.service ?? '';
    const own =
      'client' in target
        ? undefined
        : new MsgTransClient({
            ...target.options,
            url: target.url,
            tls: target.tls,
            credentials: target.credentials,
            reconnect: false,
            connectTimeout: timeout,
            requestTimeout: timeout,
          });
    const client = own ?? (target as { client: MsgTransClient }).client;
    const started = performance.now();
    try {
      const reply = await lastValueFrom(client.send<MsgTransHealthReply>(HEALTH_ROUTE, new MsgTransRecord({ service }, { timeout, deadline: 'detached' })));
      const responseTimeMs = Math.round(performance.now() - started);
      if (reply?.status === 'SERVING') return indicator.up({ service, responseTimeMs });
      return indicator.down({ service, reason: `${reply?.status ?? 'no status'}${reply?.reason ? `: ${reply.reason}` : ''}` });
    } catch (err) {
      return indicator.down({ service, reason: reasonOf(err) });
    } finally {
      own?.close();
    }
  }
}

function reasonOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : JSON.stringify(err);
}
