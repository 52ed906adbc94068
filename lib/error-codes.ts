/**
 * Every error code ferry produces, with the HTTP status it carries and what it means, in the
 * manner of Fastify's `lib/errors.js`. Clients, logs and the migration log match on `code`,
 * never on message text, so a code once published keeps its name and status.
 *
 * `FerryError` and `sendError` take only codes listed here (the compiler refuses any other), the
 * README's error table lists them all, and test/lib/error-codes.test.ts checks both ways: every
 * code here is in the README, every `FERRY_…` literal in the source is here.
 *
 * For codes that never reach an HTTP client (the CLI, the migration log, a library's refusal of
 * its options) the status says which class of failure it is: 4xx the input, 5xx ferry or a peer.
 */
export interface ErrorCodeInfo {
  readonly status: number
  /** One line: what happened, for the README's table. */
  readonly meaning: string
}

export const FERRY_ERRORS = {
  // The proxy's data plane (proxy/): what a client of the block API sees.
  FERRY_BAD_PATH: { status: 400, meaning: 'the path is not /{volume}/{block} (proxy.pathPattern) with valid ids' },
  FERRY_UNEXPECTED_BODY: { status: 400, meaning: 'a GET, HEAD or DELETE carried a body' },
  FERRY_ACCESS_DENIED: { status: 403, meaning: 'an unsigned request for a volume not open to anonymous clients (s3.anonymous); S3 requests get S3\'s XML errors instead (proxy/s3/README.md)' },
  FERRY_BAD_REQUEST: { status: 400, meaning: 'not valid HTTP (proxy), or an admin body or query parameter that does not validate' },
  FERRY_UPGRADE_NOT_SUPPORTED: { status: 400, meaning: 'a protocol upgrade (WebSocket, h2c) was asked for' },
  FERRY_METHOD_NOT_ALLOWED: { status: 405, meaning: 'a method the endpoint does not serve (CONNECT, POST on a block, …); `Allow` lists the others' },
  FERRY_REQUEST_TIMEOUT: { status: 408, meaning: 'the request headers or body did not arrive in time' },
  FERRY_BODY_TOO_LARGE: { status: 413, meaning: 'a body over proxy.maxBodyBytes (or the admin listener\'s limit)' },
  FERRY_HEADERS_TOO_LARGE: { status: 431, meaning: 'request headers over 16 KiB' },
  FERRY_INTERNAL: { status: 500, meaning: 'a bug in ferry; the log has the stack' },
  FERRY_GATEWAY_ERROR: { status: 502, meaning: 'the gateway could not be reached, or failed, on every attempt' },
  FERRY_NO_GATEWAY: { status: 503, meaning: 'no healthy gateway to route the block to' },
  FERRY_WRITE_NOT_CONFIRMED: { status: 503, meaning: 'the write outlived a move of its block and its grace period: the gateways that stored it have left the block\'s set, so it is not acknowledged; retry (`Retry-After`)' },
  FERRY_REPLICAS_UNAVAILABLE: { status: 503, meaning: 'fewer than replication.minInSync in-sync members of the block\'s replica set stored the write (or could be recorded as having left the set): not acknowledged; retry (`Retry-After`)' },
  FERRY_LOCATIONS_REBUILDING: { status: 503, meaning: 'the store lost its block locations and they are being rebuilt from the gateways; retry' },
  FERRY_LOCATIONS_UNCONFIRMED: { status: 503, meaning: 'the proxy has been out of touch with the store for longer than state.cutOffServeMs and no longer serves from its location cache (the store may have lost and rebuilt them meanwhile); retry' },
  FERRY_LOCATIONS_NOT_LOADED: { status: 503, meaning: 'the proxy started while the store did not answer and has not loaded block locations yet; a read of a block it has no location for is retried' },
  FERRY_GATEWAY_TLS: { status: 502, meaning: 'the TLS handshake with an https gateway failed: its certificate did not verify (not signed by gateways[].tls.ca, expired, not for its name) or the handshake was refused; the message names the gateway and the TLS error code' },
  FERRY_GATEWAY_TIMEOUT: { status: 504, meaning: 'the gateway sent no response headers within proxy.upstreamHeadersTimeoutMs' },

  // The admin listener (admin/).
  FERRY_BAD_JSON: { status: 400, meaning: 'an admin request body that is not JSON' },
  FERRY_UNAUTHORIZED: { status: 401, meaning: 'a mutating admin call without the bearer token (or admin.token unset)' },
  FERRY_NOT_FOUND: { status: 404, meaning: 'no such admin endpoint, or nothing recorded for the block or volume asked about' },
  FERRY_STARTING: { status: 503, meaning: 'the process is starting and has not registered that endpoint yet (its roles are still being set up); retry (`Retry-After`)' },

  // The planner's operator API (planner/): refusals of a request.
  FERRY_PLANNER_BAD_REQUEST: { status: 400, meaning: 'a migration or drain request body or parameter that does not validate' },
  FERRY_UNKNOWN_GATEWAY: { status: 404, meaning: 'a gateway id that is not configured' },
  FERRY_BLOCK_NOT_FOUND: { status: 404, meaning: 'a block with no location that no gateway holds, or a volume with no known block' },
  FERRY_MIGRATION_NOT_FOUND: { status: 404, meaning: 'no such migration id (or it was trimmed from the log)' },
  FERRY_NOT_DRAINING: { status: 404, meaning: 'the gateway has no drain to show or end' },
  FERRY_BLOCK_BUSY: { status: 409, meaning: 'the block is already being moved' },
  FERRY_MIGRATION_NOOP: { status: 409, meaning: 'the block already lives on the requested gateway' },
  FERRY_TARGET_UNAVAILABLE: { status: 409, meaning: 'the requested target is down, draining or full' },
  FERRY_NO_TARGET: { status: 409, meaning: 'no healthy gateway with room is left to move the block to' },
  FERRY_MIGRATION_NOT_CANCELLABLE: { status: 409, meaning: 'the migration already flipped or ended, or runs on another planner' },
  FERRY_PLANNER_NOT_LEADER: { status: 503, meaning: 'this planner is on standby; `details.leader` names the one acting' },
  FERRY_MIGRATION_QUEUE_FULL: { status: 503, meaning: 'planner.migration.maxQueued migrations are already waiting' },

  // Why a migration ended without moving the block (the migration log's `error`, `CODE: message`).
  FERRY_COPY_SOURCE_FAILED: { status: 502, meaning: 'the source gateway failed the copy\'s GET (or a check of what it holds)' },
  FERRY_COPY_TARGET_FAILED: { status: 502, meaning: 'the target gateway failed the copy\'s PUT, or a clean-up DELETE' },
  FERRY_COPY_VERIFY_FAILED: { status: 502, meaning: 'the copy is not provably the source\'s bytes (ETag, digest or read-back did not match)' },
  FERRY_COPY_TIMEOUT: { status: 504, meaning: 'the copy did not finish within planner.migration.copyTimeoutMs' },
  FERRY_SOURCE_MISSING: { status: 409, meaning: 'the source no longer holds the block (a client deleted it)' },
  FERRY_CUTOVER_TIMEOUT: { status: 503, meaning: 'the target did not come to hold the source\'s bytes (or the checks were too slow) within planner.migration.copyTimeoutMs' },
  FERRY_LOCATION_CHANGED: { status: 409, meaning: 'someone else changed the block\'s location meanwhile' },
  FERRY_INTERRUPTED: { status: 503, meaning: 'the operator cancelled it, or the planner stopped or restarted mid-migration' },

  // Gateway inventories (upstream/).
  FERRY_INVENTORY_FAILED: { status: 502, meaning: 'a gateway\'s blocks cannot be listed (unreachable, error, listing not enabled)' },

  // Agents' telemetry (POST /v1/telemetry).
  FERRY_TELEMETRY_INVALID: { status: 400, meaning: 'a telemetry batch that does not validate' },
  FERRY_TELEMETRY_UNKNOWN_GATEWAY: { status: 404, meaning: 'telemetry for a gateway that is not in the planner\'s config' },
  FERRY_TELEMETRY_TOO_LARGE: { status: 413, meaning: 'a telemetry batch with more samples than allowed' },

  // The predicted-health endpoints (GET /v1/health…).
  FERRY_HEALTH_BAD_QUERY: { status: 400, meaning: 'a /v1/health query parameter that does not validate' },
  FERRY_HEALTH_UNKNOWN_GATEWAY: { status: 404, meaning: '/v1/health/{gateway} of a gateway that is not configured' },

  // The shared store (state/).
  FERRY_STATE_INVALID: { status: 400, meaning: 'an id, channel or value refused before reaching the backend' },
  FERRY_STATE_CONFLICT: { status: 409, meaning: 'an append of a record whose id already exists' },
  FERRY_STATE_TOO_LARGE: { status: 413, meaning: 'a session state or published message over its bound' },
  FERRY_STATE_CORRUPT: { status: 500, meaning: 'a stored value that does not decode (written by something else)' },
  FERRY_STATE_ERROR: { status: 500, meaning: 'the backend reported an error that is not transient, or its config is unusable' },
  FERRY_STATE_UNAVAILABLE: { status: 503, meaning: 'the backend cannot be reached or did not answer in time; a write\'s outcome is unknown' },
  FERRY_STATE_CLOSED: { status: 503, meaning: 'the store was closed' },

  // Configuration (config/).
  FERRY_CONFIG_INVALID: { status: 400, meaning: 'the config file does not validate; every problem is listed as file:line:col: key.path' },
  FERRY_CONFIG_UNREADABLE: { status: 400, meaning: 'the config file cannot be read' },
  FERRY_TLS_INVALID: { status: 400, meaning: 'a listener\'s TLS certificate or key, or a gateway\'s CA or client certificate, cannot be read, is expired or not yet valid, or the key does not match' },

  // The authoritative DNS server (dns/): why a query was answered FORMERR (logged), or the server could not start.
  FERRY_DNS_TRUNCATED: { status: 400, meaning: 'a DNS message that ends inside a name, question or record' },
  FERRY_DNS_BAD_LABEL: { status: 400, meaning: 'a DNS name with a reserved label type' },
  FERRY_DNS_NAME_TOO_LONG: { status: 400, meaning: 'a DNS name longer than 255 octets' },
  FERRY_DNS_BAD_POINTER: { status: 400, meaning: 'a DNS compression pointer that does not point backwards' },
  FERRY_DNS_QDCOUNT: { status: 400, meaning: 'a DNS query without exactly one question' },
  FERRY_DNS_BAD_OPT: { status: 400, meaning: 'a malformed EDNS OPT record or option' },
  FERRY_DNS_MULTIPLE_OPT: { status: 400, meaning: 'more than one EDNS OPT record' },
  FERRY_DNS_BAD_ECS: { status: 400, meaning: 'a malformed EDNS client subnet option' },
  FERRY_DNS_TRAILING_DATA: { status: 400, meaning: 'bytes after the last record of a DNS message' },
  FERRY_DNS_LISTEN: { status: 500, meaning: 'a DNS listener could not bind its address' },
  FERRY_DNS_STATE: { status: 500, meaning: 'the DNS server was started twice' },

  // The telemetry agent (agent/).
  FERRY_AGENT_USAGE: { status: 400, meaning: '`ferry agent` was given bad arguments' },
  FERRY_AGENT_INVALID: { status: 400, meaning: 'an agent option out of range' },
  FERRY_AGENT_STOPPED: { status: 409, meaning: 'the agent was stopped; create a new one' },

  // The health model (planner/health/): `ferry train`, `ferry evaluate`, model files, scenarios.
  FERRY_HEALTH_BAD_OPTIONS: { status: 400, meaning: 'a health model training option out of range' },
  FERRY_HEALTH_BAD_TELEMETRY: { status: 400, meaning: 'telemetry (CSV or samples) that cannot be trained on' },
  FERRY_HEALTH_NO_DATA: { status: 400, meaning: 'no telemetry, or no signal values, to train on' },
  FERRY_HEALTH_TELEMETRY_UNREADABLE: { status: 400, meaning: 'a telemetry CSV file cannot be read' },
  FERRY_HEALTH_MODEL_UNREADABLE: { status: 400, meaning: 'a health model file cannot be read' },
  FERRY_HEALTH_MODEL_CORRUPT: { status: 400, meaning: 'a health model file that is not valid JSON or does not validate' },
  FERRY_HEALTH_MODEL_FORMAT: { status: 400, meaning: 'a file that is not a ferry health model' },
  FERRY_HEALTH_MODEL_VERSION: { status: 400, meaning: 'a health model of a version this ferry does not read' },
  FERRY_TRIGGER_BAD_OPTIONS: { status: 400, meaning: 'an evacuation trigger option out of range' },
  FERRY_SCENARIO_INVALID: { status: 400, meaning: 'a scenario file that is not JSON, or not a scenario (the message names the field)' },
  FERRY_SCENARIO_BAD_VERSION: { status: 400, meaning: 'a health scenario of a version this ferry does not read' },
  FERRY_SCENARIO_BAD_KIND: { status: 400, meaning: 'an unknown health scenario kind' },
  FERRY_SCENARIO_BAD_OPTIONS: { status: 400, meaning: 'a scenario option out of range (interval, speed, end)' },
  FERRY_SCENARIO_UNREADABLE: { status: 400, meaning: 'a scenario file cannot be read' },
  FERRY_SCENARIO_FAULTS_REFUSED: { status: 502, meaning: 'a gateway refused a scenario\'s faults' },
  FERRY_SCENARIO_TELEMETRY_REFUSED: { status: 502, meaning: 'the planner refused a scenario\'s simulated telemetry' },
  FERRY_NAB_NOT_FOUND: { status: 500, meaning: 'the NAB benchmark data is not where FERRY_NAB_DIR points' },
  FERRY_NAB_UNREADABLE: { status: 500, meaning: 'a NAB file cannot be read' },
  FERRY_NAB_BAD_CSV: { status: 500, meaning: 'a NAB CSV without the expected header, numbers or totals' },
  FERRY_NAB_BAD_PROFILE: { status: 500, meaning: 'an unknown NAB profile, or one without a cost matrix' },
  FERRY_NAB_WINDOW_MISALIGNED: { status: 500, meaning: 'a NAB anomaly window that does not fall on rows' },
  FERRY_NAB_RESULTS_MISSING: { status: 500, meaning: 'no NAB results for a data file' },
  FERRY_NAB_RESULTS_LENGTH: { status: 500, meaning: 'NAB results with another number of rows than their data' },

  // The access profiler and affinity scoring (planner/).
  FERRY_PROFILE_BAD_OPTIONS: { status: 400, meaning: 'an access profiler option out of range' },
  FERRY_PROFILE_BAD_SNAPSHOT: { status: 400, meaning: 'a profiler snapshot that does not validate or was taken with other settings' },
  FERRY_AFFINITY_BAD_INPUT: { status: 400, meaning: 'a latency, penalty or subset given to affinity scoring out of range' },

  // The partitioning engine (planner/partition/): `ferry train-placement` and placement models.
  FERRY_PLACEMENT_BAD_OPTIONS: { status: 400, meaning: 'a partitioning option out of range' },
  FERRY_PLACEMENT_BAD_META: { status: 400, meaning: 'a block metadata line that is not JSON or lacks volume and block' },
  FERRY_PLACEMENT_BAD_MODEL: { status: 400, meaning: 'a placement model file that does not validate' },
  FERRY_PLACEMENT_BAD_SITES: { status: 400, meaning: 'site rules that cannot be read or do not validate' },
  FERRY_PLACEMENT_TRACE_UNREADABLE: { status: 400, meaning: 'a trace or access log that cannot be read or lacks its columns' },
  FERRY_PLACEMENT_EMBEDDER_MISMATCH: { status: 400, meaning: 'a placement model trained with another embedder than the one given' },
  FERRY_PLACEMENT_EMBEDDER_FAILED: { status: 500, meaning: 'an embedder returned no vector, or one of another length than its dimension' },
  FERRY_PLACEMENT_EMBEDDER_UNAVAILABLE: { status: 500, meaning: 'the transformer embedder or its model cannot be loaded' },
  FERRY_PLACEMENT_STORE_UNAVAILABLE: { status: 503, meaning: 'the state store of the config given is not reachable' },
  FERRY_PLACEMENT_MODEL_UNREADABLE: { status: 400, meaning: 'a placement model file that cannot be read' },
  FERRY_METADATA_TOO_LARGE: { status: 400, meaning: 'a PUT whose metadata headers (placement.metadataHeaders) exceed placement.maxMetadataBytes' },
  FERRY_BAD_METADATA: { status: 400, meaning: 'a PUT with a metadata header value that is not UTF-8 text' }
} as const satisfies Record<`FERRY_${string}`, ErrorCodeInfo>

