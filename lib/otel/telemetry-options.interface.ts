/**
 * Where instrumentation reports. Without it, the providers registered
 * globally with `@opentelemetry/api` (by the OpenTelemetry SDK) are used, as
 * they stand when the server starts listening or the client is created or
 * connects; with neither, nothing is instrumented and nothing is paid.
 */
export interface MsgTransTelemetryOptions {
  /** An OpenTelemetry `TracerProvider` for this server or client. Default: the global one. */
  tracerProvider?: object;
  /** An OpenTelemetry `MeterProvider` for this server or client. Default: the global one. */
  meterProvider?: object;
  /** `false` turns tracing and metrics off for this server or client. Default `true`. */
  enabled?: boolean;
}
