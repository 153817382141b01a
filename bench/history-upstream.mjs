// History upstream for the bench (its own process): a ComfyUI whose history holds ENTRIES entries of about ENTRY_BYTES each, in ComfyUI's entry shape.
// It serves /history (max_items, offset), /history/{id}, /queue (empty), /features, /users, /prompt (each prompt "runs" at once: its events go to
// the socket whose clientId is its client_id, and it joins the history) and /ws; every route also under /api. Usage: node bench/history-upstream.mjs
// PORT ENTRIES ENTRY_BYTES; prints "ready" once the history is filled.

import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';

/** ComfyUI keeps this many history entries at most, dropping the oldest (MAXIMUM_HISTORY_SIZE). */
const MAXIMUM_HISTORY_SIZE = 10_000;
/** The output node of every graph. */
const OUTPUT_NODE = '9';

/** A text-to-image graph whose positive prompt is padded with `padding` characters. */
function graphWith(padding) {
  return {
    3: {
      class_type: 'KSampler',
      inputs: {
        seed: 42,
        steps: 20,
        cfg: 8,
        sampler_name: 'euler',
        scheduler: 'normal',
        denoise: 1,
        model: ['4', 0],
        positive: ['6', 0],
        negative: ['7', 0],
        latent_image: ['5', 0],
      },
    },
    4: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'v1-5-pruned-emaonly.safetensors' } },
    5: { class_type: 'EmptyLatentImage', inputs: { width: 512, height: 512, batch_size: 1 } },
    6: { class_type: 'CLIPTextEncode', inputs: { text: padding, clip: ['4', 1] } },
    7: { class_type: 'CLIPTextEncode', inputs: { text: 'text, watermark', clip: ['4', 1] } },
    8: { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
    [OUTPUT_NODE]: { class_type: 'SaveImage', inputs: { filename_prefix: 'ComfyUI', images: ['8', 0] } },
  };
}

/** A completed run's history entry as ComfyUI stores it: `{prompt: [number, id, graph, extra_data, outputs_to_execute], outputs, status, meta}`. */
function historyEntry(number, promptId, graph, extraData, startedAt) {
  const image = { filename: `ComfyUI_${String(number).padStart(5, '0')}_.png`, subfolder: '', type: 'output' };
  const stamp = (type, extra = {}) => [type, { prompt_id: promptId, ...extra, timestamp: startedAt }];
  return {
    prompt: [number, promptId, graph, extraData, [OUTPUT_NODE]],
    outputs: { [OUTPUT_NODE]: { images: [image] } },
    status: {
      status_str: 'success',
      completed: true,
      // Keys in ComfyUI's order: execution.py sends {nodes, prompt_id}, and add_message appends the timestamp.
      messages: [stamp('execution_start'), ['execution_cached', { nodes: [], prompt_id: promptId, timestamp: startedAt }], stamp('execution_success')],
    },
    meta: { [OUTPUT_NODE]: { node_id: OUTPUT_NODE, display_node: OUTPUT_NODE, parent_node: null, real_node_id: OUTPUT_NODE } },
  };
}

/** The length of an entry whose graph has no padding (its numbers and ids as long as those of a real run). */
const BARE_ENTRY_BYTES = JSON.stringify(historyEntry(10_000, randomUUID(), graphWith(''), { client_id: randomBytes(16).toString('hex') }, Date.now())).length;

/** A graph, different from every other, whose history entry is about `entryBytes` long in JSON: what the bench queues. */
export function paddedGraph(entryBytes) {
  const padding = Math.max(0, entryBytes - BARE_ENTRY_BYTES);
  return graphWith(
    randomBytes(Math.ceil((padding * 3) / 4))
      .toString('base64')
      .slice(0, padding),
  );
}

/** ComfyUI's history window: `offset` < 0 with `max_items` means the newest `max_items`; otherwise `max_items` from the `offset`-th oldest. */
function windowOf(history, maxItems, offset) {
  const start = offset < 0 && maxItems !== null ? history.size - maxItems : offset;
  const out = {};
  let index = 0;
  let taken = 0;
  for (const [id, entry] of history) {
    if (maxItems !== null && taken >= maxItems) break;
    if (index++ < start) continue;
    out[id] = entry;
    taken += 1;
  }
  return out;
}

