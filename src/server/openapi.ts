// The OpenAPI 3.1 description of comfy-gate's own endpoints (ComfyUI's routes pass through and are not described here).

import { MAX_POLICY_GLOB_LENGTH, MAX_POLICY_GLOBS, MAX_POLICY_LIMIT, POLICY_LIMIT_FIELDS } from '../policy/schema.js';
import { MAX_KEY_QUOTA, WEBHOOK_EVENTS } from '../store/types.js';
import { MAX_WEBHOOK_URL_LENGTH } from './key-input.js';

const error = { $ref: '#/components/schemas/Error' };
const json = (schema: unknown) => ({ content: { 'application/json': { schema } } });
const errorResponse = (description: string) => ({ description, ...json(error) });
const keyIdParameter = { name: 'key_id', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } };
const daysParameter = { name: 'days', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 365, default: 30 } };
const byParameter = {
  name: 'by',
  in: 'query',
  required: false,
  schema: { type: 'string', enum: ['day'] },
  description: 'With `day`, the answer adds day-by-day series.',
};
const limitParameter = {
  name: 'limit',
  in: 'query',
  required: false,
  schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
  description: 'Keys per page.',
};
const afterParameter = {
  name: 'after',
  in: 'query',
  required: false,
  schema: { type: 'string', minLength: 1, maxLength: 256 },
  description: 'The `next_cursor` of the previous page: the page starts after this key_id (keys come in key_id order).',
};
const nextCursor = { type: ['string', 'null'], description: 'Give it as `after` for the next page; null on the last page.' };
const nullableNumber = { type: ['number', 'null'] };
const quota = (description: string) => ({ type: ['integer', 'null'], minimum: 1, maximum: MAX_KEY_QUOTA, description: `${description}; null for no limit` });
const quotas = {
  max_queued: quota('Jobs the key may have held, queued or running at once (429 QUEUE_LIMIT beyond)'),
  max_running: quota('Jobs of the key running at once across backends (more wait, held)'),
  daily_execution_seconds: quota('Seconds of ComfyUI execution per UTC day (429 EXECUTION_BUDGET_EXCEEDED beyond)'),
};
const globs = (description: string) => ({
  type: 'array',
  maxItems: MAX_POLICY_GLOBS,
  items: { type: 'string', minLength: 1, maxLength: MAX_POLICY_GLOB_LENGTH },
  description,
});
/** A key's prompt policy (docs/api.md "Prompt policy"). */
const promptPolicy = {
  type: 'object',
  additionalProperties: false,
  description: 'What the key may send to POST /prompt (403 PROMPT_POLICY beyond); every field optional',
  properties: {
    allow_nodes: globs('Node class_type globs (`*`: any run of characters); with it, every node must match one'),
    deny_nodes: globs('Node class_type globs refused; deny wins over allow'),
    ...Object.fromEntries(POLICY_LIMIT_FIELDS.map((field) => [field, { type: 'integer', minimum: 1, maximum: MAX_POLICY_LIMIT }])),
    workflows_only: { type: 'boolean', description: 'Refuse POST /prompt altogether' },
  },
};
const policyField = {
  policy: {
    oneOf: [{ $ref: '#/components/schemas/PromptPolicy' }, { type: 'null' }],
    description: "The key's prompt policy; null for none of its own (a user key then gets the gateway's --default-policy)",
  },
};
const webhookUrlField = {
  webhook_url: {
    type: ['string', 'null'],
    maxLength: MAX_WEBHOOK_URL_LENGTH,
    description:
      "Where the key's jobs' events (job.succeeded, job.failed, job.cancelled) are POSTed when a run names no webhook_url of its own; null for none. Used only with --webhook-secret",
  },
};
const webhookEvent = { type: 'string', enum: [...WEBHOOK_EVENTS] };
const apiKeyHeader = [{ apiKey: [] }, { bearer: [] }, { session: [] }];

const key = {
  type: 'object',
  required: [
    'key_id',
    'name',
    'created_at',
    'last_used',
    'rate_limit',
    'is_active',
    'metadata',
    'role',
    'expires_at',
    'key_prefix',
    'previous_key_valid_until',
    'max_queued',
    'max_running',
    'daily_execution_seconds',
    'policy',
    'webhook_url',
  ],
  additionalProperties: false,
  properties: {
    key_id: { type: 'string' },
    name: { type: 'string' },
    created_at: { type: 'number', description: 'Unix seconds' },
    last_used: nullableNumber,
    rate_limit: { type: 'integer', minimum: 1, description: 'Requests per hour' },
    is_active: { type: 'boolean' },
    metadata: { type: 'object' },
    role: { type: 'string', enum: ['user', 'admin'] },
    expires_at: nullableNumber,
    key_prefix: { type: ['string', 'null'], description: 'The first characters of the secret, to recognise the key' },
    previous_key_valid_until: { ...nullableNumber, description: 'After a rotation with a grace period: when the old secret stops working' },
    ...quotas,
    ...policyField,
    ...webhookUrlField,
  },
};

/** Job metering, in `usage_stats` and in each day of a daily series. */
const jobMetering = {
  prompts: { type: 'integer', minimum: 0, description: 'Prompts admitted' },
  prompts_run: { type: 'integer', minimum: 0, description: 'Jobs that ran, counted on the UTC day they finished' },
  execution_seconds: { type: 'number', minimum: 0, description: 'Seconds those jobs spent executing in ComfyUI' },
  outputs: { type: 'integer', minimum: 0, description: 'Files those jobs produced' },
};

