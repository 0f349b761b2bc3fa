import type { ReplyObserver } from '../session/msgtrans-session.js';
import type { IncomingMessage } from '../session/incoming-message.interface.js';
import type { MsgTransConnection } from '../transport/msgtrans-connection.interface.js';
import { otelApi, type OtelApi } from './otel-api.js';
import type { MsgTransTelemetryOptions } from './telemetry-options.interface.js';
import type { TrafficCounters } from './traffic-counter.js';

/** `rpc.system.name` of every span and metric point. */
export const RPC_SYSTEM = 'msgtrans';
const SCOPE = 'nestjs-msgtrans';

type Api = typeof OtelApi;
type Attributes = OtelApi.Attributes;

/** Where this side listens or dials: `server.address` / `server.port` by protocol. */
export type ServerAddressOf = (protocol: string) => { host: string; port: number } | undefined;

/**
 * `error.type` of a failure: its `code` (a msgtrans error code, or one an
 * error reply carries), an Error's class name, else `_OTHER` (an error
 * reply as Nest's filters make it, `{ status, message }`).
 */
function errorType(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  if (error instanceof Error) return error.constructor.name;
  return '_OTHER';
}

function errorMessage(error: unknown): string {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : String(error);
}

/** The transport under each msgtrans protocol (OTel `network.transport`). */
function transportOf(protocol: string): string {
  return protocol === 'quic' ? 'quic' : 'tcp';
}

/**
 * OpenTelemetry instrumentation of one server or client: spans following the
 * RPC semantic conventions, W3C trace context in the extension header, and
 * the call duration histograms. It exists only when `@opentelemetry/api` is
 * installed and an SDK (or a provider in the options) is there to report
 * to; otherwise servers and clients hold null and skip every call here.
 */
export class MsgTransTelemetry {
  private readonly serverDuration: OtelApi.Histogram | null;
  private readonly clientDuration: OtelApi.Histogram | null;
  private readonly observables: OtelApi.Observable[] = [];

