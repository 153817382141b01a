// The gateway's error catalogue: every error a client can see, with its stable code and HTTP status.

/** An error whose code, status and message are safe to show to the client. */
export class GatewayError extends Error {
  readonly code: string;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;
  readonly headers: Record<string, string> | undefined;

  constructor(
    status: number,
    code: string,
    message: string,
    options: { details?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'GatewayError';
    this.status = status;
    this.code = code;
    this.details = options.details;
    this.headers = options.headers;
  }

  /** The JSON body sent to the client: `{error, error_code, ...details}`. */
  toBody(): Record<string, unknown> {
    return { error: this.message, error_code: this.code, ...this.details };
  }
}

export const authRequired = (message = 'An API key is required: send it as X-API-Key or Authorization: Bearer.'): GatewayError =>
  new GatewayError(401, 'AUTH_REQUIRED', message);

export const invalidKey = (): GatewayError => new GatewayError(401, 'INVALID_KEY', 'The API key is not valid.');

export const keyDisabled = (): GatewayError => new GatewayError(401, 'KEY_DISABLED', 'The API key is disabled.');

export const keyExpired = (): GatewayError => new GatewayError(401, 'KEY_EXPIRED', 'The API key has expired.');

export const forbidden = (message: string): GatewayError => new GatewayError(403, 'FORBIDDEN', message);

/** 403 for a user key on a route the gateway does not open to user keys. */
export const routeNotAllowed = (method: string, adminOnly = false): GatewayError =>
  new GatewayError(
    403,
    'ROUTE_NOT_ALLOWED',
    adminOnly
      ? `This ComfyUI route (${method}) is for admin keys only.`
      : `This ComfyUI route (${method}) is not one the gateway opens to user keys. An operator can open it with --user-route ${method}:PATH_PREFIX.`,
  );

/** 421 for a Host the gateway does not answer to (a DNS-rebound name, or a name the operator did not allow). */
export const hostNotAllowed = (host: string): GatewayError =>
  new GatewayError(
    421,
    'HOST_NOT_ALLOWED',
    `This gateway does not answer to the host ${JSON.stringify(host.slice(0, 200))}; if that is its name, start it with --allowed-host NAME.`,
  );

export const jobNotFound = (): GatewayError => new GatewayError(404, 'JOB_NOT_FOUND', 'No job of this key has that id.');

export const deliveryNotFound = (): GatewayError => new GatewayError(404, 'DELIVERY_NOT_FOUND', 'No webhook delivery has that id.');

/** 400 for a webhook asked of a gateway started without `--webhook-secret`. */
export const webhooksDisabled = (fix = 'leave out webhook_url, or start the gateway with --webhook-secret'): GatewayError =>
  new GatewayError(400, 'WEBHOOKS_DISABLED', `This gateway sends no webhooks: ${fix}.`);

/** 409 for an upload stored under a name that another key's overwriting upload claimed at the same moment. */
export const fileNameTaken = (): GatewayError =>
  new GatewayError(
    409,
    'FILE_NAME_TAKEN',
    "ComfyUI answered with a file of another key: that key's upload claimed the name at the same moment, or it holds these very bytes under the name (ComfyUI then answers with its file and stores no copy, however often the upload is sent). Upload the file under another name.",
  );

export const keyNotFound = (): GatewayError => new GatewayError(404, 'KEY_NOT_FOUND', 'No API key has that key_id.');

/** 404 on /v1/images/generations when no workflow is marked with `openai_images`. */
export const noImagesWorkflow = (): GatewayError =>
  new GatewayError(404, 'WORKFLOW_NOT_FOUND', 'No workflow serves /v1/images/generations: an admin marks one with openai_images.');

/** 400 on /v1/images/generations when ComfyUI refused the serving workflow's prompt. */
export const promptRefused = (message: string): GatewayError => new GatewayError(400, 'PROMPT_REFUSED', `ComfyUI refused the workflow's prompt: ${message}`);

/** 504 on /v1/images/generations when the job did not end in time; it runs on, at `location`. */
export const runTimeout = (seconds: number, location: string): GatewayError =>
  new GatewayError(504, 'RUN_TIMEOUT', `The images were not ready within ${seconds} s; the job runs on: ${location}`);

/** 500 on /v1/images/generations for a job that ended without success. */
export const jobFailed = (status: string, message: string | null): GatewayError =>
  new GatewayError(500, 'JOB_FAILED', `The job ended ${status}${message === null ? '' : `: ${message}`}.`);

export const workflowNotFound = (name: string): GatewayError =>
  new GatewayError(404, 'WORKFLOW_NOT_FOUND', `No workflow is registered as ${JSON.stringify(name.slice(0, 64))}; GET /api/gateway/workflows lists them.`);

/** A request the client must fix; `details` names each problem, e.g. `[{field, problem}]`. */
export const invalidRequest = (message: string, details: unknown = []): GatewayError =>
  new GatewayError(400, 'INVALID_REQUEST', message, { details: { details } });

export const unsupportedContentEncoding = (): GatewayError =>
  new GatewayError(415, 'UNSUPPORTED_CONTENT_ENCODING', 'The gateway checks a request body as it is sent: send it without Content-Encoding.');

export const payloadTooLarge = (maxBytes: number): GatewayError =>
  new GatewayError(413, 'PAYLOAD_TOO_LARGE', `The body is larger than the ${maxBytes} bytes the gateway reads on this route.`);

export const methodNotAllowed = (allowed: string[]): GatewayError =>
  new GatewayError(405, 'METHOD_NOT_ALLOWED', `Use one of: ${allowed.join(', ')}.`, {
    headers: { allow: allowed.join(', ') },
  });

/** 429 for a key over its hourly limit; `headers` are the rate-limit headers of the refused request. */
export const rateLimitExceeded = (limit: number, resetInSeconds: number, headers: Record<string, string> = {}): GatewayError =>
  new GatewayError(429, 'RATE_LIMIT_EXCEEDED', `Rate limit of ${limit} requests per hour exceeded; retry in ${resetInSeconds} s.`, {
    details: { limit, reset_in: resetInSeconds },
    headers: { ...headers, 'retry-after': String(resetInSeconds) },
  });

/** 429 for a key that already holds `max` WebSockets open. */
export const tooManyWebSockets = (max: number): GatewayError =>
  new GatewayError(429, 'TOO_MANY_WEBSOCKETS', `This key already has ${max} WebSockets open, the most allowed (--ws-max-per-key); close one first.`, {
    details: { limit: max },
  });

/** 429 for a prompt of a key that already has `max` jobs held, queued or running (its `max_queued`). */
export const queueLimit = (max: number): GatewayError =>
  new GatewayError(429, 'QUEUE_LIMIT', `This key may have at most ${max} jobs held, queued or running; wait for one to finish or cancel one.`, {
    details: { limit: max },
  });

/**
 * 429 for a prompt of a key that has used its `daily_execution_seconds` today (UTC); it may try again
 * after `retryAfterSeconds` (at the next UTC midnight).
 */
export const executionBudgetExceeded = (retryAfterSeconds: number, budget: number): GatewayError =>
  new GatewayError(
    429,
    'EXECUTION_BUDGET_EXCEEDED',
    `This key has used its ${budget} seconds of ComfyUI execution for today (UTC); the budget renews at midnight UTC, in ${retryAfterSeconds} s.`,
    { details: { limit: budget, reset_in: retryAfterSeconds }, headers: { 'retry-after': String(retryAfterSeconds) } },
  );

/** 429 for an address that failed to authenticate too often; it may try again after `retryAfterSeconds`. */
export const tooManyAuthFailures = (retryAfterSeconds: number): GatewayError =>
  new GatewayError(429, 'TOO_MANY_AUTH_FAILURES', `Too many failed authentications from this address; retry in ${retryAfterSeconds} s.`, {
    details: { reset_in: retryAfterSeconds },
    headers: { 'retry-after': String(retryAfterSeconds) },
  });

export const keyCreationFailed = (cause: unknown): GatewayError =>
  new GatewayError(500, 'KEY_CREATION_FAILED', 'The key could not be stored; nothing was created.', { cause });

export const storeUnavailable = (cause: unknown, store = 'key'): GatewayError =>
  new GatewayError(503, 'STORE_UNAVAILABLE', `The ${store} store could not be written; nothing was changed.`, { cause });

/** 503 when the ownership records hold as many claims of a kind as they may: nothing else's claim is given up to make room. */
export const claimsFull = (kind: string, cap: number): GatewayError =>
  new GatewayError(503, 'CLAIMS_FULL', `The gateway already holds ${cap} ${kind} claims, its limit; new ones are accepted again as old ones expire.`, {
    headers: { 'retry-after': '3600' },
  });

/** 503 for a run whose image URL found no free place among the gateway's fetches in flight, or its key's share of them, within its fetch timeout. */
export const imageFetchesBusy = (waitedSeconds: number): GatewayError =>
  new GatewayError(
    503,
    'IMAGE_FETCHES_BUSY',
    `The gateway is fetching as many image URLs as it may at once, for every key or for this one, and none finished within ${waitedSeconds} s; nothing was run. Retry later, or give the image as base64.`,
    { headers: { 'retry-after': '5' } },
  );

export const upstreamUnavailable = (cause: unknown): GatewayError => new GatewayError(502, 'UPSTREAM_UNAVAILABLE', 'ComfyUI is not reachable.', { cause });

export const upstreamUnreadable = (): GatewayError =>
  new GatewayError(502, 'UPSTREAM_UNREADABLE', "ComfyUI's answer could not be read, so the gateway could not keep it to what this key may see.");

export const upstreamTimeout = (cause: unknown): GatewayError => new GatewayError(504, 'UPSTREAM_TIMEOUT', 'ComfyUI did not answer in time.', { cause });

export const internalError = (cause: unknown): GatewayError => new GatewayError(500, 'INTERNAL_ERROR', 'Internal error.', { cause });

export const backendDown = (name: string): GatewayError =>
  new GatewayError(502, 'BACKEND_DOWN', `The ComfyUI backend this job is on (${name}) is down; try again once it is back.`);

export const unknownBackend = (name: string, known: readonly string[]): GatewayError =>
  new GatewayError(400, 'UNKNOWN_BACKEND', `No backend is named ${JSON.stringify(name)}; the backends are ${known.join(', ')}.`, {
    details: { backends: known },
  });

/** 502 for an upload that not every backend stored under the same name: it is not recorded as the key's. */
export const uploadIncomplete = (failed: ReadonlyArray<{ backend: string; problem: string }>): GatewayError =>
  new GatewayError(
    502,
    'UPLOAD_INCOMPLETE',
    `The upload was not stored alike on every ComfyUI backend, so a prompt could not load it wherever it runs, and it is not recorded as this key's: ${failed
      .map(({ backend, problem }) => `${backend} ${problem}`)
      .join('; ')}. Upload it again (see /readyz for the backends).`,
    { details: { failed } },
  );

/**
 * One way a prompt breaks its key's prompt policy: the node (null for the whole prompt), the rule, its limit
 * and the prompt's value; `reason` says why and what to do where the value alone does not.
 */
export interface PolicyViolation {
  node_id: string | null;
  rule: string;
  limit: unknown;
  value: unknown;
  reason?: string;
}

/** 403 for a prompt its key's prompt policy refuses; `details` lists every violation found. */
export const promptPolicy = (violations: readonly PolicyViolation[]): GatewayError => {
  const first = violations[0];
  const where = first?.node_id == null ? 'the prompt' : `node ${first.node_id}`;
  const more = violations.length > 1 ? ` (and ${violations.length - 1} more: see details)` : '';
  return new GatewayError(403, 'PROMPT_POLICY', `The prompt breaks this key's prompt policy: ${where} breaks ${first?.rule ?? 'a rule'}${more}.`, {
    details: { details: violations },
  });
};

/** 403 for an upload that overwrites a file with one its key's prompt policy refuses, by the `rule` it breaks; `details` as promptPolicy's. */
export const overwritePolicy = (rule: string, violations: readonly PolicyViolation[]): GatewayError =>
  new GatewayError(
    403,
    'PROMPT_POLICY',
    `The upload breaks this key's prompt policy: ${rule}, and ${violations[0]?.reason ?? 'this one is not'}. Upload it under a new name instead.`,
    { details: { details: violations } },
  );
