// The rules of docs/api.md for management requests, written independently of the gateway: which inputs are valid.
//
// Where docs/api.md does not decide (a name of spaces only, a PATCH with no field, metadata nested too
// deeply to measure), the verdict is 'either': the gateway may accept or refuse, but never answer 5xx,
// and its answer must agree with the store.

export type Verdict = 'valid' | 'invalid' | 'either';

const MAX_BODY_BYTES = 64 * 1024;
const MAX_METADATA_BYTES = 16 * 1024;
const QUOTA_FIELDS = ['max_queued', 'max_running', 'daily_execution_seconds'];
const CREATE_FIELDS = ['name', 'rate_limit', 'metadata', 'role', 'expires_at', ...QUOTA_FIELDS, 'policy', 'webhook_url'];
const UPDATE_FIELDS = [...CREATE_FIELDS, 'is_active'];

function worst(verdicts: Verdict[]): Verdict {
  if (verdicts.includes('invalid')) return 'invalid';
  return verdicts.includes('either') ? 'either' : 'valid';
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** NUL or a surrogate without its pair: text docs/api.md says no store takes, in a name or anywhere in metadata. */
// eslint-disable-next-line no-control-regex
const UNSTORABLE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function judgeName(name: unknown): Verdict {
  if (typeof name !== 'string' || name.length === 0) return 'invalid';
  const characters = [...name].length;
  if (characters > 200 || UNSTORABLE.test(name)) return 'invalid';
  // eslint-disable-next-line no-control-regex
  if (name.length > 200 || name.trim() === '' || /[\u0000-\u001f\u007f]/.test(name)) return 'either';
  return 'valid';
}

/** True when a key or string anywhere in `value` is unstorable. */
function holdsUnstorable(value: unknown): boolean {
  if (typeof value === 'string') return UNSTORABLE.test(value);
  if (typeof value !== 'object' || value === null) return false;
  return Object.entries(value).some(([key, inner]) => UNSTORABLE.test(key) || holdsUnstorable(inner));
}

function judgeMetadata(metadata: unknown): Verdict {
  if (!isObject(metadata)) return 'invalid';
  let json: string;
  try {
    json = JSON.stringify(metadata);
  } catch {
    return 'either';
  }
  if (Buffer.byteLength(json) > MAX_METADATA_BYTES) return 'invalid';
  return holdsUnstorable(metadata) ? 'invalid' : 'valid';
}

function judgeExpiry(at: unknown): Verdict {
  if (at === null) return 'valid';
  if (typeof at !== 'number') return 'invalid';
  return at >= 0 && at <= 1e11 ? 'valid' : 'either';
}

/** A job quota: a whole number from 1 to 1,000,000,000, or null for none. */
function judgeQuota(quota: unknown): Verdict {
  if (quota === null) return 'valid';
  return typeof quota === 'number' && Number.isInteger(quota) && quota >= 1 && quota <= 1_000_000_000 ? 'valid' : 'invalid';
}

const POLICY_LIMITS = ['max_width', 'max_height', 'max_batch_size', 'max_steps', 'max_frames', 'max_prompt_bytes', 'max_execution_seconds'];

/** A prompt policy: null, or an object of known fields only, each of its type (docs/api.md "Prompt policy"). */
function judgePolicy(policy: unknown): Verdict {
  if (policy === null) return 'valid';
  if (!isObject(policy)) return 'invalid';
  for (const [field, value] of Object.entries(policy)) {
    if (POLICY_LIMITS.includes(field)) {
      if (judgeQuota(value) !== 'valid' || value === null) return 'invalid';
    } else if (field === 'allow_nodes' || field === 'deny_nodes') {
      // eslint-disable-next-line no-control-regex
      const globOk = (glob: unknown): boolean => typeof glob === 'string' && glob.length >= 1 && glob.length <= 200 && !/[\u0000-\u001f\u007f]/.test(glob);
      if (!Array.isArray(value) || value.length > 200 || !value.every(globOk)) return 'invalid';
    } else if (field !== 'workflows_only' || typeof value !== 'boolean') return 'invalid';
  }
  return 'valid';
}

const FIELD_RULES: Record<string, (value: unknown) => Verdict> = {
  ...Object.fromEntries(QUOTA_FIELDS.map((field) => [field, judgeQuota])),
  policy: judgePolicy,
  // A URL's address decides (private addresses are refused): a string may go either way.
  webhook_url: (url) => (url === null ? 'valid' : typeof url === 'string' && url !== '' && url.length <= 2048 ? 'either' : 'invalid'),
  name: judgeName,
  rate_limit: (limit) => (typeof limit === 'number' && Number.isInteger(limit) && limit >= 1 && limit <= 10_000_000 ? 'valid' : 'invalid'),
  metadata: judgeMetadata,
  role: (role) => (role === 'user' || role === 'admin' ? 'valid' : 'invalid'),
  expires_at: judgeExpiry,
  is_active: (active) => (typeof active === 'boolean' ? 'valid' : 'invalid'),
};

/** The body of `POST /api/keys` or `PATCH /api/keys/{id}`, exactly as sent. */
export function judgeKeyBody(text: string, kind: 'create' | 'update'): Verdict {
  if (Buffer.byteLength(text) > MAX_BODY_BYTES) return 'invalid';
  if (text.trim() === '') return kind === 'create' ? 'valid' : 'either';
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return 'invalid';
  }
  if (body === null) return 'either';
  if (!isObject(body)) return 'invalid';
  const allowed = kind === 'create' ? CREATE_FIELDS : UPDATE_FIELDS;
  const fields = Object.keys(body);
  if (fields.some((field) => !allowed.includes(field))) return 'invalid';
  const verdicts = fields.map((field) => FIELD_RULES[field]!(body[field]));
  if (kind === 'update' && fields.length === 0) verdicts.push('either');
  return worst(verdicts);
}

/** The fields a valid body sets, with the defaults of a creation. */
export function fieldsOf(text: string, kind: 'create' | 'update'): Record<string, unknown> {
  const body = text.trim() === '' ? {} : ((JSON.parse(text) as Record<string, unknown> | null) ?? {});
  const defaults =
    kind === 'create'
      ? {
          name: 'Unnamed Key',
          rate_limit: 100,
          metadata: {},
          role: 'user',
          expires_at: null,
          is_active: true,
          ...Object.fromEntries(QUOTA_FIELDS.map((field) => [field, null])),
          policy: null,
          webhook_url: null,
        }
      : {};
  return { ...defaults, ...body };
}

/** `by` of `GET /api/usage`: absent, or `day`; any other value is refused. Several are undecided. */
export function judgeBy(values: string[]): Verdict {
  if (values.length === 0) return 'valid';
  if (values.length > 1) return 'either';
  return values[0] === 'day' ? 'valid' : 'invalid';
}

/** The verdict of a request with two parameters judged apart: refused when either is, accepted when both are. */
export function bothOf(a: Verdict, b: Verdict): Verdict {
  if (a === 'invalid' || b === 'invalid') return 'invalid';
  return a === 'valid' && b === 'valid' ? 'valid' : 'either';
}

/** `days` of `GET /api/usage`: a whole number from 1 to 365, default 30. Other spellings of a whole number are undecided. */
export function judgeDays(values: string[]): Verdict {
  if (values.length === 0) return 'valid';
  if (values.length > 1) return 'either';
  const value = values[0]!;
  if (/^[1-9][0-9]{0,2}$/.test(value)) return Number(value) <= 365 ? 'valid' : 'invalid';
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) return 'invalid';
  return Number.isInteger(number) && number >= 1 && number <= 365 ? 'either' : 'invalid';
}
