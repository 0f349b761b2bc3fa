/**
 * Stable error codes carried by every {@link MsgTransError}. Compare against
 * these, never against messages: the codes are part of the public API.
 */
export const MsgTransErrorCode = {
  /** Header `version` is not 1. */
  BAD_VERSION: 'ERR_MSGTRANS_BAD_VERSION',
  /** Header `compression` is not 0, 1 or 2. */
  BAD_COMPRESSION: 'ERR_MSGTRANS_BAD_COMPRESSION',
  /** Header `packet_type` is not 0, 1 or 2. */
  BAD_PACKET_TYPE: 'ERR_MSGTRANS_BAD_PACKET_TYPE',
  /** The reserved FRAGMENTED flag is set (never sent in v1). */
  FRAGMENTED: 'ERR_MSGTRANS_FRAGMENTED',
  /** A packet (or a length prefix) declares more than `maxPacketSize`. */
  PACKET_TOO_LARGE: 'ERR_MSGTRANS_PACKET_TOO_LARGE',
  /** The extension header is longer than `maxExtHeaderSize`. */
  EXT_HEADER_TOO_LARGE: 'ERR_MSGTRANS_EXT_HEADER_TOO_LARGE',
  /** A packet-per-message transport delivered a message whose length disagrees with its header. */
  BAD_LENGTH: 'ERR_MSGTRANS_BAD_LENGTH',
  /** The protocol's own framing is broken (a bad WebSocket frame, a bad QUIC length prefix). */
  BAD_FRAME: 'ERR_MSGTRANS_BAD_FRAME',
  /** A message kind msgtrans does not use, such as a WebSocket text message. */
  UNSUPPORTED_MESSAGE: 'ERR_MSGTRANS_UNSUPPORTED_MESSAGE',
  /** The extension header is not valid UTF-8 `key:value` lines. */
  BAD_EXT_HEADER: 'ERR_MSGTRANS_BAD_EXT_HEADER',
  /** A CODEC-flagged payload could not be decoded. */
  BAD_PAYLOAD: 'ERR_MSGTRANS_BAD_PAYLOAD',
  /** A compressed payload is corrupt. */
  DECOMPRESSION_FAILED: 'ERR_MSGTRANS_DECOMPRESSION_FAILED',
  /** A compressed payload inflates past `maxPacketSize`. */
  DECOMPRESSED_TOO_LARGE: 'ERR_MSGTRANS_DECOMPRESSED_TOO_LARGE',
  /** zstd was asked for but neither Node nor the `zstd-napi` binding provides it. */
  ZSTD_UNAVAILABLE: 'ERR_MSGTRANS_ZSTD_UNAVAILABLE',
  /** A packet began arriving but did not complete within `incompleteMessageTimeout`. */
  INCOMPLETE_TIMEOUT: 'ERR_MSGTRANS_INCOMPLETE_TIMEOUT',
  /** The peer does not read: bytes waited for it for `sendStallTimeout` and it took none. */
  SEND_BUFFER_FULL: 'ERR_MSGTRANS_SEND_BUFFER_FULL',
  /** A value, streamed value, error or event could not be encoded by the codec (a cycle, a BigInt). */
  ENCODE_FAILED: 'ERR_MSGTRANS_ENCODE_FAILED',
  /** A streamed reply produced more than `maxStreamBacklog` values while the connection was congested. */
  STREAM_BACKLOG_FULL: 'ERR_MSGTRANS_STREAM_BACKLOG_FULL',
  /** The peer sent nothing, not even a heartbeat, for two heartbeat intervals. */
  HEARTBEAT_TIMEOUT: 'ERR_MSGTRANS_HEARTBEAT_TIMEOUT',
  /** The peer has more than `maxInFlight` requests being answered at once. */
  TOO_MANY_IN_FLIGHT: 'ERR_MSGTRANS_TOO_MANY_IN_FLIGHT',
  /** The server already holds `maxConnections` sessions. */
  TOO_MANY_CONNECTIONS: 'ERR_MSGTRANS_TOO_MANY_CONNECTIONS',
  /** The server is shutting down and takes no new requests. */
  SHUTTING_DOWN: 'ERR_MSGTRANS_SHUTTING_DOWN',
  /** The server's `authenticate` hook refused the connection. */
  AUTH_FAILED: 'ERR_MSGTRANS_AUTH_FAILED',
  /** A peer that is not authenticated yet sent more than `maxPreAuthMessages` / `maxPreAuthBytes`. */
  PRE_AUTH_LIMIT: 'ERR_MSGTRANS_PRE_AUTH_LIMIT',
  /** Server push to a session id that is not open. */
  UNKNOWN_SESSION: 'ERR_MSGTRANS_UNKNOWN_SESSION',
  /** Metadata that cannot travel in the extension header (bad key, `route`). */
  INVALID_METADATA: 'ERR_MSGTRANS_INVALID_METADATA',
  /** The connection closed while a request was waiting for its reply. */
  CONNECTION_CLOSED: 'ERR_MSGTRANS_CONNECTION_CLOSED',
  /** The client was closed by the application while a request was pending. */
  CLIENT_CLOSED: 'ERR_MSGTRANS_CLIENT_CLOSED',
  /** Too many calls are waiting for the client to (re)connect. */
  QUEUE_FULL: 'ERR_MSGTRANS_QUEUE_FULL',
  /** The connection could not be established. */
  CONNECT_FAILED: 'ERR_MSGTRANS_CONNECT_FAILED',
  /** Something that needs a connection (`client.unwrap()`) was asked for while there is none. */
  NOT_CONNECTED: 'ERR_MSGTRANS_NOT_CONNECTED',
  /** No reply arrived within the request timeout. */
  TIMEOUT: 'ERR_MSGTRANS_TIMEOUT',
  /** The other side's handler answered with an error reply (web client: its payload is on the error). */
  REMOTE_ERROR: 'ERR_MSGTRANS_REMOTE_ERROR',
  /** An option is missing, malformed or unknown. */
  INVALID_OPTION: 'ERR_MSGTRANS_INVALID_OPTION',
  /** A QUIC endpoint in a `node:cluster` worker that would share its UDP port with other workers. */
  QUIC_CLUSTER_PORT: 'ERR_MSGTRANS_QUIC_CLUSTER_PORT',
  /** The URL names a protocol nobody registered. */
  UNKNOWN_PROTOCOL: 'ERR_MSGTRANS_UNKNOWN_PROTOCOL',
} as const;

export type MsgTransErrorCode = (typeof MsgTransErrorCode)[keyof typeof MsgTransErrorCode];