const usageStats = {
  type: 'object',
  required: [
    'total_requests',
    'successful_requests',
    'failed_requests',
    'total_duration',
    'average_duration',
    'requests_per_day',
    'rate_limited_requests',
    'requests_last_24h',
    'prompts',
    'prompts_run',
    'execution_seconds',
    'outputs',
  ],
  additionalProperties: false,
  properties: {
    total_requests: { type: 'integer', minimum: 0 },
    successful_requests: { type: 'integer', minimum: 0 },
    failed_requests: { type: 'integer', minimum: 0 },
    total_duration: { type: 'number', minimum: 0, description: 'Seconds' },
    average_duration: { type: 'number', minimum: 0, description: 'Seconds' },
    requests_per_day: { type: 'object', additionalProperties: { type: 'integer' }, propertyNames: { pattern: '^\\d{4}-\\d{2}-\\d{2}$' } },
    rate_limited_requests: { type: 'integer', minimum: 0 },
    requests_last_24h: { type: 'integer', minimum: 0 },
    ...jobMetering,
  },
};

const dailyPoint = {
  type: 'object',
  required: ['date', 'requests', 'successes', 'failures', 'duration', 'rate_limited', 'prompts', 'prompts_run', 'execution_seconds', 'outputs'],
  additionalProperties: false,
  properties: {
    date: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' },
    requests: { type: 'integer', minimum: 0 },
    successes: { type: 'integer', minimum: 0 },
    failures: { type: 'integer', minimum: 0 },
    duration: { type: 'number', minimum: 0 },
    rate_limited: { type: 'integer', minimum: 0 },
    ...jobMetering,
  },
};

const createdKey = {
  type: 'object',
  required: [
    'key_id',
    'api_key',
    'name',
    'rate_limit',
    'role',
    'metadata',
    'created_at',
    'expires_at',
    'key_prefix',
    'max_queued',
    'max_running',
    'daily_execution_seconds',
    'policy',
    'webhook_url',
    'message',
  ],
  properties: {
    key_id: { type: 'string' },
    api_key: { type: 'string', pattern: '^comfy_[A-Za-z0-9_-]{43,}$', description: 'Shown only in this answer' },
    name: { type: 'string' },
    rate_limit: { type: 'integer' },
    role: { type: 'string', enum: ['user', 'admin'] },
    metadata: { type: 'object' },
    created_at: { type: 'number' },
    expires_at: nullableNumber,
    key_prefix: { type: ['string', 'null'] },
    previous_key_valid_until: nullableNumber,
    ...quotas,
    ...policyField,
    ...webhookUrlField,
    message: { type: 'string' },
  },
};

const keyInput = {
  type: 'object',
  additionalProperties: false,
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 200 },
    rate_limit: { type: 'integer', minimum: 1, maximum: 10_000_000 },
    metadata: { type: 'object' },
    role: { type: 'string', enum: ['user', 'admin'] },
    expires_at: nullableNumber,
    ...quotas,
    ...policyField,
    ...webhookUrlField,
  },
};

const deliveryAttempt = {
  type: 'object',
  required: ['at', 'status', 'error', 'duration_ms'],
  additionalProperties: false,
  properties: {
    at: { type: 'number', description: 'Unix seconds' },
    status: { type: ['integer', 'null'], description: "The receiver's HTTP status; null when there was no answer" },
    error: { type: ['string', 'null'], description: 'Why there was no answer (a refused address, a network error, no answer within 10 s)' },
    duration_ms: { type: 'number', minimum: 0 },
  },
};
const deliveryFields = {
  id: { type: 'string', description: 'Derived from the job and the event: the same event of the same job has one delivery' },
  job_id: { type: 'string' },
  key_id: { type: 'string' },
  event: webhookEvent,
  url: { type: 'string' },
  state: { enum: ['pending', 'delivered', 'failed'], description: '`pending`: being tried; `delivered`: a 2xx answer; `failed`: given up' },
  created_at: { type: 'number', description: 'Unix seconds' },
  next_attempt_at: { type: ['number', 'null'], description: 'When it is tried next; null once delivered or failed' },
};
const DELIVERY_REQUIRED = ['id', 'job_id', 'key_id', 'event', 'url', 'state', 'created_at', 'next_attempt_at'];
/** A delivery in a listing: no body and attempts, but how many attempts and the last. */
const deliverySummary = {
  type: 'object',
  required: [...DELIVERY_REQUIRED, 'attempt_count', 'last_attempt'],
  additionalProperties: false,
  properties: {
    ...deliveryFields,
    attempt_count: { type: 'integer', minimum: 0 },
    last_attempt: { oneOf: [{ $ref: '#/components/schemas/DeliveryAttempt' }, { type: 'null' }] },
  },
};
/** One delivery with every attempt and the event it sends. */
const delivery = {
  type: 'object',
  required: [...DELIVERY_REQUIRED, 'attempts', 'payload'],
  additionalProperties: false,
  properties: {
    ...deliveryFields,
    attempts: { type: 'array', items: { $ref: '#/components/schemas/DeliveryAttempt' } },
    payload: { $ref: '#/components/schemas/WebhookEvent' },
  },
};
/** The JSON body of a webhook POST. */
const webhookEventBody = {
  type: 'object',
  required: ['id', 'type', 'created', 'data'],
  additionalProperties: false,
  properties: {
    id: { type: 'string', description: 'The delivery id, also in Comfy-Gate-Delivery: the same on every attempt' },
    type: webhookEvent,
    created: { type: 'integer', description: 'Unix seconds when the event was enqueued' },
    data: {
      type: 'object',
      required: ['job'],
      additionalProperties: false,
      properties: { job: { $ref: '#/components/schemas/Job' } },
    },
  },
};

