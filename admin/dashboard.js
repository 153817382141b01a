// The admin dashboard: the ComfyUI backends, the webhook deliveries, every key with its usage, key management, and 30-day charts, in plain DOM (no framework, no build).

// uPlot, served by the gateway from its installed package.
import uPlot from '/admin/vendor/uplot.js';

const DAYS = 30;
/** Keys shown at a time: the dashboard asks only for one page of keys, plus the totals of all keys. */
const PAGE_KEYS = 100;
const REFRESH_MS = 60_000;
/** The backends change within seconds (a health check every 2 s): their table is reloaded more often than the rest. */
const BACKENDS_REFRESH_MS = 10_000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const LOGIN_URL = '/login?next=%2Fadmin';

const state = {
  keys: [],
  usage: { usage_stats: {}, daily: {}, daily_total: [] },
  /** The page of keys shown: `after` is the key_id it starts after (null for the first), `before` the `after` of each earlier page. */
  page: { after: null, before: [], next: null },
  /** The key_id of the key this browser is signed in with. */
  me: null,
  /** Only the latest load is drawn, so a slow answer never overwrites a newer one. */
  loadSeq: 0,
  /** After a 429, automatic refreshes wait until this time (ms). */
  pausedUntil: 0,
  timer: 0,
  backendsTimer: 0,
  /** Only the latest load of the backends is drawn. */
  backendsSeq: 0,
  /** Only the latest load of the webhook deliveries is drawn. */
  deliveriesSeq: 0,
  chartWidth: 0,
  /** The uPlot chart of execution seconds, replaced at each drawing. */
  executionPlot: null,
  /** The key the open edit or rotate dialog is about; null when the edit dialog creates a key. */
  target: null,
};

const $ = (id) => document.getElementById(id);
const nowSeconds = () => Date.now() / 1000;
const keyPath = (key) => `/api/keys/${encodeURIComponent(key.key_id)}`;
const field = (form, name) => form.elements.namedItem(name);

// ---- The JSON API ----

/** An error answer of the gateway, `{error, error_code}`. */
class ApiError extends Error {
  constructor(status, body) {
    super(body.error ?? `The gateway answered ${status}.`);
    this.code = body.error_code ?? `HTTP_${status}`;
  }
}