  private constructor(
    readonly api: Api,
    readonly tracer: OtelApi.Tracer | null,
    private readonly meter: OtelApi.Meter | null,
    private readonly serverAddress: ServerAddressOf,
    private readonly role: 'server' | 'client',
    traffic: TrafficCounters,
    violations: () => Record<string, number>,
  ) {
    this.serverDuration = meter?.createHistogram('rpc.server.call.duration', {
      unit: 's',
      description: 'Duration of calls this side answered',
      advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] },
    }) ?? null;
    this.clientDuration = meter?.createHistogram('rpc.client.call.duration', {
      unit: 's',
      description: 'Duration of calls this side made',
      advice: { explicitBucketBoundaries: [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10] },
    }) ?? null;
    if (meter !== null) this.observeTraffic(meter, traffic, violations);
  }

  /**
   * The instrumentation for a server or client, or null when there is
   * nothing to report to: checked once here, so calls pay nothing then.
   */
  static resolve(
    options: MsgTransTelemetryOptions | undefined,
    role: 'server' | 'client',
    serverAddress: ServerAddressOf,
    traffic: TrafficCounters,
    violations: () => Record<string, number>,
  ): MsgTransTelemetry | null {
    if (options?.enabled === false) return null;
    const api = otelApi();
    if (api === null) return null;
    const tracerProvider = (options?.tracerProvider as OtelApi.TracerProvider | undefined) ?? globalTracerProvider(api);
    const meterProvider = (options?.meterProvider as OtelApi.MeterProvider | undefined) ?? globalMeterProvider(api);
    if (tracerProvider === undefined && meterProvider === undefined) return null;
    return new MsgTransTelemetry(
      api,
      tracerProvider?.getTracer(SCOPE) ?? null,
      meterProvider?.getMeter(SCOPE) ?? null,
      serverAddress,
      role,
      traffic,
      violations,
    );
  }

  /** Stops reporting the observable figures (the server or client is closed). */
  dispose(): void {
    for (const observable of this.observables.splice(0)) observable.removeCallback(this.onObserveOf.get(observable)!);
  }

  private readonly onObserveOf = new Map<OtelApi.Observable, OtelApi.ObservableCallback>();

  private observeTraffic(meter: OtelApi.Meter, traffic: TrafficCounters, violations: () => Record<string, number>): void {
    const each = (
      name: string,
      kind: 'counter' | 'updown',
      unit: string,
      description: string,
      read: (counter: ReturnType<TrafficCounters['of']>) => number,
    ) => {
      const observable =
        kind === 'counter'
          ? meter.createObservableCounter(name, { unit, description })
          : meter.createObservableUpDownCounter(name, { unit, description });
      const callback: OtelApi.ObservableCallback = (result) => {
        for (const counter of traffic.all()) {
          result.observe(read(counter), { 'rpc.system.name': RPC_SYSTEM, 'msgtrans.role': this.role, 'network.protocol.name': counter.protocol });
        }
      };
      observable.addCallback(callback);
      this.observables.push(observable);
      this.onObserveOf.set(observable, callback);
    };
    each('msgtrans.sessions', 'updown', '{session}', 'Open sessions', (c) => c.sessions);
    each('msgtrans.messages.received', 'counter', '{message}', 'Packets received', (c) => c.messagesIn);
    each('msgtrans.messages.sent', 'counter', '{message}', 'Packets sent', (c) => c.messagesOut);
    each('msgtrans.bytes.received', 'counter', 'By', 'Bytes received', (c) => c.bytesIn);
    each('msgtrans.bytes.sent', 'counter', 'By', 'Bytes sent', (c) => c.bytesOut);
    const errors = meter.createObservableCounter('msgtrans.connection.errors', {
      unit: '{connection}',
      description: 'Connections closed for a limit or protocol violation, or lost with an error, by code',
    });
    const onErrors: OtelApi.ObservableCallback = (result) => {
      for (const counter of traffic.all()) {
        for (const [code, n] of Object.entries(counter.errors)) {
          result.observe(n, { 'rpc.system.name': RPC_SYSTEM, 'msgtrans.role': this.role, 'network.protocol.name': counter.protocol, 'error.type': code });
        }
      }
    };
    errors.addCallback(onErrors);
    this.observables.push(errors);
    this.onObserveOf.set(errors, onErrors);
    const refused = meter.createObservableCounter('msgtrans.violations', {
      unit: '{violation}',
      description: 'Limit and protocol violations, by code',
    });
    const onRefused: OtelApi.ObservableCallback = (result) => {
      for (const [code, n] of Object.entries(violations())) result.observe(n, { 'rpc.system.name': RPC_SYSTEM, 'msgtrans.role': this.role, 'error.type': code });
    };
    refused.addCallback(onRefused);
    this.observables.push(refused);
    this.onObserveOf.set(refused, onRefused);
  }

  /** The OTel context active now (the parent of a call made from here). */
  active(): OtelApi.Context {
    return this.api.context.active();
  }

  private attributes(connection: MsgTransConnection, method: string): Attributes {
    const attributes: Attributes = {
      'rpc.system.name': RPC_SYSTEM,
      'rpc.method': method,
      'network.transport': transportOf(connection.protocol),
      'network.protocol.name': connection.protocol,
    };
    const server = this.serverAddress(connection.protocol);
    if (server !== undefined) {
      attributes['server.address'] = server.host;
      attributes['server.port'] = server.port;
    }
    if (connection.remoteAddress !== undefined) attributes['network.peer.address'] = connection.remoteAddress;
    if (connection.remotePort !== undefined) attributes['network.peer.port'] = connection.remotePort;
    return attributes;
  }

  /**
   * A request this side sends: a CLIENT span (child of `parent`, default
   * the active context) whose context travels in the returned metadata, and
   * an observer that ends it and records the duration.
   */
  outgoingRequest(
    connection: MsgTransConnection,
    method: string,
    metadata: Record<string, string> | undefined,
    observer: ReplyObserver,
    parent: OtelApi.Context = this.api.context.active(),
  ): OutgoingCall {
    const api = this.api;
    const attributes = this.attributes(connection, method);
    let span: OtelApi.Span | undefined;
    let carrier = metadata;
    if (this.tracer !== null) {
      span = this.tracer.startSpan(method, { kind: api.SpanKind.CLIENT, attributes }, parent);
      carrier = { ...metadata };
      api.propagation.inject(api.trace.setSpan(parent, span), carrier);
    }
    return new OutgoingCall(observer, carrier, span, this.clientDuration, attributes, api);
  }

  /** An event this side sends: a PRODUCER span, ended once handed over; returns the metadata to send. */
  outgoingEvent(connection: MsgTransConnection, method: string, metadata: Record<string, string> | undefined): Record<string, string> | undefined {
    if (this.tracer === null) return metadata;
    const api = this.api;
    const parent = api.context.active();
    const span = this.tracer.startSpan(method, { kind: api.SpanKind.PRODUCER, attributes: this.attributes(connection, method) }, parent);
    const carrier = { ...metadata };
    api.propagation.inject(api.trace.setSpan(parent, span), carrier);
    span.end();
    return carrier;
  }

  /**
   * A request (SERVER span) or event (CONSUMER span) this side handles, as
   * a child of the caller's span when the message carries trace context.
   */
  incoming(connection: MsgTransConnection, message: IncomingMessage, event: boolean): IncomingCall {
    const api = this.api;
    const parent = message.metadata === undefined ? api.ROOT_CONTEXT : api.propagation.extract(api.ROOT_CONTEXT, message.metadata);
    const attributes = this.attributes(connection, message.route);
    const span =
      this.tracer?.startSpan(message.route, { kind: event ? api.SpanKind.CONSUMER : api.SpanKind.SERVER, attributes }, parent) ??
      api.trace.wrapSpanContext(api.INVALID_SPAN_CONTEXT);
    const context = this.tracer === null ? parent : api.trace.setSpan(parent, span);
    return new IncomingCall(span, context, event ? null : this.serverDuration, attributes, api, this.tracer !== null);
  }
}