/** A ComfyUI backend, as `/readyz` and `GET /api/gateway/backends` show it. */
const backend = {
  type: 'object',
  required: ['name', 'url', 'weight', 'state', 'since', 'last_error', 'events', 'jobs_in_flight', 'queue_remaining'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', description: '`default` with one backend; else host:port, its `#name=`, or `comfyui-N` for a child' },
    url: { type: 'string', description: 'Its origin, without credentials' },
    weight: { type: 'integer', minimum: 1 },
    state: {
      enum: ['starting', 'up', 'unreachable', 'down'],
      description:
        '`starting`: not answered yet; `up`: its last health check answered; `unreachable`: checks failing, not yet confirmed; `down`: confirmed down, its jobs moved',
    },
    since: { type: 'number', description: 'Unix seconds of the last change of state' },
    last_error: { type: ['string', 'null'], description: 'Why its last health check failed; null after a good one' },
    events: { enum: ['connected', 'disconnected'], description: "The gateway's event socket to it" },
    jobs_in_flight: { type: 'integer', minimum: 0, description: "The gateway's jobs queued or running on it" },
    queue_remaining: { type: ['integer', 'null'], minimum: 0, description: "ComfyUI's own queue_remaining (every client's) at its last good health check" },
    child: {
      type: 'string',
      description: 'Only when the gateway runs it: `running (pid N)`, `starting (pid N)`, `restarting in N s (exit code N)` or `stopped`',
    },
  },
};

/** A run's job: the job with each output's `content_type`, `size` and, when inline, `data`. */
const runJob = {
  allOf: [{ $ref: '#/components/schemas/Job' }],
  properties: {
    outputs: {
      type: 'array',
      items: {
        type: 'object',
        required: ['filename', 'subfolder', 'type', 'url', 'content_type', 'size'],
        properties: {
          content_type: { type: ['string', 'null'], description: "The backend's Content-Type for the file (null when it did not answer)" },
          size: { type: ['integer', 'null'], minimum: 0, description: 'Bytes (null when the backend did not answer)' },
          data: {
            type: 'string',
            contentEncoding: 'base64',
            description: 'With `inline`: the file, when it is at most 4 MiB and the answer stays within 16 MiB',
          },
        },
      },
    },
  },
};

/** The fields every run body takes besides what it runs (POST /api/gateway/run and each workflow's run). */
const runOptions = {
  wait: { type: 'number', minimum: 0, maximum: 600, default: 60, description: 'Seconds to wait for the job to end' },
  inline: { type: 'boolean', default: false, description: 'Outputs up to 4 MiB carry `data` (base64), up to 16 MiB in all' },
  cancel_on_disconnect: {
    type: 'boolean',
    default: false,
    description: 'Cancel the job (held) or interrupt it (queued, running) when the client hangs up',
  },
  client_id: { type: 'string', description: "The client's own client_id, as POST /prompt takes it" },
  webhook_url: {
    type: 'string',
    maxLength: MAX_WEBHOOK_URL_LENGTH,
    description: "Where the job's events are POSTed (instead of the key's webhook_url); needs --webhook-secret",
  },
  webhook_events: {
    type: 'array',
    minItems: 1,
    uniqueItems: true,
    items: webhookEvent,
    default: ['job.succeeded', 'job.failed', 'job.cancelled'],
    description: 'The events sent to webhook_url; job.started only when asked for',
  },
};

/** ComfyUI's answer to a prompt it refuses. */
const comfyRefusal = {
  type: 'object',
  required: ['error', 'node_errors'],
  properties: { error: { type: 'object' }, node_errors: { type: 'object' } },
};

const workflowNameParameter = { name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: '^[a-z0-9_-]{1,64}$' } };
/** One input of a registered workflow (docs/api.md "Workflows"). */
const workflowInput = {
  type: 'object',
  required: ['node', 'input', 'type'],
  additionalProperties: false,
  properties: {
    node: { type: 'string', description: 'A node id of the graph' },
    input: { type: 'string', description: "The name of that node's input (it must be in the graph)" },
    type: { type: 'string', enum: ['integer', 'number', 'string', 'boolean', 'enum', 'image'] },
    default: { description: 'Used when a run leaves the input out (not for image inputs); without it the input is required' },
    min: { type: 'number', description: 'integer and number inputs' },
    max: { type: 'number', description: 'integer and number inputs' },
    values: { type: 'array', minItems: 1, maxItems: 1000, items: { type: ['string', 'number'] }, description: 'enum inputs: the allowed values' },
    description: { type: 'string', maxLength: 2000 },
  },
};
/** Which inputs of a workflow serve POST /v1/images/generations. */
const openAiImages = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  description: 'Marks the workflow that serves POST /v1/images/generations (one workflow at a time): the input each request field sets',
  properties: {
    prompt: { type: 'string', description: 'A string input: the request prompt' },
    width: { type: 'string', description: 'An integer input: the width of the request size (with height)' },
    height: { type: 'string', description: 'An integer input: the height of the request size (with width)' },
    n: { type: 'string', description: 'An integer input: the request n (a batch size)' },
  },
};
/** An error of POST /v1/images/generations, in OpenAI's shape. */
const openAiError = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['message', 'type', 'param', 'code'],
      properties: {
        message: { type: 'string' },
        type: { type: 'string' },
        param: { type: ['string', 'null'] },
        code: { type: 'string' },
        details: { type: 'array' },
      },
    },
  },
};
const openAiErrorResponse = (description: string) => ({ description, ...json(openAiError) });

