const CONNECTION = `Connection flags:
  -H, --header key:value   metadata for every message sent (repeatable)
  --timeout ms             for connecting and for each reply (default 10000)
  --ca file                CA certificate(s) to trust (PEM) for tls://, wss://, quic://
  --cert file --key file   client certificate and key (mutual TLS)
  --servername name        name to verify the server certificate against
  --insecure               do not verify the server certificate (development only)
  --credentials json       credentials for the server's authenticate hook
  -h, --help               this help`;

const EXIT = `Exit status: 0 ok, 1 error reply from the service, 2 usage, 3 cannot connect, 4 timeout.`;

const URLS = `<url> is tcp://host:port, tls://host:port, ws://host:port/path, wss://host:port/path or quic://host:port.`;

export const USAGE: Readonly<Record<string, string>> = {
  main: `Usage: msgtrans <command> [flags]

Commands:
  call <url> <pattern> [json-data]     send a request, print the reply (one line per streamed value)
  emit <url> <pattern> [json-data]     send an event
  listen <url> <pattern>...            print events the server pushes, until interrupted
  bench <url> <pattern> [json-data]    measure request throughput and latency
  health <url>                         ask the service's msgtrans.health status

Run msgtrans <command> --help for its flags.
${URLS}
${EXIT}
`,
  call: `Usage: msgtrans call <url> <pattern> [json-data] [flags]
       msgtrans call <url> --biz-type n [data] [flags]

Sends a request and prints the reply as JSON (bytes as hex), each value of a
streamed reply on its own line. json-data defaults to {}.

  --raw              data is bytes: hex, or @file; sent without the JSON codec
  --biz-type n       address a handler by biz_type 0-255 (plain msgtrans peers) instead of a pattern

${CONNECTION}

${URLS}
${EXIT}
`,
  emit: `Usage: msgtrans emit <url> <pattern> [json-data] [flags]
       msgtrans emit <url> --biz-type n [data] [flags]

Sends an event and returns once the server has received it (a round trip
follows it on the same connection). json-data defaults to {}.

  --raw              data is bytes: hex, or @file
  --biz-type n       address a handler by biz_type 0-255

${CONNECTION}

${EXIT}
`,
  listen: `Usage: msgtrans listen <url> <pattern>... [flags]

Connects and prints every event the server pushes to this connection with one
of the patterns (broadcasts, or emitTo this session) as a JSON line
{"pattern":…,"data":…,"metadata":…} until interrupted (Ctrl-C: exit 0).
Exits 3 if the connection is lost.

${CONNECTION}

${EXIT}
`,
  bench: `Usage: msgtrans bench <url> <pattern> [json-data] [flags]

Sends requests back to back from --concurrency callers for --duration seconds
and prints requests per second and latency percentiles.

  --concurrency n    requests in flight at once (default 10)
  --duration s       seconds to run (default 5)
  --json             print the result as JSON
  --raw, --biz-type  as for call

${CONNECTION}

Exit status 1 if any request failed.
`,
  health: `Usage: msgtrans health <url> [flags]

Connects (presenting --credentials when given) and makes one msgtrans.health
round trip, which every msgtrans server answers. Prints
{"status":"SERVING","url":…,"service":"","connectMs":…,"roundTripMs":…};
exit status 1 unless the status is SERVING (NOT_SERVING while the server
drains on shutdown, SERVICE_UNKNOWN for a --service it has no check for).

  --service name     a named check of the server (default: the whole server)

${CONNECTION}

${EXIT}
`,
};