function serve(port, entries, entryBytes) {
  const history = new Map();
  const sockets = new Map();
  let number = 0;
  const remember = (promptId, entry) => {
    history.set(promptId, entry);
    if (history.size > MAXIMUM_HISTORY_SIZE) history.delete(history.keys().next().value);
  };
  const filled = Date.now();
  for (let i = 0; i < entries; i += 1) {
    const promptId = randomUUID();
    remember(promptId, historyEntry(number++, promptId, paddedGraph(entryBytes), { client_id: randomBytes(16).toString('hex') }, filled));
  }

  const json = (res, status, value) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
  const integer = (query, name) => (query.has(name) ? Number.parseInt(query.get(name), 10) : null);

  /** Answers like ComfyUI, then "runs" the prompt at once: its events to the socket of its client_id, its entry into the history. */
  function postPrompt(req, res) {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      const prompt = JSON.parse(body);
      const promptId = typeof prompt.prompt_id === 'string' ? prompt.prompt_id : randomUUID();
      const queued = number++;
      json(res, 200, { prompt_id: promptId, number: queued, node_errors: {} });
      setImmediate(() => run(queued, promptId, prompt));
    });
  }

  function run(queued, promptId, prompt) {
    const socket = sockets.get(prompt.client_id);
    const send = (type, data) => socket?.send(JSON.stringify({ type, data: { ...data, prompt_id: promptId } }));
    const startedAt = Date.now();
    const extraData = { ...prompt.extra_data, client_id: prompt.client_id };
    const entry = historyEntry(queued, promptId, prompt.prompt, extraData, startedAt);
    send('execution_start', { timestamp: startedAt });
    send('execution_cached', { nodes: [], timestamp: startedAt });
    send('executed', { node: OUTPUT_NODE, display_node: OUTPUT_NODE, output: entry.outputs[OUTPUT_NODE] });
    send('execution_success', { timestamp: Date.now() });
    remember(promptId, entry);
    send('executing', { node: null });
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://upstream');
    const path = url.pathname.replace(/^\/api(?=\/)/, '');
    const one = /^\/history\/([^/]+)$/.exec(path);
    if (req.method === 'POST' && path === '/prompt') return postPrompt(req, res);
    req.resume();
    if (req.method !== 'GET') return res.writeHead(404).end();
    if (path === '/history') return json(res, 200, windowOf(history, integer(url.searchParams, 'max_items'), integer(url.searchParams, 'offset') ?? -1));
    if (one) {
      const id = decodeURIComponent(one[1]);
      return json(res, 200, history.has(id) ? { [id]: history.get(id) } : {});
    }
    if (path === '/queue') return json(res, 200, { queue_running: [], queue_pending: [] });
    if (path === '/features') return json(res, 200, { supports_preview_metadata: true, max_upload_size: 104857600 });
    // A single-user ComfyUI: no `users` list.
    if (path === '/users') return json(res, 200, { storage: 'server', migrated: true });
    res.writeHead(404).end();
  });
  new WebSocketServer({ server, perMessageDeflate: false }).on('connection', (ws, req) => {
    const clientId = new URL(req.url, 'http://upstream').searchParams.get('clientId') ?? randomUUID();
    sockets.set(clientId, ws);
    ws.send(JSON.stringify({ type: 'status', data: { status: { exec_info: { queue_remaining: 0 } }, sid: clientId } }));
    ws.on('message', (data, isBinary) => {
      const message = isBinary ? null : JSON.parse(String(data));
      if (message?.type === 'feature_flags') ws.send(JSON.stringify({ type: 'feature_flags', data: { supports_preview_metadata: true } }));
    });
    ws.on('close', () => sockets.get(clientId) === ws && sockets.delete(clientId));
    ws.on('error', () => ws.terminate());
  });
  server.listen(port, '127.0.0.1', () => console.log('ready'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  serve(Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4]));
  process.on('SIGTERM', () => process.exit(0));
}