/**
 * The reference gateway's own codes (gateway/). They are its wire protocol, which tests and
 * clients of the gateway match on, so they keep their names: the gateway stands in for a
 * third-party gateway, whose codes ferry does not choose either. ferry relays a gateway's answers
 * as they are.
 */
export const GATEWAY_ERRORS = {
  BAD_REQUEST: { status: 400, meaning: 'not valid HTTP' },
  INVALID_PATH: { status: 400, meaning: 'the path is not /{volume}/{block}' },
  INVALID_VOLUME_ID: { status: 400, meaning: 'a volume id that is not 1-128 of [A-Za-z0-9._-], not starting with "."' },
  INVALID_BLOCK_ID: { status: 400, meaning: 'a block id that is not 1-128 of [A-Za-z0-9._-], not starting with "."' },
  INVALID_JSON: { status: 400, meaning: 'an admin body that is not JSON' },
  INVALID_QUERY: { status: 400, meaning: 'a listing query parameter that does not validate' },
  INVALID_HEADER: { status: 400, meaning: 'an x-ferry-written-at header that is not ms since the epoch, or a Content-Digest or Content-MD5 that is not a digest' },
  DIGEST_MISMATCH: { status: 400, meaning: 'the body does not have the Content-Digest (sha-256) or Content-MD5 its PUT declared; nothing was stored (`x-ferry-digest-mismatch` names the algorithm)' },
  INVALID_FAULTS: { status: 400, meaning: 'a fault set that does not validate' },
  INVALID_ARGUMENT: { status: 400, meaning: '`ferry gateway` was given bad arguments' },
  UNAUTHORIZED: { status: 401, meaning: 'a change of faults without the bearer token' },
  NOT_FOUND: { status: 404, meaning: 'no such endpoint' },
  BLOCK_NOT_FOUND: { status: 404, meaning: 'no such block' },
  METHOD_NOT_ALLOWED: { status: 405, meaning: 'a method the endpoint does not serve; `Allow` lists the others' },
  REQUEST_TIMEOUT: { status: 408, meaning: 'the request did not arrive in time' },
  PRECONDITION_FAILED: { status: 412, meaning: 'If-Match or If-None-Match did not hold' },
  PAYLOAD_TOO_LARGE: { status: 413, meaning: 'a block or admin body over the limit' },
  HEADERS_TOO_LARGE: { status: 431, meaning: 'request headers too large' },
  INTERNAL: { status: 500, meaning: 'a bug in the gateway' },
  BLOCK_TRUNCATED: { status: 500, meaning: 'a block file shorter than its recorded size' },
  INVALID_OPTION: { status: 500, meaning: 'a gateway started with a bad option' },
  GATEWAY_RUNNING: { status: 500, meaning: 'the gateway was started twice' },
  GATEWAY_NOT_STARTED: { status: 500, meaning: 'the gateway\'s address was asked for before it started' },
  FAULT_INJECTED: { status: 503, meaning: 'an error injected by the fault errorRate' },
  GATEWAY_STOPPED: { status: 503, meaning: 'the gateway stopped before a write or delete was committed' }
} as const satisfies Record<string, ErrorCodeInfo>

export type FerryErrorCode = keyof typeof FERRY_ERRORS
export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS
export type ErrorCode = FerryErrorCode | GatewayErrorCode