/** Where a traced reply ends: the span, the duration histogram, then the caller's observer. */
export class OutgoingCall implements ReplyObserver {
  private readonly startedAt = performance.now();
  private ended = false;

  constructor(
    private readonly observer: ReplyObserver,
    readonly metadata: Record<string, string> | undefined,
    private readonly span: OtelApi.Span | undefined,
    private readonly duration: OtelApi.Histogram | null,
    private readonly attributes: Attributes,
    private readonly api: Api,
  ) {}

  next(value: unknown): void {
    this.observer.next(value);
  }

  error(error: unknown): void {
    this.finish(error, 'ERROR');
    this.observer.error(error);
  }

  complete(): void {
    this.finish(undefined, 'OK');
    this.observer.complete();
  }

  /** The caller gave up (CANCEL sent): the span ends without an error. */
  cancelled(): void {
    this.finish(undefined, 'CANCELLED');
  }

  private finish(error: unknown, status: string): void {
    if (this.ended) return;
    this.ended = true;
    endCall(this.api, this.span, this.duration, this.attributes, this.startedAt, error, status);
  }
}

/** A message this side handles: the span handlers run under, ended with the reply. */
export class IncomingCall {
  private readonly startedAt = performance.now();
  private ended = false;
  private failure: unknown = undefined;
  private failed = false;

  constructor(
    private readonly span: OtelApi.Span,
    readonly context: OtelApi.Context,
    private readonly duration: OtelApi.Histogram | null,
    private readonly attributes: Attributes,
    private readonly api: Api,
    private readonly traced: boolean,
  ) {}

  /** Runs `fn` with this call's span active, so the handler's spans and calls are its children. */
  run<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): R {
    return this.api.context.with(this.context, fn, undefined, ...args);
  }

  /** The handler failed (the reply is an error). */
  fail(error: unknown): void {
    this.failure = error;
    this.failed = true;
  }

  /** The reply ended (or was cancelled, or the session closed). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    endCall(this.api, this.traced ? this.span : undefined, this.duration, this.attributes, this.startedAt, this.failure, this.failed ? 'ERROR' : 'OK');
  }

  readonly onError = (error: unknown): void => this.fail(error);
  readonly onEnd = (): void => this.end();
}

function endCall(
  api: Api,
  span: OtelApi.Span | undefined,
  duration: OtelApi.Histogram | null,
  attributes: Attributes,
  startedAt: number,
  error: unknown,
  status: string,
): void {
  const failed = status === 'ERROR';
  if (span !== undefined) {
    if (failed) {
      const type = errorType(error);
      span.setAttribute('error.type', type);
      span.setAttribute('rpc.response.status_code', type);
      span.setStatus({ code: api.SpanStatusCode.ERROR, message: errorMessage(error) });
      if (error instanceof Error) span.recordException(error);
    } else {
      span.setAttribute('rpc.response.status_code', status);
    }
    span.end();
  }
  if (duration !== null) {
    const point: Attributes = {
      'rpc.system.name': RPC_SYSTEM,
      'rpc.method': attributes['rpc.method'],
      'rpc.response.status_code': failed ? errorType(error) : status,
    };
    if (failed) point['error.type'] = errorType(error);
    if (attributes['server.address'] !== undefined) point['server.address'] = attributes['server.address'];
    if (attributes['server.port'] !== undefined) point['server.port'] = attributes['server.port'];
    duration.record((performance.now() - startedAt) / 1000, point);
  }
}

function globalTracerProvider(api: Api): OtelApi.TracerProvider | undefined {
  const provider = api.trace.getTracerProvider() as OtelApi.ProxyTracerProvider;
  const delegate = typeof provider.getDelegate === 'function' ? provider.getDelegate() : provider;
  // a fresh proxy's delegate is the API's no-op provider: none registered means the same object
  return delegate === new api.ProxyTracerProvider().getDelegate() ? undefined : provider;
}

function globalMeterProvider(api: Api): OtelApi.MeterProvider | undefined {
  const provider = api.metrics.getMeterProvider();
  return provider.getMeter(SCOPE).constructor === api.createNoopMeter().constructor ? undefined : provider;
}