/** A registered workflow as a key sees it: `prompt` only for admin keys. */
const workflow = {
  type: 'object',
  required: ['name', 'description', 'inputs', 'created_at', 'updated_at'],
  properties: {
    name: { type: 'string' },
    description: { type: ['string', 'null'] },
    inputs: { type: 'object', additionalProperties: { $ref: '#/components/schemas/WorkflowInput' } },
    created_at: { type: 'number' },
    updated_at: { type: 'number' },
    prompt: { type: 'object', description: 'The API-format graph (admin keys only)' },
    openai_images: { $ref: '#/components/schemas/OpenAiImages' },
  },
};

/** The document served at /api/gateway/openapi.json. */
export const OPENAPI_DOCUMENT = {
  openapi: '3.1.0',
  info: {
    title: 'comfy-gate',
    version: '0.1.0',
    description: 'API keys, rate limits, usage accounting and isolation in front of ComfyUI. Every /api/… path here also answers without the /api prefix.',
  },
  components: {
    securitySchemes: {
      apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
      bearer: { type: 'http', scheme: 'bearer' },
      session: {
        type: 'apiKey',
        in: 'cookie',
        name: 'comfy_gate_session',
        description: 'Set by POST /login. Over HTTPS it is named __Host-comfy_gate_session. A request holding more than one is not signed in.',
      },
    },
    schemas: {
      PromptPolicy: promptPolicy,
      WorkflowInput: workflowInput,
      Workflow: workflow,
      OpenAiImages: openAiImages,
      Job: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          key_id: { type: 'string' },
          client_id: { type: ['string', 'null'] },
          backend: { type: 'string' },
          upstream_id: { type: ['string', 'null'], description: 'The prompt_id ComfyUI knows the job by (null until sent)' },
          status: { type: 'string', enum: ['held', 'queued', 'running', 'success', 'error', 'interrupted', 'cancelled'] },
          admitted_at: { type: 'number' },
          forwarded_at: { type: ['number', 'null'] },
          started_at: { type: ['number', 'null'] },
          finished_at: { type: ['number', 'null'] },
          execution_seconds: { type: ['number', 'null'] },
          queue_position: { type: ['integer', 'null'], description: 'Held jobs released before this one' },
          outputs: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                node: { type: 'string' },
                filename: { type: 'string' },
                subfolder: { type: 'string' },
                type: { type: 'string' },
                url: { type: 'string' },
              },
            },
          },
          error: { type: ['object', 'null'] },
        },
      },
      Error: {
        type: 'object',
        required: ['error', 'error_code'],
        properties: {
          error: { type: 'string' },
          error_code: { type: 'string', pattern: '^[A-Z_]+$' },
          details: {},
          limit: { type: 'integer' },
          reset_in: { type: 'integer' },
        },
      },
      Key: key,
      KeyInput: keyInput,
      CreatedKey: createdKey,
      UsageStats: usageStats,
      DailyPoint: dailyPoint,
      Backend: backend,
      DeliveryAttempt: deliveryAttempt,
      WebhookDeliverySummary: deliverySummary,
      WebhookDelivery: delivery,
      WebhookEvent: webhookEventBody,
      AuditEntry: {
        type: 'object',
        required: ['ts', 'actor', 'action'],
        properties: {
          ts: { type: 'number' },
          actor: { type: 'string' },
          action: { type: 'string' },
          key_id: { type: 'string' },
          ip: { type: 'string' },
          details: { type: 'object' },
        },
      },
    },
  },
  paths: {
    '/healthz': {
      get: {
        summary: 'The gateway is running',
        responses: { 200: { description: 'Running', ...json({ type: 'object', required: ['status'], properties: { status: { const: 'ok' } } }) } },
      },
    },
    '/readyz': {
      get: {
        summary: 'ComfyUI answers, the store can be written, and a child ComfyUI (`-- COMMAND`) has answered since its last start',
        responses: Object.fromEntries(
          [200, 503].map((status) => [
            status,
            {
              description: status === 200 ? 'Ready' : 'Not ready',
              ...json({
                type: 'object',
                required: ['status', 'upstream', 'store', 'backends'],
                properties: {
                  status: { enum: ['ready', 'not_ready'] },
                  upstream: { type: 'string' },
                  store: { type: 'string' },
                  child: {
                    type: 'string',
                    description: 'Only with a child ComfyUI: `running (pid N)`, `starting (pid N)`, `restarting in N s (exit code N)` or `stopped`',
                  },
                  backends: { type: 'array', items: { $ref: '#/components/schemas/Backend' } },
                },
              }),
            },
          ]),
        ),
      },
    },
    '/api/keys': {
      get: {
        summary: 'List keys (admin): every key in creation order, or with `limit` or `after` a page of keys in key_id order',
        security: apiKeyHeader,
        parameters: [limitParameter, afterParameter],
        responses: {
          200: {
            description: 'The keys, without hashes; `next_cursor` only when paged',
            ...json({
              type: 'object',
              required: ['keys'],
              properties: { keys: { type: 'array', items: { $ref: '#/components/schemas/Key' } }, next_cursor: nextCursor },
            }),
          },
          400: errorResponse('Bad limit or after'),
          401: errorResponse('No or bad key'),
          403: errorResponse('Not an admin key'),
        },
      },
      post: {
        summary: 'Create a key (admin; the first key in required mode from this machine without one)',
        security: apiKeyHeader,
        requestBody: { required: false, ...json({ $ref: '#/components/schemas/KeyInput' }) },
        responses: {
          200: { description: 'The key, with its secret shown only here', ...json({ $ref: '#/components/schemas/CreatedKey' }) },
          400: errorResponse('Invalid input'),
          401: errorResponse('No or bad key'),
          403: errorResponse('Not an admin key'),
        },
      },
    },
    '/api/keys/{key_id}': {
      parameters: [keyIdParameter],
      get: {
        summary: 'One key with its usage over 30 days (admin, or the key itself)',
        security: apiKeyHeader,
        responses: {
          200: {
            description: 'The key',
            ...json({
              ...key,
              required: [...key.required, 'usage_stats'],
              properties: { ...key.properties, usage_stats: { $ref: '#/components/schemas/UsageStats' } },
            }),
          },
          404: errorResponse('No such key'),
        },
      },
      patch: {
        summary: 'Change a key (admin)',
        security: apiKeyHeader,
        requestBody: {
          required: true,
          ...json({ type: 'object', additionalProperties: false, minProperties: 1, properties: { ...keyInput.properties, is_active: { type: 'boolean' } } }),
        },
        responses: {
          200: {
            description: 'Updated',
            ...json({ type: 'object', required: ['message', 'key'], properties: { message: { type: 'string' }, key: { $ref: '#/components/schemas/Key' } } }),
          },
          400: errorResponse('Invalid input'),
          404: errorResponse('No such key'),
        },
      },
      delete: {
        summary: 'Delete a key (admin)',
        security: apiKeyHeader,
        responses: {
          200: { description: 'Deleted', ...json({ type: 'object', required: ['message'], properties: { message: { type: 'string' } } }) },
          404: errorResponse('No such key'),
        },
      },
    },
    '/api/keys/{key_id}/rotate': {
      parameters: [keyIdParameter],
      post: {
        summary: 'A new secret for the key (admin); the old one works for grace_seconds',
        security: apiKeyHeader,
        requestBody: {
          required: false,
          ...json({ type: 'object', additionalProperties: false, properties: { grace_seconds: { type: 'integer', minimum: 0, maximum: 2_592_000 } } }),
        },
        responses: {
          200: { description: 'The new secret, shown only here', ...json({ $ref: '#/components/schemas/CreatedKey' }) },
          404: errorResponse('No such key'),
        },
      },
    },
    '/api/keys/{key_id}/webhook-secret': {
      parameters: [keyIdParameter],
      get: {
        summary: "The secret the key's webhook deliveries are signed with (the key itself, or an admin); each read is audited",
        security: apiKeyHeader,
        responses: {
          200: {
            description: "The key's signing secret",
            ...json({
              type: 'object',
              additionalProperties: false,
              required: ['key_id', 'webhook_secret'],
              properties: { key_id: { type: 'string' }, webhook_secret: { type: 'string', pattern: '^whsec_[0-9a-f]{64}$' } },
            }),
          },
          400: errorResponse('WEBHOOKS_DISABLED: the gateway was started without --webhook-secret'),
          401: errorResponse('No or bad key'),
          403: errorResponse("A user key asking for another key's secret"),
          404: errorResponse('No such key'),
        },
      },
    },
    '/api/usage': {
      get: {
        summary: "The presenting key's own usage",
        security: apiKeyHeader,
        parameters: [daysParameter, byParameter],
        responses: {
          200: {
            description: 'Usage',
            ...json({
              type: 'object',
              required: ['key_id', 'key_name', 'usage_stats'],
              properties: {
                key_id: { type: 'string' },
                key_name: { type: 'string' },
                usage_stats: { $ref: '#/components/schemas/UsageStats' },
                daily: { type: 'array', items: { $ref: '#/components/schemas/DailyPoint' } },
              },
            }),
          },
          400: errorResponse('Bad days'),
          401: errorResponse('No or bad key'),
        },
      },
    },
    '/api/usage/all': {
      get: {
        summary: "Every key's usage (admin), a page of keys at a time in key_id order, with the totals of all keys",
        security: apiKeyHeader,
        parameters: [daysParameter, byParameter, limitParameter, afterParameter],
        responses: {
          200: {
            description: "The page's keys (including keys deleted since that have usage), and the totals of every key",
            ...json({
              type: 'object',
              required: ['usage_stats', 'total_stats', 'next_cursor'],
              properties: {
                usage_stats: { type: 'object', additionalProperties: { $ref: '#/components/schemas/UsageStats' } },
                daily: { type: 'object', additionalProperties: { type: 'array', items: { $ref: '#/components/schemas/DailyPoint' } } },
                daily_total: { type: 'array', items: { $ref: '#/components/schemas/DailyPoint' }, description: 'Every key together, not only the page' },
                total_stats: { $ref: '#/components/schemas/UsageStats', description: 'Every key together, not only the page' },
                next_cursor: nextCursor,
              },
            }),
          },
          400: errorResponse('Bad days, by, limit or after'),
        },
      },
    },
    '/api/gateway/jobs': {
      get: {
        summary: "The key's jobs, newest first (every key's for an admin)",
        security: apiKeyHeader,
        parameters: [
          { name: 'status', in: 'query', required: false, schema: { type: 'string' }, description: 'Comma-separated statuses to keep' },
          { name: 'key_id', in: 'query', required: false, schema: { type: 'string' }, description: "Admin keys: one key's jobs" },
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
          { name: 'offset', in: 'query', required: false, schema: { type: 'integer', minimum: 0, default: 0 } },
        ],
        responses: {
          200: {
            description: 'A page of jobs',
            ...json({
              type: 'object',
              required: ['jobs', 'pagination'],
              properties: {
                jobs: { type: 'array', items: { $ref: '#/components/schemas/Job' } },
                pagination: {
                  type: 'object',
                  properties: { offset: { type: 'integer' }, limit: { type: 'integer' }, total: { type: 'integer' }, has_more: { type: 'boolean' } },
                },
              },
            }),
          },
          400: { description: 'INVALID_REQUEST: an unknown status, or limit/offset out of range', ...json(error) },
        },
      },
    },
    '/api/gateway/jobs/{id}': {
      get: {
        summary: 'One job',
        security: apiKeyHeader,
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        responses: {
          200: { description: 'The job', ...json({ $ref: '#/components/schemas/Job' }) },
          404: { description: "JOB_NOT_FOUND: no job of this key has that id (another key's job included)", ...json(error) },
        },
      },
    },
    '/api/gateway/run': {
      post: {
        summary: 'Runs a prompt and waits for its job to end (any key)',
        description:
          'The prompt is admitted as POST /prompt admits it (quotas, fair queue, file ownership, placement), then the job is awaited. ' +
          'A client that hangs up leaves the job running unless `cancel_on_disconnect` is true.',
        security: apiKeyHeader,
        requestBody: {
          required: true,
          ...json({
            type: 'object',
            required: ['prompt'],
            additionalProperties: false,
            properties: {
              prompt: { type: 'object', description: 'The API-format graph, as POST /prompt takes it' },
              ...runOptions,
            },
          }),
        },
        responses: {
          200: { description: 'The job ended (success, error, interrupted or cancelled): the job with its outputs described', ...json(runJob) },
          202: {
            description: 'The job did not end within `wait`: the job as it is now; `Location` is its URL in the jobs API',
            headers: { Location: { schema: { type: 'string' }, description: '/api/gateway/jobs/{id}' } },
            ...json({ $ref: '#/components/schemas/Job' }),
          },
          400: {
            description:
              "INVALID_REQUEST (an unknown field, a wrong type, wait out of range, a webhook_url that is not http(s) or points to a private address), WEBHOOKS_DISABLED (a webhook_url without --webhook-secret), or ComfyUI's own answer refusing the prompt",
            ...json({ anyOf: [error, comfyRefusal] }),
          },
          401: errorResponse('No key, or not a valid one'),
          403: errorResponse("FORBIDDEN: another key's client_id, or a loader node naming a file the key does not own"),
          429: errorResponse('RATE_LIMIT_EXCEEDED, QUEUE_LIMIT or EXECUTION_BUDGET_EXCEEDED'),
        },
      },
    },
    '/api/gateway/workflows': {
      get: {
        summary: 'The registered workflows, by name (any key; the graph for admin keys only)',
        security: apiKeyHeader,
        responses: {
          200: {
            description: 'Every workflow',
            ...json({
              type: 'object',
              required: ['workflows'],
              properties: { workflows: { type: 'array', items: { $ref: '#/components/schemas/Workflow' } } },
            }),
          },
          401: errorResponse('No key, or not a valid one'),
        },
      },
    },
    '/api/gateway/workflows/{name}': {
      get: {
        summary: 'One workflow (any key; the graph for admin keys only)',
        security: apiKeyHeader,
        parameters: [workflowNameParameter],
        responses: {
          200: { description: 'The workflow', ...json({ $ref: '#/components/schemas/Workflow' }) },
          404: errorResponse('WORKFLOW_NOT_FOUND'),
        },
      },
      put: {
        summary: 'Registers or replaces a workflow (admin)',
        security: apiKeyHeader,
        parameters: [workflowNameParameter],
        requestBody: {
          required: true,
          ...json({
            type: 'object',
            required: ['prompt'],
            additionalProperties: false,
            properties: {
              prompt: { type: 'object', description: 'The API-format graph, as POST /prompt takes it' },
              description: { type: 'string', maxLength: 2000 },
              inputs: { type: 'object', maxProperties: 100, additionalProperties: { $ref: '#/components/schemas/WorkflowInput' } },
              openai_images: { oneOf: [{ $ref: '#/components/schemas/OpenAiImages' }, { type: 'null' }] },
            },
          }),
        },
        responses: {
          200: { description: 'Replaced', ...json({ $ref: '#/components/schemas/Workflow' }) },
          201: { description: 'Registered', ...json({ $ref: '#/components/schemas/Workflow' }) },
          400: errorResponse('INVALID_REQUEST: `details` lists every problem as {field, problem}'),
          403: errorResponse('Not an admin key'),
        },
      },
      delete: {
        summary: 'Deletes a workflow (admin)',
        security: apiKeyHeader,
        parameters: [workflowNameParameter],
        responses: {
          200: { description: 'Deleted', ...json({ type: 'object', required: ['message'], properties: { message: { type: 'string' } } }) },
          403: errorResponse('Not an admin key'),
          404: errorResponse('WORKFLOW_NOT_FOUND'),
        },
      },
    },
    '/api/gateway/workflows/{name}/run': {
      post: {
        summary: 'Runs a registered workflow with its inputs and waits for its job to end (any key)',
        description:
          'Each registered workflow also has its own path, /api/gateway/workflows/<name>/run, with the schema of its inputs. ' +
          'The run is answered as POST /api/gateway/run answers.',
        security: apiKeyHeader,
        parameters: [workflowNameParameter],
        requestBody: {
          required: false,
          ...json({
            type: 'object',
            additionalProperties: false,
            properties: {
              inputs: { type: 'object', description: "The workflow's inputs by name; those without a default are required" },
              ...runOptions,
            },
          }),
        },
        responses: {
          200: { description: 'The job ended: the job with its outputs described', ...json(runJob) },
          202: {
            description: 'The job did not end within `wait`: the job as it is now; `Location` is its URL in the jobs API',
            headers: { Location: { schema: { type: 'string' }, description: '/api/gateway/jobs/{id}' } },
            ...json({ $ref: '#/components/schemas/Job' }),
          },
          400: {
            description: 'INVALID_REQUEST (each input\'s problem as {field: "inputs.<name>", problem}), or ComfyUI\'s own answer refusing the prompt',
            ...json({ anyOf: [error, comfyRefusal] }),
          },
          401: errorResponse('No key, or not a valid one'),
          403: errorResponse('FORBIDDEN (an image input naming a file the key does not own) or PROMPT_POLICY'),
          404: errorResponse('WORKFLOW_NOT_FOUND'),
          429: errorResponse('RATE_LIMIT_EXCEEDED, QUEUE_LIMIT or EXECUTION_BUDGET_EXCEEDED'),
        },
      },
    },
    '/v1/images/generations': {
      post: {
        summary: "OpenAI's images API, served by the workflow marked with openai_images (any key, as a bearer token)",
        description:
          'Runs the workflow with the request prompt, n and size, waiting up to 600 s; a client that hangs up cancels the job. ' +
          'A url answer is the absolute /view URL of the image, fetched with the same key.',
        security: apiKeyHeader,
        requestBody: {
          required: true,
          ...json({
            type: 'object',
            required: ['prompt'],
            additionalProperties: false,
            properties: {
              prompt: { type: 'string', minLength: 1, maxLength: 32000 },
              n: { type: ['integer', 'null'], minimum: 1, maximum: 10 },
              size: { type: ['string', 'null'], pattern: '^(\\d{1,5}x\\d{1,5}|auto)$' },
              response_format: { enum: ['url', 'b64_json', null], description: 'Default url, or b64_json for gpt-image-* models' },
              model: { type: ['string', 'null'], description: 'Accepted and left aside' },
              quality: { description: 'Accepted and left aside' },
              style: { description: 'Accepted and left aside' },
              user: { description: 'Accepted and left aside' },
              background: { description: 'Accepted and left aside' },
              moderation: { description: 'Accepted and left aside' },
              output_format: { description: 'Accepted and left aside' },
              output_compression: { description: 'Accepted and left aside' },
            },
          }),
        },
        responses: {
          200: {
            description: 'The images',
            ...json({
              type: 'object',
              required: ['created', 'data'],
              properties: {
                created: { type: 'integer' },
                data: {
                  type: 'array',
                  items: { type: 'object', properties: { b64_json: { type: 'string', contentEncoding: 'base64' }, url: { type: 'string' } } },
                },
              },
            }),
          },
          400: openAiErrorResponse('invalid_request_error: INVALID_REQUEST (param names the field) or PROMPT_REFUSED (ComfyUI refused the graph)'),
          401: errorResponse('No key, or not a valid one'),
          403: openAiErrorResponse('PROMPT_POLICY or FORBIDDEN'),
          404: openAiErrorResponse('WORKFLOW_NOT_FOUND: no workflow is marked with openai_images'),
          429: {
            description: "RATE_LIMIT_EXCEEDED (the gateway's shape), QUEUE_LIMIT or EXECUTION_BUDGET_EXCEEDED (OpenAI's shape)",
            ...json({ anyOf: [error, openAiError] }),
          },
          500: openAiErrorResponse('JOB_FAILED: the job ended in error, interrupted or cancelled'),
          504: openAiErrorResponse('RUN_TIMEOUT: the job did not end within 600 s; it runs on'),
        },
      },
    },
    '/api/gateway/backends': {
      get: {
        summary: 'Every ComfyUI backend with its health and queues (admin)',
        security: apiKeyHeader,
        responses: {
          200: {
            description: 'The backends, in configuration order',
            ...json({
              type: 'object',
              required: ['backends'],
              additionalProperties: false,
              properties: { backends: { type: 'array', items: { $ref: '#/components/schemas/Backend' } } },
            }),
          },
          401: errorResponse('No or bad key'),
          403: errorResponse('Not an admin key'),
        },
      },
    },
    '/api/gateway/webhooks/deliveries': {
      get: {
        summary: 'Webhook deliveries, newest first (admin)',
        security: apiKeyHeader,
        parameters: [
          { name: 'job_id', in: 'query', required: false, schema: { type: 'string' }, description: "One job's deliveries" },
          { name: 'state', in: 'query', required: false, schema: { enum: ['pending', 'delivered', 'failed'] } },
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
          { name: 'offset', in: 'query', required: false, schema: { type: 'integer', minimum: 0, maximum: 100_000, default: 0 } },
        ],
        responses: {
          200: {
            description: 'A page of deliveries; `has_more` says whether another page follows (they are not counted)',
            ...json({
              type: 'object',
              required: ['deliveries', 'pagination'],
              additionalProperties: false,
              properties: {
                deliveries: { type: 'array', items: { $ref: '#/components/schemas/WebhookDeliverySummary' } },
                pagination: {
                  type: 'object',
                  required: ['offset', 'limit', 'has_more'],
                  additionalProperties: false,
                  properties: { offset: { type: 'integer' }, limit: { type: 'integer' }, has_more: { type: 'boolean' } },
                },
              },
            }),
          },
          400: errorResponse('INVALID_REQUEST: an unknown state, or limit/offset out of range'),
          401: errorResponse('No or bad key'),
          403: errorResponse('Not an admin key'),
        },
      },
    },
    '/api/gateway/webhooks/deliveries/{id}': {
      get: {
        summary: 'One webhook delivery with every attempt and the event it sends (admin)',
        security: apiKeyHeader,
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,100}$' } }],
        responses: {
          200: { description: 'The delivery', ...json({ $ref: '#/components/schemas/WebhookDelivery' }) },
          401: errorResponse('No or bad key'),
          403: errorResponse('Not an admin key'),
          404: errorResponse('DELIVERY_NOT_FOUND'),
        },
      },
    },
    '/api/audit': {
      get: {
        summary: 'The audit trail (admin)',
        security: apiKeyHeader,
        parameters: [
          { name: 'since', in: 'query', required: false, schema: { type: 'number', minimum: 0 }, description: 'Unix seconds' },
          { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
        ],
        responses: {
          200: {
            description: 'Entries, oldest first',
            ...json({ type: 'object', required: ['entries'], properties: { entries: { type: 'array', items: { $ref: '#/components/schemas/AuditEntry' } } } }),
          },
        },
      },
    },
    '/login': {
      get: { summary: 'The sign-in page', responses: { 200: { description: 'HTML', content: { 'text/html': {} } } } },
      post: {
        summary: 'Sign in with a key: a session cookie',
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: { type: 'object', required: ['api_key'], properties: { api_key: { type: 'string' }, next: { type: 'string' } } } },
            'application/x-www-form-urlencoded': {
              schema: { type: 'object', required: ['api_key'], properties: { api_key: { type: 'string' }, next: { type: 'string' } } },
            },
          },
        },
        responses: {
          200: {
            description: 'Signed in (JSON)',
            ...json({
              type: 'object',
              required: ['ok', 'key_id', 'role', 'expires_at'],
              properties: { ok: { const: true }, key_id: { type: 'string' }, role: { type: 'string' }, expires_at: { type: 'number' } },
            }),
          },
          303: { description: 'Signed in (form): to `next`' },
          401: errorResponse('Bad key'),
          429: errorResponse("Over the key's rate limit (a sign-in counts as one of its requests), or too many failed authentications from this address"),
        },
      },
    },
    '/logout': {
      post: {
        summary: 'End the session',
        responses: { 200: { description: 'Signed out', ...json({ type: 'object', required: ['ok'], properties: { ok: { const: true } } }) } },
      },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics (admin, or anyone with --metrics-public)',
        security: apiKeyHeader,
        responses: { 200: { description: 'Prometheus text format', content: { 'text/plain': {} } } },
      },
    },
    '/admin': {
      get: {
        summary: 'The admin dashboard',
        security: [{ session: [] }],
        responses: {
          200: { description: 'HTML', content: { 'text/html': {} } },
          302: { description: 'To the sign-in page' },
          403: { description: 'Not an admin' },
        },
      },
    },
  },
  webhooks: {
    'job-event': {
      post: {
        summary: "A job's event, POSTed by the gateway to the job's webhook_url (needs --webhook-secret)",
        description:
          'Verify Comfy-Gate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the key\'s signing secret (GET /api/keys/{key_id}/webhook-secret)>, ' +
          "with a second v1 during a rotation's grace period: accept when one v1 matches. " +
          'A 2xx answer ends the delivery; anything else, or no answer within 10 s, is tried again with exponential backoff (docs/api.md "Webhooks").',
        parameters: [
          { name: 'Comfy-Gate-Event', in: 'header', required: true, schema: webhookEvent },
          { name: 'Comfy-Gate-Delivery', in: 'header', required: true, schema: { type: 'string' }, description: 'The delivery id, the same on every attempt' },
          { name: 'Comfy-Gate-Signature', in: 'header', required: true, schema: { type: 'string', pattern: '^t=\\d+(,v1=[0-9a-f]{64}){1,2}$' } },
        ],
        requestBody: { required: true, ...json({ $ref: '#/components/schemas/WebhookEvent' }) },
        responses: { 200: { description: 'Any 2xx: delivered' } },
      },
    },
  },
} as const;