/** Calls the API with the session cookie (fetch adds Origin to writes); resolves the JSON answer or throws ApiError. */
async function api(method, path, body) {
  const init = { method, cache: 'no-store', headers: { accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const data = await res.json().catch(() => ({}));
  if (res.status === 401) location.assign(LOGIN_URL);
  if (res.status === 429) state.pausedUntil = Date.now() + Number(res.headers.get('retry-after') || 60) * 1000;
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

function describeError(error) {
  return error instanceof ApiError ? `${error.message} (${error.code})` : `The request failed: ${error.message}`;
}

// ---- Loading and refreshing ----

async function refresh() {
  const seq = ++state.loadSeq;
  const after = state.page.after === null ? '' : `&after=${encodeURIComponent(state.page.after)}`;
  try {
    // The same page of both lists: the keys page holds every live key of the usage page (which also has deleted keys with usage).
    const [list, usage] = await Promise.all([
      api('GET', `/api/keys?limit=${PAGE_KEYS}${after}`),
      api('GET', `/api/usage/all?days=${DAYS}&by=day&limit=${PAGE_KEYS}${after}`),
    ]);
    if (seq !== state.loadSeq) return;
    if (usage.next_cursor === null && Object.keys(usage.usage_stats).length === 0 && state.page.before.length > 0) {
      showPage(state.page.before.pop());
      return;
    }
    state.keys = list.keys.filter((key) => Object.hasOwn(usage.usage_stats, key.key_id));
    state.usage = usage;
    state.page.next = usage.next_cursor;
    renderKeys();
    renderPager();
    renderKeyChoice();
    renderUsage();
    $('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    if (seq === state.loadSeq) showMessage(describeError(error), 'error');
  }
}

/** Shows the page of keys that starts after `after`. */
function showPage(after) {
  state.page.after = after;
  refresh();
}

function renderPager() {
  const { before, next } = state.page;
  $('pager').hidden = before.length === 0 && next === null;
  $('page-previous').disabled = before.length === 0;
  $('page-next').disabled = next === null;
  $('page-info').textContent = `Page ${before.length + 1}`;
}

/** Re-fetches the keys every 60 s and the backends every 5 s while the tab is visible, unless the gateway asked to wait (429). */
function scheduleRefresh() {
  clearInterval(state.timer);
  clearInterval(state.backendsTimer);
  if (document.hidden) return;
  state.timer = setInterval(() => Date.now() >= state.pausedUntil && refresh(), REFRESH_MS);
  state.backendsTimer = setInterval(() => {
    if (Date.now() < state.pausedUntil) return;
    refreshBackends();
    refreshDeliveries();
  }, BACKENDS_REFRESH_MS);
}

let messageTimer = 0;

/** Shows a message above the page; information fades after a while, errors stay until dismissed. */
function showMessage(text, kind = 'info') {
  clearTimeout(messageTimer);
  $('message-text').textContent = text;
  $('message').className = `message ${kind}`;
  $('message').hidden = false;
  if (kind === 'info') messageTimer = setTimeout(() => ($('message').hidden = true), 6000);
}

// ---- Formatting ----

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const compact = new Intl.NumberFormat(undefined, { notation: 'compact' });
const UNITS = [
  ['year', 31_536_000],
  ['month', 2_592_000],
  ['week', 604_800],
  ['day', 86_400],
  ['hour', 3_600],
  ['minute', 60],
];

const formatNumber = (n) => n.toLocaleString();
const plural = (n, word) => `${formatNumber(n)} ${word}${n === 1 ? '' : 's'}`;
const fullDate = (seconds) => new Date(seconds * 1000).toLocaleString();
const shortDay = (day) => new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
const longDay = (day) =>
  new Date(`${day}T00:00:00Z`).toLocaleDateString(undefined, { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });

function relativeTime(seconds) {
  const diff = seconds - nowSeconds();
  const unit = UNITS.find(([, size]) => Math.abs(diff) >= size);
  if (unit) return relative.format(Math.trunc(diff / unit[1]), unit[0]);
  return diff < 0 ? 'just now' : 'in under a minute';
}

function formatDuration(seconds) {
  return seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(1)} s`;
}

/** Seconds to a tenth, with the locale's grouping: `3,600.5`. */
const formatSeconds = (seconds) => seconds.toLocaleString(undefined, { maximumFractionDigits: 1 });

/** A Unix time as the value of `<input type="datetime-local">`, in the browser's time zone. */
function toLocalInput(seconds) {
  if (seconds === null) return '';
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The job quota fields of a key, as the form and the API name them. */
const QUOTA_FIELDS = ['max_queued', 'max_running', 'daily_execution_seconds'];

/** A quota input's value to send: a number, or null (no limit) when empty. */
const quotaFrom = (value) => (value.trim() === '' ? null : Number(value));

/** The policy textarea's value to send: null when empty, else its JSON (the gateway checks it). Throws a SyntaxError naming the problem. */
function policyFrom(value) {
  if (value.trim() === '') return null;
  try {
    return JSON.parse(value);
  } catch (error) {
    throw new SyntaxError(`the prompt policy is not JSON (${error.message})`);
  }
}

/** The expiry to send: unchanged when the input still shows the key's own (seconds are not shown), else the input's time. */
function expiryFrom(value, key) {
  if (key && value === toLocalInput(key.expires_at)) return key.expires_at;
  return value ? Math.floor(new Date(value).getTime() / 1000) : null;
}

// ---- DOM helpers ----

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  node.append(...children);
  return node;
}

function timeEl(seconds, text) {
  return el('time', { datetime: new Date(seconds * 1000).toISOString(), title: fullDate(seconds) }, text);
}

// ---- The backends table ----

/** What each state of a backend means, for its badge's tooltip. */
const BACKEND_STATES = {
  starting: 'It has not answered a health check yet.',
  up: 'Its last health check answered.',
  unreachable: 'Its health checks fail; not yet confirmed down.',
  down: 'Confirmed down: its queued jobs were placed on other backends, its running jobs ended as errors.',
};

async function refreshBackends() {
  const seq = ++state.backendsSeq;
  try {
    const { backends } = await api('GET', '/api/gateway/backends');
    if (seq !== state.backendsSeq) return;
    $('backends').tBodies[0].replaceChildren(...backends.map(backendRow));
    const up = backends.filter((backend) => backend.state === 'up').length;
    $('backends-summary').textContent = `${formatNumber(up)} of ${plural(backends.length, 'backend')} up`;
    $('backends-error').hidden = true;
  } catch (error) {
    if (seq !== state.backendsSeq) return;
    $('backends-error').textContent = `The backends could not be loaded: ${describeError(error)}`;
    $('backends-error').hidden = false;
  }
}

function backendRow(backend) {
  const none = () => el('span', { class: 'muted' }, '—');
  return el(
    'tr',
    { 'data-backend': backend.name },
    el('td', { 'data-label': 'Name', class: 'col-name' }, el('span', { class: 'backend-name' }, backend.name), weightNote(backend)),
    el('td', { 'data-label': 'URL', class: 'col-url' }, el('code', {}, backend.url)),
    el(
      'td',
      { 'data-label': 'State', class: 'col-state' },
      el('span', { class: `state ${backend.state}`, title: BACKEND_STATES[backend.state] ?? '' }, backend.state),
      backend.events === 'connected' ? '' : el('small', { class: 'note' }, 'events disconnected'),
    ),
    el('td', { 'data-label': 'Since', class: 'col-since' }, timeEl(backend.since, relativeTime(backend.since))),
    el('td', { 'data-label': 'Jobs in flight', class: 'col-jobs num' }, formatNumber(backend.jobs_in_flight)),
    el('td', { 'data-label': 'ComfyUI queue', class: 'col-queue num' }, backend.queue_remaining === null ? none() : formatNumber(backend.queue_remaining)),
    el('td', { 'data-label': 'Last error', class: 'col-error' }, backend.last_error ?? none()),
    el('td', { 'data-label': 'Child process', class: 'col-child' }, backend.child ?? none()),
  );
}

function weightNote(backend) {
  return backend.weight === 1 ? '' : el('small', { class: 'note' }, `weight ${formatNumber(backend.weight)}`);
}

// ---- The webhook deliveries table ----

/** Deliveries shown at once, newest first. */
const DELIVERIES_SHOWN = 20;

/** What each state of a delivery means, for its badge's tooltip. */
const DELIVERY_STATES = {
  pending: 'Not delivered yet: it is tried again at the time shown.',
  delivered: 'The receiver answered with a 2xx status.',
  failed: 'Given up: no 2xx answer within 24 hours of retries.',
};

async function refreshDeliveries() {
  const seq = ++state.deliveriesSeq;
  const filter = $('deliveries-state').value;
  try {
    const query = new URLSearchParams({ limit: String(DELIVERIES_SHOWN), ...(filter ? { state: filter } : {}) });
    const { deliveries } = await api('GET', `/api/gateway/webhooks/deliveries?${query}`);
    if (seq !== state.deliveriesSeq) return;
    $('deliveries').tBodies[0].replaceChildren(...deliveries.map(deliveryRow));
    $('deliveries-empty').hidden = deliveries.length > 0;
    $('deliveries-error').hidden = true;
  } catch (error) {
    if (seq !== state.deliveriesSeq) return;
    $('deliveries-error').textContent = `The webhook deliveries could not be loaded: ${describeError(error)}`;
    $('deliveries-error').hidden = false;
  }
}

/** An attempt in a few words: the receiver's status, or why there was none, and how long it took. */
function attemptText(attempt) {
  const outcome = attempt.status === null ? attempt.error : `HTTP ${attempt.status}`;
  return `${outcome} in ${formatNumber(Math.round(attempt.duration_ms))} ms`;
}

function deliveryRow(delivery) {
  const last = delivery.last_attempt;
  const next =
    delivery.state === 'pending' && delivery.next_attempt_at !== null
      ? el('small', { class: 'note' }, 'next try ', timeEl(delivery.next_attempt_at, relativeTime(delivery.next_attempt_at)))
      : '';
  const attempts = el('details', { class: 'attempts', 'data-delivery-id': delivery.id }, el('summary', {}, formatNumber(delivery.attempt_count)));
  attempts.addEventListener('toggle', () => attempts.open && showAttempts(attempts, delivery.id), { once: true });
  return el(
    'tr',
    { 'data-delivery-id': delivery.id },
    el('td', { 'data-label': 'Event', class: 'col-event' }, el('code', {}, delivery.event)),
    el('td', { 'data-label': 'Job', class: 'col-job' }, el('code', { title: `key ${delivery.key_id}` }, delivery.job_id)),
    el('td', { 'data-label': 'URL', class: 'col-url' }, el('code', {}, delivery.url)),
    el(
      'td',
      { 'data-label': 'State', class: 'col-state' },
      el('span', { class: `state ${delivery.state}`, title: DELIVERY_STATES[delivery.state] ?? '' }, delivery.state),
      next,
    ),
    el('td', { 'data-label': 'Attempts', class: 'col-attempts num' }, attempts),
    el(
      'td',
      { 'data-label': 'Last attempt', class: 'col-last' },
      ...(last ? [timeEl(last.at, relativeTime(last.at)), el('small', { class: 'note' }, attemptText(last))] : [el('span', { class: 'muted' }, '—')]),
    ),
    el('td', { 'data-label': 'Created', class: 'col-created' }, timeEl(delivery.created_at, relativeTime(delivery.created_at))),
  );
}

/** Lists every attempt of a delivery under its count, read when it is first opened. */
async function showAttempts(details, id) {
  try {
    const { attempts } = await api('GET', `/api/gateway/webhooks/deliveries/${encodeURIComponent(id)}`);
    details.append(
      el('ol', { class: 'attempt-list' }, ...attempts.map((attempt) => el('li', {}, timeEl(attempt.at, fullDate(attempt.at)), ` ${attemptText(attempt)}`))),
    );
  } catch (error) {
    details.append(el('p', { class: 'card-error' }, describeError(error)));
  }
}

// ---- The keys table ----

function statusOf(key) {
  if (!key.is_active) return 'disabled';
  if (key.expires_at !== null && key.expires_at <= nowSeconds()) return 'expired';
  return 'active';
}

function renderKeys() {
  const focused = document.activeElement?.closest('[data-key-id] [data-action]');
  const refocus = focused && `[data-key-id="${CSS.escape(focused.closest('[data-key-id]').dataset.keyId)}"] [data-action="${focused.dataset.action}"]`;
  $('keys').tBodies[0].replaceChildren(...state.keys.map(keyRow));
  $('no-keys').hidden = state.keys.length > 0;
  if (refocus) document.querySelector(refocus)?.focus();
}

function keyRow(key) {
  const stats = state.usage.usage_stats[key.key_id] ?? { requests_last_24h: 0, total_requests: 0 };
  const status = statusOf(key);
  return el(
    'tr',
    { 'data-key-id': key.key_id },
    el(
      'td',
      { 'data-label': 'Name', class: 'col-name' },
      el('span', { class: 'key-name' }, key.name),
      key.key_id === state.me ? el('span', { class: 'badge you', title: 'You are signed in with this key' }, 'you') : '',
    ),
    el('td', { 'data-label': 'Key', class: 'col-prefix' }, el('code', {}, key.key_prefix ? `${key.key_prefix}…` : '—'), graceNote(key)),
    el('td', { 'data-label': 'Role', class: 'col-role' }, el('span', { class: `badge role-${key.role}` }, key.role)),
    el('td', { 'data-label': 'Status', class: 'col-status' }, el('span', { class: `status ${status}` }, status), expiryNote(key)),
    el('td', { 'data-label': 'Rate limit', class: 'col-limit num' }, `${formatNumber(key.rate_limit)}/h`, ...limitNotes(key)),
    el(
      'td',
      { 'data-label': 'Last used', class: 'col-last' },
      key.last_used === null ? el('span', { class: 'muted' }, 'never') : timeEl(key.last_used, relativeTime(key.last_used)),
    ),
    el('td', { 'data-label': '24 h', class: 'col-24h num' }, formatNumber(stats.requests_last_24h)),
    el('td', { 'data-label': '30 days', class: 'col-30d num' }, formatNumber(stats.total_requests)),
    el('td', { class: 'col-actions' }, actionButtons(key)),
  );
}

function expiryNote(key) {
  if (key.expires_at === null) return '';
  const verb = key.expires_at <= nowSeconds() ? 'expired' : 'expires';
  return el('small', { class: 'note' }, `${verb} `, timeEl(key.expires_at, relativeTime(key.expires_at)));
}

/** The key's job quotas in short, under its rate limit, each unbroken (lines break between them), and a mark when it has a prompt policy. */
function limitNotes(key) {
  const parts = [
    key.max_queued === null ? null : `${formatNumber(key.max_queued)}\u00a0queued`,
    key.max_running === null ? null : `${formatNumber(key.max_running)}\u00a0running`,
    key.daily_execution_seconds === null ? null : `${formatNumber(key.daily_execution_seconds)}\u00a0s/day`,
  ].filter((part) => part !== null);
  const notes = [];
  if (parts.length > 0) {
    notes.push(
      el(
        'small',
        { class: 'note quotas', title: 'Job quotas: jobs held, queued or running; jobs running; ComfyUI execution seconds per UTC day' },
        `≤\u00a0${parts.join(' · ')}`,
      ),
    );
  }
  if (key.policy !== null) notes.push(el('small', { class: 'note policy', title: `Prompt policy: ${JSON.stringify(key.policy)}` }, 'prompt policy'));
  if (key.webhook_url !== null) notes.push(el('small', { class: 'note webhook', title: `Webhook: ${key.webhook_url}` }, 'webhook'));
  return notes;
}

function graceNote(key) {
  const until = key.previous_key_valid_until;
  if (until === null || until <= nowSeconds()) return '';
  return el('small', { class: 'note' }, 'old secret ends ', timeEl(until, relativeTime(until)));
}

function actionButtons(key) {
  const button = (action, text, extra = {}) => el('button', { type: 'button', 'data-action': action, 'aria-label': `${text} ${key.name}`, ...extra }, text);
  return el(
    'div',
    { class: 'actions' },
    button('edit', 'Edit'),
    button('toggle', key.is_active ? 'Disable' : 'Enable'),
    button('rotate', 'Rotate'),
    button('delete', 'Delete', { class: 'danger' }),
  );
}

// ---- Usage: totals and charts ----

function renderKeyChoice() {
  const select = $('chart-key');
  const chosen = select.value;
  const label = (key) => (key.key_prefix ? `${key.name} · ${key.key_prefix}…` : key.name);
  select.replaceChildren(el('option', { value: 'all' }, 'All keys'), ...state.keys.map((key) => el('option', { value: key.key_id }, label(key))));
  select.value = state.keys.some((key) => key.key_id === chosen) ? chosen : 'all';
}

function chosenUsage() {
  const id = $('chart-key').value;
  if (id === 'all') return { name: 'all keys', series: state.usage.daily_total ?? [] };
  const key = state.keys.find((k) => k.key_id === id);
  return { name: key ? `key “${key.name}”` : 'this key', series: state.usage.daily?.[id] ?? [] };
}

function renderUsage() {
  const { name, series } = chosenUsage();
  const sum = (measure) => series.reduce((total, point) => total + point[measure], 0);
  const [requests, successes, failures, limited] = ['requests', 'successes', 'failures', 'rate_limited'].map(sum);
  renderTotals([
    ['Requests', formatNumber(requests)],
    ['Succeeded', formatNumber(successes)],
    ['Failed', formatNumber(failures)],
    ['Rate-limited (429)', formatNumber(limited)],
    ['Average duration', requests > 0 ? formatDuration(sum('duration') / requests) : '—'],
    ['Prompts', formatNumber(sum('prompts'))],
    ['Jobs run', formatNumber(sum('prompts_run'))],
    ['Execution', `${formatSeconds(sum('execution_seconds'))} s`],
    ['Outputs', formatNumber(sum('outputs'))],
  ]);
  state.chartWidth = $('chart-requests').clientWidth;
  $('chart-requests').replaceChildren(
    barChart({
      series,
      width: state.chartWidth,
      layers: [
        { field: 'successes', label: 'Succeeded', cls: 'ok' },
        { field: 'failures', label: 'Failed', cls: 'bad' },
      ],
      label: `Requests per day over the last ${DAYS} days for ${name}: ${plural(requests, 'request')}, ${formatNumber(successes)} succeeded, ${formatNumber(failures)} failed.${busiest(series, 'requests')}`,
      describe: (p) => `${longDay(p.date)}: ${plural(p.requests, 'request')} (${formatNumber(p.successes)} succeeded, ${formatNumber(p.failures)} failed)`,
    }),
  );
  $('chart-limited').replaceChildren(
    barChart({
      series,
      width: $('chart-limited').clientWidth,
      layers: [{ field: 'rate_limited', label: 'Refused with 429', cls: 'limited' }],
      label: `Rate-limited requests per day over the last ${DAYS} days for ${name}: ${plural(limited, 'request')} refused with 429.${busiest(series, 'rate_limited')}`,
      describe: (p) => `${longDay(p.date)}: ${plural(p.rate_limited, 'request')} refused with 429`,
    }),
  );
  renderExecution();
}

/** Colours of the execution chart's lines, one per key; the other keys together get OTHERS_COLOUR. */
const KEY_COLOURS = ['#3a63e0', '#2e9c65', '#d3871a', '#9b59b6', '#d4434c', '#17a2b8', '#8d6e63', '#e83e8c'];
const OTHERS_COLOUR = '#8a929c';

/** A day's job figures: the measures the execution chart and its table show. */
const JOB_MEASURES = ['prompts_run', 'execution_seconds', 'outputs'];

/**
 * The lines of the execution chart: the chosen key's, or with all keys chosen, the page's busiest keys
 * (one line each, as many as there are colours) and every other key together (all keys less those).
 */
function executionLines() {
  const chosen = $('chart-key').value;
  const daily = state.usage.daily ?? {};
  const nameOf = (keyId) => state.keys.find((key) => key.key_id === keyId)?.name ?? `deleted key ${keyId}`;
  if (chosen !== 'all') return [{ label: nameOf(chosen), colour: KEY_COLOURS[0], points: daily[chosen] ?? [] }];
  const executed = (points) => points.reduce((total, point) => total + point.execution_seconds, 0);
  const busiest = Object.entries(daily)
    .filter(([, points]) => executed(points) > 0)
    .sort(([a, pa], [b, pb]) => executed(pb) - executed(pa) || (a < b ? -1 : 1))
    .slice(0, KEY_COLOURS.length);
  const lines = busiest.map(([keyId, points], i) => ({ label: nameOf(keyId), colour: KEY_COLOURS[i], points }));
  // Rounded to milliseconds, so that what is left of a subtraction of sums is a true zero.
  const rest = (state.usage.daily_total ?? []).map((point, day) => {
    const other = { date: point.date };
    for (const measure of JOB_MEASURES)
      other[measure] = Math.round((point[measure] - lines.reduce((t, line) => t + line.points[day][measure], 0)) * 1000) / 1000;
    return other;
  });
  if (rest.some((point) => point.prompts_run > 0 || point.execution_seconds > 0)) lines.push({ label: 'Other keys', colour: OTHERS_COLOUR, points: rest });
  return lines;
}

/** Draws execution seconds per day, a line per key (uPlot, on a canvas), and fills the table of the same figures. */
function renderExecution() {
  const box = $('chart-execution');
  const lines = executionLines();
  const days = (lines[0]?.points ?? state.usage.daily_total ?? []).map((point) => point.date);
  const total = lines.reduce((t, line) => t + line.points.reduce((s, point) => s + point.execution_seconds, 0), 0);
  box.setAttribute(
    'aria-label',
    `Execution seconds per day over the last ${DAYS} days: ${formatSeconds(total)} s in all${lines.map((line) => `; ${line.label}`).join('')}. The table below gives each figure.`,
  );
  const theme = getComputedStyle(document.documentElement);
  const axis = {
    stroke: theme.getPropertyValue('--muted').trim(),
    grid: { stroke: theme.getPropertyValue('--border').trim(), width: 1 },
    ticks: { stroke: theme.getPropertyValue('--border').trim(), width: 1 },
  };
  state.executionPlot?.destroy();
  state.executionPlot = new uPlot(
    {
      width: Math.max(box.clientWidth, 200),
      height: 240,
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), 'Etc/UTC'),
      scales: { x: { time: true }, y: { range: (self, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      series: [
        { label: 'Day', value: (self, seconds) => (seconds === null ? '—' : longDay(new Date(seconds * 1000).toISOString().slice(0, 10))) },
        ...lines.map((line) => ({
          label: line.label,
          stroke: line.colour,
          width: 2,
          points: { show: true, size: 6 },
          value: (self, value) => (value === null ? '—' : `${formatSeconds(value)} s`),
        })),
      ],
      axes: [axis, { ...axis, label: 'Seconds', values: (self, ticks) => ticks.map((tick) => compact.format(tick)) }],
    },
    [days.map((day) => Date.parse(`${day}T00:00:00Z`) / 1000), ...lines.map((line) => line.points.map((point) => point.execution_seconds))],
    box,
  );
  renderExecutionTable(lines);
}

/** One row per day and line that ran a job, newest day first. */
function renderExecutionTable(lines) {
  const rows = [];
  for (const line of lines)
    for (const point of line.points)
      if (point.prompts_run > 0 || point.execution_seconds > 0)
        rows.push(
          el(
            'tr',
            { 'data-date': point.date },
            el('td', { 'data-label': 'Day (UTC)' }, point.date),
            el('td', { 'data-label': 'Key', class: 'key-name' }, line.label),
            el('td', { 'data-label': 'Jobs run', class: 'num' }, formatNumber(point.prompts_run)),
            el('td', { 'data-label': 'Execution (s)', class: 'num' }, formatSeconds(point.execution_seconds)),
            el('td', { 'data-label': 'Outputs', class: 'num' }, formatNumber(point.outputs)),
          ),
        );
  rows.sort((a, b) => (a.dataset.date < b.dataset.date ? 1 : a.dataset.date > b.dataset.date ? -1 : 0));
  $('execution-table').tBodies[0].replaceChildren(...rows);
  $('no-execution').hidden = rows.length > 0;
}

function renderTotals(entries) {
  $('totals').replaceChildren(...entries.map(([label, value]) => el('div', { class: 'total' }, el('dt', {}, label), el('dd', {}, value))));
}

function busiest(series, name) {
  const top = series.reduce((best, point) => (point[name] > (best?.[name] ?? 0) ? point : best), null);
  return top ? ` Busiest day: ${longDay(top.date)}, ${formatNumber(top[name])}.` : '';
}

/** Whole tick values from 0 to at least `max` (and 5): steps of 1, 2 or 5 times a power of ten, at most five of them. */
function niceTicks(max) {
  const rough = Math.max(max, 5) / 5;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  const count = Math.ceil(Math.max(max, 5) / step);
  return Array.from({ length: count + 1 }, (_, i) => i * step);
}

/**
 * A bar chart of a daily series as an SVG element: one column per day with the layers stacked, a `<title>`
 * tooltip per day, axes with labels, and a legend.
 */
function barChart({ series, width, layers, label, describe }) {
  const margin = { top: 32, right: 22, bottom: 44, left: 56 };
  const height = 240;
  const plotWidth = Math.max(width - margin.left - margin.right, 40);
  const plotHeight = height - margin.top - margin.bottom;
  const totalOf = (point) => layers.reduce((sum, layer) => sum + point[layer.field], 0);
  const ticks = niceTicks(Math.max(0, ...series.map(totalOf)));
  const top = ticks[ticks.length - 1];
  const frame = {
    margin,
    width: plotWidth + margin.left + margin.right,
    height,
    plotWidth,
    plotHeight,
    step: plotWidth / Math.max(series.length, 1),
    y: (value) => round(margin.top + plotHeight - (value / top) * plotHeight),
  };
  return svg(
    'svg',
    { class: 'chart', width: frame.width, height, viewBox: `0 0 ${frame.width} ${height}`, role: 'img', 'aria-label': label },
    ...yAxis(frame, ticks),
    ...series.map((point, index) => dayColumn(frame, point, index, layers, describe(point))),
    ...xAxis(frame, series),
    legend(frame, layers),
  );
}

const round = (n) => Math.round(n * 10) / 10;

function yAxis({ margin, width, plotHeight, y }, ticks) {
  const lines = ticks.map((tick) =>
    svg(
      'g',
      {},
      svg('line', { class: tick === 0 ? 'baseline' : 'grid', x1: margin.left, x2: width - margin.right, y1: y(tick), y2: y(tick) }),
      svg('text', { class: 'tick-y', x: margin.left - 6, y: y(tick) }, compact.format(tick)),
    ),
  );
  const middle = round(margin.top + plotHeight / 2);
  return [...lines, svg('text', { class: 'axis-title', transform: `translate(12 ${middle}) rotate(-90)` }, 'Requests')];
}

function xAxis({ margin, step, plotWidth, plotHeight, height }, series) {
  const every = Math.max(1, Math.ceil(64 / step));
  const labels = series.flatMap((point, index) =>
    (series.length - 1 - index) % every === 0
      ? [svg('text', { class: 'tick-x', x: round(margin.left + (index + 0.5) * step), y: margin.top + plotHeight + 16 }, shortDay(point.date))]
      : [],
  );
  return [...labels, svg('text', { class: 'axis-title', x: round(margin.left + plotWidth / 2), y: height - 6 }, 'Day (UTC)')];
}

function dayColumn({ margin, step, plotHeight, y }, point, index, layers, tooltip) {
  const x = margin.left + index * step;
  const gap = Math.min(Math.max(step * 0.2, 1), 6);
  const column = svg(
    'g',
    { class: 'day', 'data-date': point.date },
    svg('title', {}, tooltip),
    svg('rect', { class: 'hit', x: round(x), y: margin.top, width: round(step), height: plotHeight }),
  );
  let base = 0;
  for (const layer of layers) {
    const value = point[layer.field];
    if (value > 0)
      column.append(
        svg('rect', {
          class: `bar ${layer.cls}`,
          x: round(x + gap / 2),
          y: y(base + value),
          width: round(step - gap),
          height: round(y(base) - y(base + value)),
        }),
      );
    base += value;
  }
  return column;
}

function legend({ margin }, layers) {
  let x = margin.left;
  const items = layers.map((layer) => {
    const item = svg('g', {}, svg('rect', { class: layer.cls, x, y: 6, width: 12, height: 12, rx: 2 }), svg('text', { x: x + 18, y: 12 }, layer.label));
    x += 18 + layer.label.length * 7 + 20;
    return item;
  });
  return svg('g', { class: 'legend' }, ...items);
}

// ---- Dialogs and changes ----

function openDialog(dialog) {
  const error = dialog.querySelector('.dialog-error');
  if (error) error.hidden = true;
  dialog.showModal();
}

/** Runs a dialog's request: on success closes the dialog, runs the follow-up the request returned, and refreshes; on failure says why inside the dialog. */
async function inDialog(dialog, work) {
  const submit = dialog.querySelector('[type=submit]');
  submit.disabled = true;
  try {
    const followUp = await work();
    dialog.close();
    followUp();
    refresh();
  } catch (error) {
    const box = dialog.querySelector('.dialog-error');
    box.textContent = describeError(error);
    box.hidden = false;
  } finally {
    submit.disabled = false;
  }
}

function openKeyForm(key) {
  state.target = key;
  const form = $('key-form');
  form.reset();
  $('key-dialog-title').textContent = key ? `Edit “${key.name}”` : 'New key';
  $('key-submit').textContent = key ? 'Save changes' : 'Create key';
  if (key) {
    field(form, 'name').value = key.name;
    field(form, 'rate_limit').value = String(key.rate_limit);
    field(form, 'role').value = key.role;
    field(form, 'expires_at').value = toLocalInput(key.expires_at);
    for (const name of QUOTA_FIELDS) field(form, name).value = key[name] === null ? '' : String(key[name]);
    field(form, 'policy').value = key.policy === null ? '' : JSON.stringify(key.policy, null, 2);
    field(form, 'webhook_url').value = key.webhook_url ?? '';
  }
  forgetWebhookSecret();
  $('webhook-secret-row').hidden = !key;
  openDialog($('key-dialog'));
}

/** Shows the signing secret of the edited key's webhook deliveries (GET /api/keys/{id}/webhook-secret: the read is audited). */
async function showWebhookSecret() {
  const box = $('key-dialog').querySelector('.dialog-error');
  try {
    const { webhook_secret: secret } = await api('GET', `${keyPath(state.target)}/webhook-secret`);
    $('webhook-secret-value').textContent = secret;
    $('webhook-secret-value').parentElement.hidden = false;
    $('show-webhook-secret').hidden = true;
  } catch (error) {
    box.textContent = describeError(error);
    box.hidden = false;
  }
}

/** Forgets the shown signing secret (the key dialog opened again, or closed). */
function forgetWebhookSecret() {
  $('webhook-secret-value').textContent = '';
  $('webhook-secret-value').parentElement.hidden = true;
  $('show-webhook-secret').hidden = false;
}

async function submitKeyForm(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const key = state.target;
  let policy;
  try {
    policy = policyFrom(field(form, 'policy').value);
  } catch (error) {
    const box = $('key-dialog').querySelector('.dialog-error');
    box.textContent = `Not saved: ${error.message}.`;
    box.hidden = false;
    return;
  }
  const body = {
    name: field(form, 'name').value.trim(),
    rate_limit: Number(field(form, 'rate_limit').value),
    role: field(form, 'role').value,
    expires_at: expiryFrom(field(form, 'expires_at').value, key),
    ...Object.fromEntries(QUOTA_FIELDS.map((name) => [name, quotaFrom(field(form, name).value)])),
    policy,
    webhook_url: field(form, 'webhook_url').value.trim() || null,
  };
  if (key?.key_id === state.me && body.role !== 'admin') {
    const sure = await confirmAction({
      title: 'Make your own key a user key?',
      text: 'You are signed in with this key. As a user key it can no longer open this dashboard.',
      action: 'Make it a user key',
    });
    if (!sure) return;
  }
  await inDialog($('key-dialog'), async () => {
    if (!key) {
      const created = await api('POST', '/api/keys', body);
      return () => showSecret(created.api_key, `New key “${created.name}”:`);
    }
    await api('PATCH', keyPath(key), body);
    return () => showMessage(`Saved “${body.name}”.`);
  });
}

function openRotate(key) {
  state.target = key;
  $('rotate-form').reset();
  $('rotate-name').textContent = key.name;
  openDialog($('rotate-dialog'));
}

async function submitRotate(event) {
  event.preventDefault();
  const key = state.target;
  const grace = Number(field(event.currentTarget, 'grace_seconds').value);
  await inDialog($('rotate-dialog'), async () => {
    const answer = await api('POST', `${keyPath(key)}/rotate`, { grace_seconds: grace });
    const old = answer.previous_key_valid_until ? `the old one works until ${fullDate(answer.previous_key_valid_until)}` : 'the old one no longer works';
    return () => showSecret(answer.api_key, `New secret for “${key.name}” (${old}):`);
  });
}

function showSecret(secret, caption) {
  $('secret-for').textContent = caption;
  $('secret-value').textContent = secret;
  $('copy-status').textContent = '';
  openDialog($('secret-dialog'));
}

/** Forgets the secret as soon as its dialog closes. */
function forgetSecret() {
  $('secret-value').textContent = '';
  $('copy-status').textContent = '';
  getSelection()?.removeAllRanges();
}

async function copySecret() {
  const code = $('secret-value');
  try {
    await navigator.clipboard.writeText(code.textContent);
    $('copy-status').textContent = 'Copied to the clipboard.';
  } catch {
    getSelection().selectAllChildren(code);
    $('copy-status').textContent = 'Selected: press Ctrl+C (⌘C on a Mac) to copy it.';
  }
}

/** Asks in the confirmation dialog; resolves true when the person confirms. */
function confirmAction({ title, text, action }) {
  const dialog = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = action;
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true }));
}

/** Makes a change from the table, says how it went, and reloads. */
async function change(work, done) {
  try {
    await work();
    showMessage(done);
  } catch (error) {
    showMessage(describeError(error), 'error');
  }
  await refresh();
}

async function toggleKey(key) {
  const active = !key.is_active;
  if (!active && key.key_id === state.me) {
    const sure = await confirmAction({
      title: 'Disable your own key?',
      text: 'You are signed in with this key. Disabling it signs you out, and only another admin key can enable it again.',
      action: 'Disable',
    });
    if (!sure) return;
  }
  await change(() => api('PATCH', keyPath(key), { is_active: active }), `${active ? 'Enabled' : 'Disabled'} “${key.name}”.`);
}

async function deleteKey(key) {
  const own = key.key_id === state.me ? ' You are signed in with this key: you will be signed out.' : '';
  const sure = await confirmAction({
    title: `Delete “${key.name}”?`,
    text: `Anything using this key gets 401 from now on. This cannot be undone.${own}`,
    action: 'Delete key',
  });
  if (sure) await change(() => api('DELETE', keyPath(key)), `Deleted “${key.name}”.`);
}

const ACTIONS = { edit: openKeyForm, toggle: toggleKey, rotate: openRotate, delete: deleteKey };

function onTableClick(event) {
  const button = event.target.closest('button[data-action]');
  const row = button?.closest('[data-key-id]');
  const key = row && state.keys.find((k) => k.key_id === row.dataset.keyId);
  if (key) ACTIONS[button.dataset.action](key);
}

// ---- Start ----

function start() {
  $('refresh').addEventListener('click', refresh);
  $('refresh').addEventListener('click', refreshBackends);
  $('refresh').addEventListener('click', refreshDeliveries);
  $('deliveries-state').addEventListener('change', refreshDeliveries);
  $('page-next').addEventListener('click', () => {
    state.page.before.push(state.page.after);
    showPage(state.page.next);
  });
  $('page-previous').addEventListener('click', () => showPage(state.page.before.pop() ?? null));
  $('new-key').addEventListener('click', () => openKeyForm(null));
  $('keys').addEventListener('click', onTableClick);
  $('chart-key').addEventListener('change', renderUsage);
  $('key-form').addEventListener('submit', submitKeyForm);
  $('rotate-form').addEventListener('submit', submitRotate);
  $('copy-secret').addEventListener('click', copySecret);
  $('secret-dialog').addEventListener('close', forgetSecret);
  $('show-webhook-secret').addEventListener('click', showWebhookSecret);
  $('key-dialog').addEventListener('close', forgetWebhookSecret);
  $('message-close').addEventListener('click', () => ($('message').hidden = true));
  document.addEventListener('click', (event) => event.target.closest('[data-close]')?.closest('dialog').close());
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && Date.now() >= state.pausedUntil) {
      refresh();
      refreshBackends();
      refreshDeliveries();
    }
    scheduleRefresh();
  });
  new ResizeObserver(() => requestAnimationFrame(() => $('chart-requests').clientWidth !== state.chartWidth && renderUsage())).observe($('chart-requests'));
  $('expiry-hint').textContent = `In your time zone (${Intl.DateTimeFormat().resolvedOptions().timeZone}). Leave empty for never.`;
  api('GET', '/api/usage?days=1').then(
    (own) => {
      state.me = own.key_id;
      renderKeys();
    },
    (error) => showMessage(describeError(error), 'error'),
  );
  refresh();
  refreshBackends();
  refreshDeliveries();
  scheduleRefresh();
}

start();
