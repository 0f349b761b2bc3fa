/** PEM text or its bytes. */
export type PemInput = string | Buffer;

/**
 * TLS settings for `tls://`, `wss://` and `quic://`. On a server `key` and
 * `cert` are required; on a client they are only for mutual TLS.
 */
export interface MsgTransTlsOptions {
  /** Private key (PEM). */
  key?: PemInput;
  /** Certificate chain (PEM). */
  cert?: PemInput;
  /** Trusted CA certificates (PEM). Default: Node's bundled roots. */
  ca?: PemInput | PemInput[];
  /** Server: ask clients for a certificate (mutual TLS). Default `false`. */
  requestCert?: boolean;
  /**
   * Client: verify the server certificate; server with `requestCert`: reject
   * clients without a valid one. Default `true`. Turning it off is for
   * development only.
   */
  rejectUnauthorized?: boolean;
  /** Client: name to verify the certificate against. Default: the URL host (if not an IP). */
  servername?: string;
}
