// Fake ComfyUI server (HTTP routes, /view, streaming uploads, /ws events) on 127.0.0.1 for comfy-gate tests, modelled on ComfyUI's server.py.
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, type BigIntStats } from 'node:fs';
import { mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import { isLosslessNumber, LosslessNumber, parse as parseLossless } from 'lossless-json';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { HEALTH_CHECK_USER_AGENT } from '../../src/backends/build-backend.js';

export interface FakeComfyUIOptions {
  /** `--multi-user`: userdata/settings per `Comfy-User` header, which must name a key of `users`. */
  multiUser?: boolean;
  /** `--preview-method`: one binary preview frame per sampler node. */
  previewFrames?: boolean;
  /** One progress text frame (binary type 3) per sampler node, broadcast to every socket as ComfyUI's core callers do. */
  progressText?: boolean;
  /**
   * One binary frame of a type ComfyUI does not define (100, as a custom node's `send_sync` of bytes makes), naming no
   * prompt, broadcast to every socket (no sid) per sampler node.
   */
  customBinaryFrames?: boolean;
  /** Delay between execution events in ms (default 5). */
  stepDelayMs?: number;
  /**
   * `honoured` (default): a client's `prompt_id` is used, as ComfyUI does since v0.3.45 (July 2025).
   * `ignored`: the server always mints its own and answers with it, as earlier releases do.
   */
  promptIds?: PromptIdMode;
  /**
   * `uuid` (default): a client's `prompt_id` must be a UUID in canonical lowercase form, else 400 `invalid_prompt_id`
   * (a null one is minted), as ComfyUI does in 2026. `any`: any value is used as it is, as releases from v0.3.45 on did
   * before. Read only when `promptIds` is `honoured`.
   */
  promptIdFormat?: PromptIdFormat;
  /**
   * `targeted` (default): an interrupt with a `prompt_id` stops that prompt only if it runs, as ComfyUI does since September 2025.
   * `global`: the body is ignored and whatever runs is stopped, as earlier releases do.
   */
  interrupts?: InterruptMode;
  /** `false`: an older release without `/v2/userdata` (an unknown route then: 404) (default true). */
  userdataV2?: boolean;
  /** `false`: a release older than the jobs API (before December 2025), where `/api/jobs*` are unknown routes (default true). */
  jobsApi?: boolean;
  /**
   * `true` (default): assets are on, as in releases since January 2026: `/view?filename=blake3:<hash>` serves any stored file
   * with that content, whoever stored it, an upload's answer carries its `asset`, and the feature flags say `assets: true`. The fake's hash is SHA-256 (Node has
   * no BLAKE3). `false`: an older release, or `--disable-assets`: such a name finds nothing (404).
   */
  assets?: boolean;
  /**
   * `true`: the background asset scan of releases with assets on (since January 2026). Serving the node list
   * (`/object_info`) starts a scan of the models, input and output folders, whose seeder broadcasts
   * `assets.seed.started` and `assets.seed.completed` to every socket (`send_sync` without a sid), counting every
   * file it found, whoever made it; they name no prompt. Default false: no scan, as with `--disable-assets` or
   * before assets.
   */
  assetScans?: boolean;
  /**
   * `attachment` (default): files are served as ComfyUI does in 2026: `/view` with nosniff, and an active type (HTML, JS,
   * CSS, SVG, XML) with `Vary: Sec-Fetch-Dest` and `Cache-Control: no-store`, as an octet-stream attachment unless it is an
   * SVG asked for as an image (`Sec-Fetch-Dest: image`); `/userdata/{file}` as an attachment with nosniff.
   * `inline`: each file under the type its extension names, `/view` with `filename=` only, as earlier releases do.
   */
  activeContent?: ActiveContentMode;
  /**
   * `vue` (default): the web UI of the frontend package (releases since August 2024), its code under `/assets/`.
   * `legacy`: the web UI of earlier releases, from ComfyUI's own `web/` folder: `/style.css`, `/lib/` and `/scripts/`.
   */
  frontend?: Frontend;
  /**
   * `false`: a release older than node replacements, which answers 404 (aiohttp's) to `/node_replacements` (default true).
   * An object: the replacements custom node packs registered (old class_type to its list), listed after ComfyUI's own.
   */
  nodeReplacements?: boolean | Record<string, unknown[]>;
  /** `false`: a release older than feature flags, which never answers a socket's feature_flags and sends only type 1 previews (default true). */
  featureFlags?: boolean;
  /**
   * `false`: a release before ComfyUI's execution model of August 2024 (PR #2666), with the legacy web UI: a prompt that
   * runs to its end sends no `execution_success`, on the socket or in its history entry's messages; `executing` with no
   * node, sent once the entry is written, is the only sign it ended (default true).
   */
  executionSuccess?: boolean;
  /**
   * How long after a prompt's end is sent (`execution_success`, `execution_error`, `execution_interrupted`) its history
   * entry is written, in ms (default 0: at once). ComfyUI sends the end from inside its executor and writes the entry
   * once the executor has returned (main.py's `task_done`), so a reader that asks at the end may find none yet.
   */
  historyWriteDelayMs?: number;
  /** How long a socket's feature_flags waits for its answer, in ms (default none). */
  featureFlagsDelayMs?: number;
  /** Bytes of zeros appended to each image a node writes, after the PNG's end, to make large outputs (default none). */
  outputPadding?: number;
  /**
   * `true`: ComfyUI's default output cache. An output node whose inputs, and everything they link to, are
   * those of an output node that ran before is not run again: it is listed in `execution_cached`, and its
   * earlier UI output (the earlier prompt's files) is sent in `executed` and kept in the history. Default
   * false, as ComfyUI started with `--cache-none` (every node runs, every prompt writes its own files).
   */
  cachedOutputs?: boolean;
  /**
   * Node classes whose execution raises, so that the prompt ends with `execution_error` (ComfyUI's RuntimeError), with
   * a traceback that names the fake's files by their absolute paths, as Python's does.
   */
  failingClassTypes?: readonly string[];
  /**
   * `true`: a failing node's exception message names a file it could not open by its absolute path, as Python's
   * FileNotFoundError does, and its `current_inputs` name the model file its VAE came from so, as an object's `str()` may.
   */
  failuresNameFiles?: boolean;
  /**
   * `true`: a LoadImage refused for a missing file names it by its absolute path in its node error's `details` and in the
   * refusal's `error.details` (ComfyUI joins each node error's message and details there), as a custom loader's
   * VALIDATE_INPUTS may; so do the node errors of a prompt accepted for its other outputs.
   */
  refusalsNameFiles?: boolean;
  /**
   * `true`: each image an output node writes is listed with its absolute path too (`fullpath`), as custom nodes such as
   * VideoHelperSuite's list their files (`{filename, subfolder, type, format, fullpath}`).
   */
  outputFullPaths?: boolean;
  /** Delay before answering `/object_info` and `/object_info/{class}` in ms (default none), to keep such a request in flight. */
  objectInfoDelayMs?: number;
  /** Delay between storing an upload and answering it, in ms (default none), to keep an upload in flight once its file is written. */
  uploadAnswerDelayMs?: number;
  /**
   * `true`: ComfyUI on Windows or macOS, whose disks read names that differ only by case as one file. Every name of
   * input, output and temp (uploads, /view, LoadImage, save nodes) is found as Windows finds it: each segment without its
   * trailing dots and spaces and its `::$DATA` stream, an 8.3 short name (`LONG-P~1.PNG`) as the long name it stands for,
   * and then any entry of the folder spelt so in another case or Unicode composition (macOS's APFS reads `é` composed
   * and decomposed as one name). Save nodes still number after the names that match their
   * prefix as spelt (`os.path.normcase` folds nothing on macOS), so `CAT_00001_.png` lands on `cat_00001_.png`.
   */
  caseInsensitiveFiles?: boolean;
  /** The port to listen on (default: a free one), e.g. to start a fake again where a stopped one was. */
  port?: number;
  /** Told each time a prompt is queued, once it is in the queue (see `inFlight`). */
  onQueued?(): void;
  /** Awaited once a prompt is queued (and started, when nothing ran), before `POST /prompt` is answered: keeps the answer in flight. */
  beforePromptAnswer?(promptId: string): Promise<void> | void;
  /** Awaited before `POST /prompt` is answered with a validation error (ComfyUI validates a large graph for a while): keeps the refusal in flight. */
  beforeRefusal?(): Promise<void> | void;
  /** Awaited before a queued prompt starts to run, as when ComfyUI is busy with another: it waits in the queue meanwhile. */
  beforeRun?(promptId: string): Promise<void> | void;
  /** Awaited before each node of a running prompt runs, after its `execution_start` and `execution_cached`: holds the prompt mid-run. */
  beforeNode?(promptId: string, node: string): Promise<void> | void;
  /** Awaited when `POST /interrupt` arrives, before the running prompt is told to stop: a prompt that is slow to stop runs on meanwhile. */
  beforeInterrupt?(): Promise<void> | void;
  /** The status `POST /queue {"delete": [...]}` answers with (default 200); with any other, nothing is deleted, as by a server that failed. */
  queueDeleteStatus?(ids: readonly unknown[]): number;
}

/** How a ComfyUI release reads an interrupt's `prompt_id`; suites run against both. */
export type InterruptMode = 'targeted' | 'global';
export const INTERRUPT_MODES: readonly InterruptMode[] = ['targeted', 'global'];

/** How a ComfyUI release treats a client-chosen `prompt_id`; suites run against both. */
export type PromptIdMode = 'honoured' | 'ignored';
export const PROMPT_ID_MODES: readonly PromptIdMode[] = ['honoured', 'ignored'];

/** Which client-chosen `prompt_id` a release that honours them accepts; suites run against both. */
export type PromptIdFormat = 'uuid' | 'any';
export const PROMPT_ID_FORMATS: readonly PromptIdFormat[] = ['uuid', 'any'];

/** Which web UI a release serves; the suites that load it run against both. */
export type Frontend = 'vue' | 'legacy';
export const FRONTENDS: readonly Frontend[] = ['vue', 'legacy'];

/** How a release serves a stored file of an active type (an HTML page, an SVG); suites run against both. */
export type ActiveContentMode = 'attachment' | 'inline';
export const ACTIVE_CONTENT_MODES: readonly ActiveContentMode[] = ['attachment', 'inline'];

export interface FakeComfyUI {
  url: string;
  port: number;
  /** Every HTTP request and WebSocket upgrade received, with the raw request target, but the gateway's health checks. */
  requests: Array<{ method: string; url: string; headers: IncomingHttpHeaders }>;
  /** How many health checks of the gateway it answered. */
  healthChecks: number;
  /** How many TCP connections it accepted. */
  connectionsAccepted: number;
  /** Every prompt queued, in the order it arrived: the id it runs under and the body as received. */
  prompts: Array<{ id: string; body: Record<string, unknown> }>;
  /** The ids of the prompts it started running, in the order they started. */
  started: string[];
  /** The ids `POST /queue {"delete": [...]}` took out of the pending queue, in the order they were taken. */
  deletedFromQueue: string[];
  outputDir: string;
  inputDir: string;
  tempDir: string;
  userDir: string;
  history: Map<string, unknown>;
  /** Bytes of the `image` part of the most recent upload. */
  lastUploadBytes: number;
  /** Known users (id → name); `{default: "default"}` unless multiUser, then empty until POST /users (or set it). */
  users: Map<string, string>;
  /** The prompts queued or running now (as `GET /queue` lists them), with the client_id each was queued with. */
  inFlight(): Array<{ id: string; clientId: string | null }>;
  /** The clientIds of the WebSockets connected now, as ComfyUI knows them (a cut socket whose end it has not noticed yet included). */
  openSockets(): string[];
  /**
   * Cuts the TCP connection of the socket registered under `clientId` as a network failure would: the client sees it end
   * at once, the fake only `noticedAfterMs` later, as ComfyUI notices a half-open connection's end only once a read or
   * write fails. Its handler then removes whatever socket holds that clientId by then (the client's new one included), as
   * ComfyUI's `finally: sockets.pop(sid)` does. Nothing happens when no socket holds `clientId`.
   */
  cutSocket(clientId: string, noticedAfterMs: number): void;
  /** While `refused`, WebSocket upgrades are answered 503 (HTTP is served as before); open sockets stay open. */
  refuseSockets(refused: boolean): void;
  /** Stops like a killed ComfyUI: its connections are cut at once (no further event or answer), the running prompt stops, its folders are removed. */
  close(): Promise<void>;
}

export async function startFakeComfyUI(opts: FakeComfyUIOptions = {}): Promise<FakeComfyUI> {
  const fake = new FakeServer(await mkdtemp(path.join(tmpdir(), 'fake-comfyui-')), opts);
  await fake.listen();
  return fake;
}

type Json = Record<string, unknown>;
const DIR_TYPES = ['output', 'input', 'temp'] as const;
type DirType = (typeof DIR_TYPES)[number];

interface PromptNode {
  class_type: string;
  inputs?: unknown;
}
interface QueueItem {
  number: number;
  id: string;
  prompt: Record<string, PromptNode>;
  extraData: Json;
  outputs: string[];
}
interface Run {
  item: QueueItem;
  clientId: string | null;
  node: string | null;
  interrupted: boolean;
  executed: string[];
  progress: Json;
  outputs: Json;
  meta: Json;
  messages: Array<[string, Json]>;
}
interface Client {
  ws: WebSocket;
  negotiated: boolean;
  previewMetadata: boolean;
  /** Set by `cutSocket`: how long after its connection ended the fake notices it. */
  endNoticedAfterMs?: number;
}
interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
}
interface Route {
  method: string;
  pattern: string[];
  apiAlias: boolean;
  handler: (ctx: Ctx) => void | Promise<void>;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const SERVER_ERROR = '500 Internal Server Error\n\nServer got itself in trouble';
/** aiohttp's longest header value, in bytes (the `max_field_size` of its request parser). */
const AIOHTTP_MAX_FIELD_SIZE = 8190;
const SERVER_FEATURES = { supports_preview_metadata: true, max_upload_size: 104857600 };
/** What Python's `str(uuid.UUID(value)) == value` accepts. */
const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SENSITIVE_EXTRA_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];
const OUTPUT_NODES = new Map<string, DirType>([
  ['SaveImage', 'output'],
  ['PreviewImage', 'temp'],
  ['Preview3D', 'temp'],
]);
const SAMPLER_NODES = new Set(['KSampler']);
/** The event type of `customBinaryFrames`. */
export const CUSTOM_BINARY_TYPE = 100;
/** Two of ComfyUI's built-in node replacements (comfy_extras/nodes_replacements.py), as GET /node_replacements lists them. */
const NODE_REPLACEMENTS = {
  ResizeImagesByLongerEdge: [
    {
      new_node_id: 'ImageScaleToMaxDimension',
      old_node_id: 'ResizeImagesByLongerEdge',
      old_widget_ids: ['longer_edge'],
      input_mapping: [
        { new_id: 'image', old_id: 'images' },
        { new_id: 'largest_size', old_id: 'longer_edge' },
        { new_id: 'upscale_method', set_value: 'lanczos' },
      ],
      output_mapping: [{ new_idx: 0, old_idx: 0 }],
    },
  ],
  GeminiNanoBanana2: [
    {
      new_node_id: 'GeminiNanoBanana2V2',
      old_node_id: 'GeminiNanoBanana2',
      old_widget_ids: ['prompt', 'model', 'seed'],
      input_mapping: [
        { new_id: 'prompt', old_id: 'prompt' },
        { new_id: 'model', old_id: 'model' },
        { new_id: 'seed', old_id: 'seed' },
      ],
      output_mapping: null,
    },
  ],
};

const MODEL_FOLDERS = ['checkpoints', 'loras', 'vae', 'embeddings', 'upscale_models', 'controlnet'];
const PNG_1X1 = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==', 'base64');
/**
 * A stand-in for ComfyUI's frontend: like the real one, it opens `/ws` relative to the page and calls
 * `/api/*` with fetch (so a browser sends cookies, never an API key), and shows what happens on the page.
 */
const MAIN_JS = `
const clientId = crypto.randomUUID().replaceAll('-', '');
const events = [];
const log = (text) => { const li = document.createElement('li'); li.textContent = text; document.getElementById('log').append(li); };
document.getElementById('vue-app').innerHTML = '<h1>Fake ComfyUI</h1><button id="queue">Queue prompt</button><ul id="log"></ul>';
const socket = new WebSocket(\`\${location.protocol === 'https:' ? 'wss' : 'ws'}://\${location.host}/ws?clientId=\${clientId}\`);
socket.addEventListener('open', () => log('socket open'));
socket.addEventListener('close', () => log('socket closed'));
socket.addEventListener('message', (event) => {
  if (typeof event.data !== 'string') return;
  const message = JSON.parse(event.data);
  events.push(message);
  if (message.type === 'executing' && message.data.node === null) log('finished ' + message.data.prompt_id);
});
window.comfy = {
  clientId,
  events,
  async queuePrompt() {
    const prompt = { '3': { class_type: 'KSampler', inputs: { seed: 1, steps: 2 } }, '9': { class_type: 'SaveImage', inputs: { images: ['3', 0] } } };
    const response = await fetch('/api/prompt', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ prompt, client_id: clientId }) });
    const body = await response.json().catch(() => null);
    log('queue answered ' + response.status);
    return { status: response.status, body };
  },
};
document.getElementById('queue').addEventListener('click', () => window.comfy.queuePrompt());
`;
const JS_TYPE = 'application/javascript; charset=utf-8';
const CSS_TYPE = 'text/css; charset=utf-8';
const pageLoading = (head: string): string =>
  `<!doctype html>\n<html><head><meta charset="utf-8"><title>ComfyUI</title>${head}</head><body><div id="vue-app"></div></body></html>\n`;
/** Each web UI's page and the files it loads, where the real one has them; their content is a stand-in, the page's script MAIN_JS. */
const WEB_UI: Record<Frontend, { page: string; files: Record<string, { type: string; body: string }> }> = {
  vue: {
    page: pageLoading('<link rel="stylesheet" href="./assets/index.css"><script type="module" src="./assets/index.js"></script>'),
    files: { '/assets/index.css': { type: CSS_TYPE, body: 'body { margin: 0 }\n' }, '/assets/index.js': { type: JS_TYPE, body: MAIN_JS } },
  },
  legacy: {
    page: pageLoading(
      '<link rel="stylesheet" href="./style.css"><script src="./lib/litegraph.core.js"></script><script type="module" src="./scripts/app.js"></script>',
    ),
    files: {
      '/style.css': { type: CSS_TYPE, body: 'body { margin: 0 }\n' },
      '/lib/litegraph.core.js': { type: JS_TYPE, body: 'window.LiteGraph = {};\n' },
      '/scripts/app.js': { type: JS_TYPE, body: MAIN_JS },
    },
  },
};
const MIME_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.wav': 'audio/x-wav',
  '.mp3': 'audio/mpeg',
  '.flac': 'audio/flac',
  '.json': 'application/json',
  '.txt': 'text/plain',
  // As Python's mimetypes names it: releases before 2026 serve an SVG as one, script and all.
  '.svg': 'image/svg+xml',
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.css': 'text/css',
};
/** The types /view of releases before 2026 serves as octet-stream (an SVG is not among them). */
const DOWNGRADED_BY_VIEW = new Set(['text/html', 'application/xhtml+xml', 'text/javascript', 'application/javascript', 'text/css']);
/** Types a browser may run or render inline (ComfyUI's DANGEROUS_CONTENT_TYPES, and any XML). */
const ACTIVE_TYPES = new Set([
  ...DOWNGRADED_BY_VIEW,
  'text/html-sandboxed',
  'application/x-javascript',
  'application/ecmascript',
  'image/svg+xml',
  'message/rfc822',
]);

function isActiveType(type: string): boolean {
  return ACTIVE_TYPES.has(type) || type.endsWith('+xml') || type.endsWith('/xml');
}
const SYSTEM_STATS = {
  system: {
    os: 'posix',
    ram_total: 34359738368,
    ram_free: 17179869184,
    comfyui_version: '0.3.64',
    required_frontend_version: '1.27.10',
    installed_templates_version: '0.1.94',
    required_templates_version: '0.1.94',
    python_version: '3.12.3 (main, Sep 11 2025) [GCC 13.3.0]',
    pytorch_version: '2.8.0+cu128',
    embedded_python: false,
    argv: ['main.py', '--port', '8189'],
  },
  devices: [
    {
      name: 'cuda:0 NVIDIA Fake GPU : cudaMallocAsync',
      type: 'cuda',
      index: 0,
      vram_total: 25769803776,
      vram_free: 24696061952,
      torch_vram_total: 0,
      torch_vram_free: 0,
    },
  ],
};

function nodeInfo(name: string, displayName: string, category: string, required: Json, output: string[]): Json {
  return {
    input: { required },
    input_order: { required: Object.keys(required) },
    output,
    output_is_list: output.map(() => false),
    output_name: output,
    name,
    display_name: displayName,
    description: '',
    python_module: 'nodes',
    category,
    output_node: OUTPUT_NODES.has(name),
  };
}

const OBJECT_INFO: Json = {
  CheckpointLoaderSimple: nodeInfo('CheckpointLoaderSimple', 'Load Checkpoint', 'loaders', { ckpt_name: [['v1-5-pruned-emaonly.safetensors'], {}] }, [
    'MODEL',
    'CLIP',
    'VAE',
  ]),
  CLIPTextEncode: nodeInfo('CLIPTextEncode', 'CLIP Text Encode (Prompt)', 'conditioning', { text: ['STRING', { multiline: true }], clip: ['CLIP', {}] }, [
    'CONDITIONING',
  ]),
  EmptyLatentImage: nodeInfo(
    'EmptyLatentImage',
    'Empty Latent Image',
    'latent',
    { width: ['INT', { default: 512 }], height: ['INT', { default: 512 }], batch_size: ['INT', { default: 1 }] },
    ['LATENT'],
  ),
  KSampler: nodeInfo(
    'KSampler',
    'KSampler',
    'sampling',
    {
      model: ['MODEL', {}],
      seed: ['INT', { default: 0 }],
      steps: ['INT', { default: 20 }],
      cfg: ['FLOAT', { default: 8 }],
      sampler_name: [['euler'], {}],
      scheduler: [['normal'], {}],
      positive: ['CONDITIONING', {}],
      negative: ['CONDITIONING', {}],
      latent_image: ['LATENT', {}],
      denoise: ['FLOAT', { default: 1 }],
    },
    ['LATENT'],
  ),
  VAEDecode: nodeInfo('VAEDecode', 'VAE Decode', 'latent', { samples: ['LATENT', {}], vae: ['VAE', {}] }, ['IMAGE']),
  LatentUpscaleBy: nodeInfo(
    'LatentUpscaleBy',
    'Upscale Latent By',
    'latent',
    { samples: ['LATENT', {}], upscale_method: [['nearest-exact', 'bilinear', 'area', 'bicubic', 'bislerp'], {}], scale_by: ['FLOAT', { default: 1.5 }] },
    ['LATENT'],
  ),
  LatentComposite: nodeInfo(
    'LatentComposite',
    'Latent Composite',
    'latent',
    { samples_to: ['LATENT', {}], samples_from: ['LATENT', {}], x: ['INT', { default: 0 }], y: ['INT', { default: 0 }], feather: ['INT', { default: 0 }] },
    ['LATENT'],
  ),
  VAEEncode: nodeInfo('VAEEncode', 'VAE Encode', 'latent', { pixels: ['IMAGE', {}], vae: ['VAE', {}] }, ['LATENT']),
  LatentBatch: nodeInfo('LatentBatch', 'LatentBatch', 'latent/batch', { samples1: ['LATENT', {}], samples2: ['LATENT', {}] }, ['LATENT']),
  ImageStitch: nodeInfo(
    'ImageStitch',
    'Image Stitch',
    'image/transform',
    {
      image1: ['IMAGE', {}],
      direction: [['right', 'down', 'left', 'up'], { default: 'right' }],
      match_image_size: ['BOOLEAN', { default: true }],
      spacing_width: ['INT', { default: 0 }],
      spacing_color: [['white', 'black', 'red', 'green', 'blue'], { default: 'white' }],
    },
    ['IMAGE'],
  ),
  BasicScheduler: nodeInfo(
    'BasicScheduler',
    'BasicScheduler',
    'model/sampling/schedulers',
    { model: ['MODEL', {}], scheduler: [['normal'], {}], steps: ['INT', { default: 20 }], denoise: ['FLOAT', { default: 1 }] },
    ['SIGMAS'],
  ),
  ExtendIntermediateSigmas: nodeInfo(
    'ExtendIntermediateSigmas',
    'Extend Intermediate Sigmas',
    'model/sampling/sigmas',
    { sigmas: ['SIGMAS', {}], steps: ['INT', { default: 2 }], spacing: [['linear', 'cosine', 'sine'], {}] },
    ['SIGMAS'],
  ),
  SamplerCustom: nodeInfo(
    'SamplerCustom',
    'SamplerCustom',
    'sampling/custom_sampling',
    { model: ['MODEL', {}], noise_seed: ['INT', { default: 0 }], sigmas: ['SIGMAS', {}], latent_image: ['LATENT', {}] },
    ['LATENT', 'LATENT'],
  ),
  ImageRotate: nodeInfo(
    'ImageRotate',
    'Rotate Image',
    'image/transform',
    { image: ['IMAGE', {}], rotation: [['none', '90 degrees', '180 degrees', '270 degrees'], {}] },
    ['IMAGE'],
  ),
  LoadImage: nodeInfo('LoadImage', 'Load Image', 'image', { image: [[], { image_upload: true }] }, ['IMAGE', 'MASK']),
  LoadLatent: nodeInfo('LoadLatent', 'Load Latent', '_for_testing', { latent: [[], {}] }, ['LATENT']),
  SaveImage: nodeInfo('SaveImage', 'Save Image', 'image', { images: ['IMAGE', {}], filename_prefix: ['STRING', { default: 'ComfyUI' }] }, []),
  PreviewImage: nodeInfo('PreviewImage', 'Preview Image', 'image', { images: ['IMAGE', {}] }, []),
  Preview3D: nodeInfo('Preview3D', 'Preview 3D & Animation', '3d', { model_file: ['STRING', { default: '' }], bg_image: ['IMAGE', {}] }, []),
  // Core nodes that read or write files by a name or folder in their inputs (see src/isolation/refused-nodes.ts).
  RecordAudio: nodeInfo('RecordAudio', 'Record Audio', 'audio', { audio: ['AUDIO_RECORD', {}] }, ['AUDIO']),
  LoadImageSetFromFolderNode: nodeInfo('LoadImageSetFromFolderNode', 'Load Image Dataset from Folder', 'loaders', { folder: [[], {}] }, ['IMAGE']),
  SaveImageDataSetToFolder: nodeInfo(
    'SaveImageDataSetToFolder',
    'Save Image (to Folder)',
    'image',
    { images: ['IMAGE', {}], folder_name: ['STRING', { default: 'dataset' }], filename_prefix: ['STRING', { default: 'image' }] },
    [],
  ),
  SaveTrainingDataset: nodeInfo(
    'SaveTrainingDataset',
    'Save Training Dataset',
    'model/training',
    { latents: ['LATENT', {}], conditioning: ['CONDITIONING', {}], folder_name: ['STRING', { default: 'training_dataset' }] },
    [],
  ),
  LoadTrainingDataset: nodeInfo('LoadTrainingDataset', 'Load Training Dataset', 'model/training', { folder_name: [[], {}] }, ['LATENT', 'CONDITIONING']),
};

/** A response with an aiohttp-style text/plain body. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

class Interrupted extends Error {}

/** An exception raised by a node while it runs (one of `failingClassTypes`), with its traceback as Python's `traceback.format_tb` writes it. */
class NodeFailure extends Error {
  override name = 'RuntimeError';
  constructor(
    message: string,
    readonly traceback: string[],
    readonly currentInputs: Json,
  ) {
    super(message);
  }
}

class FakeServer implements FakeComfyUI {
  url = '';
  port = 0;
  readonly requests: FakeComfyUI['requests'] = [];
  connectionsAccepted = 0;
  healthChecks = 0;
  readonly prompts: FakeComfyUI['prompts'] = [];
  readonly started: string[] = [];
  readonly deletedFromQueue: string[] = [];
  readonly history = new Map<string, unknown>();
  readonly users = new Map<string, string>();
  lastUploadBytes = 0;
  readonly outputDir: string;
  readonly inputDir: string;
  readonly tempDir: string;
  readonly userDir: string;
  private readonly root: string;
  private readonly dirs: Record<DirType, string>;
  private readonly opts: FakeComfyUIOptions;
  private readonly server: Server;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: true, maxPayload: 4 * 1024 * 1024 });
  private readonly routes: Route[];
  private readonly clients = new Map<string, Client>();
  /** The last number given in each folder type to each file name prefix (`output/ComfyUI`). */
  private readonly imageCounters = new Map<string, number>();
  /** With `cachedOutputs`: the UI output of each output node that ran, by its inputs' signature (see `signature`). */
  private readonly cachedOutputs = new Map<string, Json>();
  private pending: QueueItem[] = [];
  private running: Run | null = null;
  private worker: Promise<void> = Promise.resolve();
  private counter = 0;
  private closed = false;
  private socketsRefused = false;

  constructor(root: string, opts: FakeComfyUIOptions) {
    this.root = root;
    this.opts = opts;
    this.dirs = { output: path.join(root, 'output'), input: path.join(root, 'input'), temp: path.join(root, 'temp') };
    this.outputDir = this.dirs.output;
    this.inputDir = this.dirs.input;
    this.tempDir = this.dirs.temp;
    this.userDir = path.join(root, 'user');
    if (!opts.multiUser) this.users.set('default', 'default');
    this.routes = this.buildRoutes();
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server.on('connection', () => (this.connectionsAccepted += 1));
  }

  async listen(): Promise<void> {
    await Promise.all([this.outputDir, this.inputDir, this.tempDir, this.userDir].map((d) => mkdir(d, { recursive: true })));
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port ?? 0, '127.0.0.1', resolve);
    });
    this.port = (this.server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pending = [];
    // Connections are cut first, as when the process is killed: the running prompt sends no further event.
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    const closing = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeAllConnections();
    if (this.running) this.running.interrupted = true;
    await this.worker;
    await closing;
    await rm(this.root, { recursive: true, force: true });
  }

  // ---- HTTP dispatch -------------------------------------------------------------------------

  private buildRoutes(): Route[] {
    const route =
      (apiAlias: boolean) =>
      (method: string, p: string, handler: Route['handler']): Route => ({ method, pattern: p.split('/').slice(1), apiAlias, handler });
    const api = route(true);
    const bare = route(false);
    return [
      api('GET', '/', ({ res }) => send(res, 200, this.webUI.page, 'text/html', { 'Cache-Control': 'no-cache', Pragma: 'no-cache', Expires: '0' })),
      ...Object.entries(this.webUI.files).map(([p, file]) =>
        bare('GET', p, ({ res }) => send(res, 200, file.body, file.type, { 'Cache-Control': 'no-cache' })),
      ),
      api('GET', '/ws', ({ res }) => sendText(res, 400, 'No WebSocket UPGRADE hdr: None\n Can "Upgrade" only to "WebSocket".')),
      api('GET', '/system_stats', ({ res }) => sendJson(res, SYSTEM_STATS)),
      api('GET', '/features', ({ res }) => sendJson(res, this.serverFeatures())),
      api('GET', '/object_info', async ({ res }) => {
        await sleep(this.opts.objectInfoDelayMs ?? 0);
        if (this.opts.assetScans) await this.scanAssets();
        sendJson(res, await this.withInputFiles(OBJECT_INFO));
      }),
      api('GET', '/object_info/{class}', async ({ res, params }) => {
        await sleep(this.opts.objectInfoDelayMs ?? 0);
        sendJson(res, await this.withInputFiles(objectInfoFor(params['class'] ?? '')));
      }),
      api('GET', '/embeddings', ({ res }) => sendJson(res, ['easynegative'])),
      api('GET', '/node_replacements', ({ res }) =>
        this.opts.nodeReplacements === false ? send(res, 404, '404: Not Found', 'text/plain; charset=utf-8') : sendJson(res, this.replacements()),
      ),
      api('GET', '/extensions', ({ res }) => sendJson(res, ['/extensions/core/fake.js'])),
      api('GET', '/models', ({ res }) => sendJson(res, MODEL_FOLDERS)),
      // Each folder with the absolute paths it is read from, as ComfyUI's model manager lists them.
      api('GET', '/experiment/models', ({ res }) =>
        sendJson(
          res,
          MODEL_FOLDERS.map((name) => ({ name, folders: [path.join(this.root, 'models', name)] })),
        ),
      ),
      api('GET', '/prompt', ({ res }) => sendJson(res, this.queueInfo())),
      api('POST', '/prompt', (c) => this.postPrompt(c)),
      api('GET', '/queue', ({ res }) => sendJson(res, this.queueSnapshot())),
      api('POST', '/queue', (c) => this.postQueue(c)),
      api('POST', '/interrupt', (c) => this.postInterrupt(c)),
      api('POST', '/free', async ({ req, res }) => {
        await readJson(req);
        sendEmpty(res, 200);
      }),
      api('GET', '/history', (c) => this.getHistory(c)),
      api('GET', '/history/{id}', (c) => this.getHistoryItem(c)),
      api('POST', '/history', (c) => this.postHistory(c)),
      api('GET', '/view', (c) => this.view(c)),
      api('POST', '/upload/image', (c) => this.upload(c, false)),
      api('POST', '/upload/mask', (c) => this.upload(c, true)),
      api('GET', '/users', (c) => this.getUsers(c)),
      api('POST', '/users', (c) => this.postUsers(c)),
      api('GET', '/settings', async ({ req, res }) => sendJson(res, await this.readSettings(req))),
      api('POST', '/settings', (c) => this.postSettings(c)),
      api('GET', '/settings/{id}', (c) => this.getSetting(c)),
      api('POST', '/settings/{id}', (c) => this.postSetting(c)),
      api('GET', '/userdata', (c) => this.listUserdata(c)),
      ...(this.opts.userdataV2 === false ? [] : [api('GET', '/v2/userdata', (c) => this.listUserdataV2(c))]),
      api('GET', '/userdata/{file}', (c) => this.getUserdataFile(c)),
      api('POST', '/userdata/{file}', (c) => this.postUserdataFile(c)),
      api('DELETE', '/userdata/{file}', (c) => this.deleteUserdataFile(c)),
      api('POST', '/userdata/{file}/move/{dest}', (c) => this.moveUserdataFile(c)),
      ...(this.opts.jobsApi === false
        ? []
        : [
            api('GET', '/api/jobs', (c) => this.getJobs(c)),
            api('POST', '/api/jobs/cancel', (c) => this.cancelJobs(c)),
            api('GET', '/api/jobs/{id}', (c) => this.getJob(c)),
            api('POST', '/api/jobs/{id}/cancel', (c) => this.cancelJob(c)),
          ]),
      bare('GET', '/internal/logs', ({ res }) => sendJson(res, `Starting server\n\nTo see the GUI go to: ${this.url}\n`)),
      bare('GET', '/internal/folder_paths', ({ res }) => sendJson(res, this.folderPaths())),
      bare('GET', '/internal/files/{type}', (c) => this.internalFiles(c)),
    ];
  }

  private record(req: IncomingMessage): void {
    // The gateway's health checks are counted apart, so that `requests` holds what clients caused.
    if (req.headers['user-agent'] === HEALTH_CHECK_USER_AGENT) this.healthChecks += 1;
    else this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
  }

  private get webUI(): (typeof WEB_UI)[Frontend] {
    return WEB_UI[this.opts.frontend ?? 'vue'];
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.record(req);
    try {
      // aiohttp's parser refuses a header value longer than its max_field_size (8190 bytes) with 400.
      if (Object.values(req.headers).some((value) => String(value).length > AIOHTTP_MAX_FIELD_SIZE)) return sendText(res, 400, 'Bad Request');
      if (originRejected(req.headers)) return sendEmpty(res, 403);
      if (req.method === 'OPTIONS') return sendEmpty(res, 200);
      const { segments, query } = parseTarget(req.url ?? '/');
      const method = req.method === 'HEAD' ? 'GET' : req.method;
      for (const route of this.routes) {
        const params = route.method === method ? matchRoute(route, segments) : null;
        if (params) return await route.handler({ req, res, params, query });
      }
      // The static mount at `/` takes every other GET; any other method is a 405.
      if (method === 'GET') return sendEmpty(res, 404, { 'Content-Type': 'application/octet-stream' });
      sendText(res, 405, '405: Method Not Allowed');
    } catch (err) {
      if (res.headersSent) res.destroy();
      else if (err instanceof HttpError) sendText(res, err.status, err.message);
      else sendText(res, 500, SERVER_ERROR);
    }
  }

  // ---- WebSocket -----------------------------------------------------------------------------

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.record(req);
    socket.on('error', () => socket.destroy());
    if (originRejected(req.headers)) return rejectUpgrade(socket, 403, 'Forbidden');
    const { segments, query } = parseTarget(req.url ?? '/');
    if (!matchRoute({ pattern: ['ws'], apiAlias: true }, segments)) return rejectUpgrade(socket, 404, 'Not Found');
    if (this.socketsRefused) return rejectUpgrade(socket, 503, 'Service Unavailable');
    const sid = query.get('clientId') || randomUUID().replaceAll('-', '');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, sid));
  }

  private onConnection(ws: WebSocket, sid: string): void {
    const client: Client = { ws, negotiated: false, previewMetadata: false };
    // A new socket with a clientId in use takes its place; the old one stays open, sent nothing more.
    this.clients.set(sid, client);
    ws.on('error', () => ws.terminate());
    // ComfyUI's handler ends with `sockets.pop(sid)`, whichever socket holds that clientId by then.
    ws.on('close', () => {
      if (client.endNoticedAfterMs === undefined) this.clients.delete(sid);
      else setTimeout(() => this.clients.delete(sid), client.endNoticedAfterMs).unref();
    });
    ws.on('message', (data, isBinary) => this.onClientMessage(client, data, isBinary));
    sendFrame(ws, 'status', { status: this.queueInfo(), sid });
    if (this.running?.clientId === sid && this.running.node !== null) sendFrame(ws, 'executing', { node: this.running.node });
  }

  /** Binary and `{"type":"echo"}` messages are echoed (a test hook); the first other JSON object may negotiate flags. */
  private onClientMessage(client: Client, data: RawData, isBinary: boolean): void {
    if (isBinary) return client.ws.send(toBuffer(data), { binary: true });
    const message = parseJsonOrUndefined(toBuffer(data).toString('utf8'));
    if (!isObject(message)) return;
    if (message['type'] === 'echo') return sendFrame(client.ws, 'echo', message['data']);
    if (client.negotiated) return;
    client.negotiated = true;
    if (message['type'] !== 'feature_flags' || this.opts.featureFlags === false) return;
    client.previewMetadata = isObject(message['data']) && message['data']['supports_preview_metadata'] === true;
    const answer = (): void => sendFrame(client.ws, 'feature_flags', this.serverFeatures());
    if (this.opts.featureFlagsDelayMs) setTimeout(answer, this.opts.featureFlagsDelayMs).unref();
    else answer();
  }

  /** ComfyUI's feature flags: with assets on, `assets: true` (releases since January 2026). */
  private serverFeatures(): Json {
    return this.opts.assets === false ? SERVER_FEATURES : { ...SERVER_FEATURES, assets: true };
  }

  private broadcast(type: string, data: unknown): void {
    for (const { ws } of this.clients.values()) sendFrame(ws, type, data);
  }

  /** What the asset seeder broadcasts as it scans the input and output folders (see `assetScans`). */
  private async scanAssets(): Promise<void> {
    const started = Date.now();
    let total = 0;
    for (const dir of [this.dirs.input, this.dirs.output])
      total += (await readdir(dir, { withFileTypes: true, recursive: true })).filter((entry) => entry.isFile()).length;
    this.broadcast('assets.seed.started', { roots: ['models', 'input', 'output'], total });
    this.broadcast('assets.seed.completed', { scanned: total, total, created: total, skipped: 0, elapsed: (Date.now() - started) / 1000 });
  }

  private broadcastStatus(): void {
    this.broadcast('status', { status: this.queueInfo() });
  }

  /** Sends a prompt event to its client; without a client_id it is broadcast or skipped (§7 targeting). */
  private emit(run: Run, type: string, data: Json, broadcastWithoutClient = false): void {
    if (run.clientId !== null) {
      const client = this.clients.get(run.clientId);
      if (client) sendFrame(client.ws, type, data);
    } else if (broadcastWithoutClient) {
      this.broadcast(type, data);
    }
  }

  private sendPreview(run: Run, nodeId: string): void {
    if (run.clientId === null) {
      for (const { ws } of this.clients.values()) sendBinary(ws, previewFrame());
      return;
    }
    const client = this.clients.get(run.clientId);
    if (client) sendBinary(client.ws, client.previewMetadata ? previewFrameWithMetadata(run.item.id, nodeId) : previewFrame());
  }

  // ---- Queue and execution -------------------------------------------------------------------

  private queueInfo(): Json {
    return { exec_info: { queue_remaining: this.pending.length + (this.running ? 1 : 0) } };
  }

  private queueSnapshot(): Json {
    return {
      queue_running: this.running ? [queueTuple(this.running.item, this.running.item.extraData)] : [],
      queue_pending: this.pending.map((item) => queueTuple(item, item.extraData)),
    };
  }

  private async postPrompt({ req, res }: Ctx): Promise<void> {
    const body = asObject(await readJson(req));
    const number = 'number' in body ? toNumber(body['number']) : this.nextNumber(Boolean(body['front']));
    if (!('prompt' in body)) {
      return sendJson(res, { error: promptError('no_prompt', 'No prompt provided', 'No prompt provided'), node_errors: {} }, 400);
    }
    const id = this.promptIdOf(body);
    if (id === null) {
      const details = 'prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server generate one';
      return sendJson(res, { error: promptError('invalid_prompt_id', 'prompt_id must be a valid UUID', details), node_errors: {} }, 400);
    }
    if (this.opts.nodeReplacements !== false) applyReplacements(body['prompt'], this.replacements());
    const validation = validatePrompt(body['prompt'], body['partial_execution_targets']);
    if ('error' in validation) {
      await this.opts.beforeRefusal?.();
      return sendJson(res, { error: validation.error, node_errors: {} }, 400);
    }
    const { good, nodeErrors } = this.validatedOutputs(body['prompt'] as Record<string, PromptNode>, validation.outputs);
    if (good.length === 0) {
      const joined = this.opts.refusalsNameFiles ? Object.values(nodeErrors).flatMap((node) => asErrorLines(node)) : [];
      const error = promptError('prompt_outputs_failed_validation', 'Prompt outputs failed validation', joined.join('\n'));
      return sendJson(res, { error, node_errors: nodeErrors }, 400);
    }
    const extraData: Json = { ...(isObject(body['extra_data']) ? body['extra_data'] : {}) };
    if ('client_id' in body) extraData['client_id'] = body['client_id'];
    this.pending.push({ number, id, prompt: body['prompt'] as Record<string, PromptNode>, extraData, outputs: good });
    this.prompts.push({ id, body });
    this.opts.onQueued?.();
    this.broadcastStatus();
    this.pump();
    await this.opts.beforePromptAnswer?.(id);
    sendJson(res, { prompt_id: id, number, node_errors: nodeErrors });
  }

  /** The node replacements it lists: ComfyUI's own, then those of the custom node packs it was given. */
  private replacements(): Record<string, unknown[]> {
    return { ...NODE_REPLACEMENTS, ...(typeof this.opts.nodeReplacements === 'object' ? this.opts.nodeReplacements : {}) };
  }

  /** The id a prompt runs under (§3), or null for a client's prompt_id this release refuses. */
  private promptIdOf(body: Json): string | null {
    if (this.opts.promptIds === 'ignored' || !('prompt_id' in body)) return randomUUID();
    const given = body['prompt_id'];
    if (this.opts.promptIdFormat === 'any') return String(given);
    if (given === null) return randomUUID();
    return typeof given === 'string' && CANONICAL_UUID.test(given) ? given : null;
  }

  /**
   * LoadImage's VALIDATE_INPUTS, output by output, as ComfyUI's validate_prompt runs it: the outputs whose images are all files of
   * input (or of the annotated folder), and the node errors of the others, each naming the outputs it fails. ComfyUI refuses a
   * prompt with no good output; one with some it queues to run those alone, and answers the others' node errors.
   */
  private validatedOutputs(prompt: Record<string, PromptNode>, outputs: string[]): { good: string[]; nodeErrors: Record<string, Json> } {
    const good: string[] = [];
    const nodeErrors: Record<string, { errors: Json[]; dependent_outputs: string[]; class_type: string }> = {};
    for (const output of outputs) {
      let failed = false;
      for (const id of executionOrder({ number: 0, id: '', prompt, extraData: {}, outputs: [output] })) {
        const node = prompt[id]!;
        const image = isObject(node.inputs) ? node.inputs['image'] : undefined;
        if (node.class_type !== 'LoadImage' || (typeof image === 'string' && this.hasAnnotatedFile(image))) continue;
        failed = true;
        const named = this.opts.refusalsNameFiles && typeof image === 'string' ? path.join(this.dirs.input, image) : String(image);
        nodeErrors[id] ??= {
          errors: [promptError('custom_validation_failed', 'Custom validation failed for node', `image - Invalid image file: ${named}`)],
          dependent_outputs: [],
          class_type: 'LoadImage',
        };
        nodeErrors[id].dependent_outputs.push(output);
      }
      if (!failed) good.push(output);
    }
    return { good, nodeErrors };
  }

  private hasAnnotatedFile(filename: string): boolean {
    const { name, type } = annotatedFilename(filename);
    const base = this.dirs[type ?? 'input'];
    const file = this.onDisk(base, name);
    return isInside(base, file) && existsSync(file);
  }

  /**
   * The path `relative` (`/` between folders) names below `base`: as given, or with `caseInsensitiveFiles` the
   * entries Windows or macOS would open (see the option); a name found nowhere stays as Windows would create it.
   */
  private onDisk(base: string, relative: string): string {
    if (!this.opts.caseInsensitiveFiles) return path.resolve(base, relative);
    let at = base;
    for (const given of relative.split('/')) {
      if (given === '..') at = path.dirname(at);
      if (given === '' || given === '.' || given === '..') continue;
      const segment = given.replace(/::\$data$/i, '').replace(/[. ]+$/, '');
      const entries = existsSync(at) ? readdirSync(at).sort() : [];
      at = path.join(at, shortNameTarget(segment, entries) ?? entries.find((entry) => sameNameIgnoringCase(entry, segment)) ?? segment);
    }
    return at;
  }

  openSockets(): string[] {
    return [...this.clients.keys()];
  }

  cutSocket(clientId: string, noticedAfterMs: number): void {
    const client = this.clients.get(clientId);
    if (!client) return;
    client.endNoticedAfterMs = noticedAfterMs;
    client.ws.terminate();
  }

  refuseSockets(refused: boolean): void {
    this.socketsRefused = refused;
  }

  /** Node definitions with LoadImage's options filled, as ComfyUI fills them: every file of the input folder (not its subfolders). */
  private async withInputFiles(definitions: Json): Promise<Json> {
    const loadImage = definitions['LoadImage'] as { input: { required: Record<string, [unknown, Json]> } } | undefined;
    if (!loadImage) return definitions;
    const entries = await readdir(this.dirs.input, { withFileTypes: true });
    const files = entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
    const image = loadImage.input.required['image']!;
    return {
      ...definitions,
      LoadImage: { ...loadImage, input: { ...loadImage.input, required: { ...loadImage.input.required, image: [files.sort(), image[1]] } } },
    };
  }

  inFlight(): Array<{ id: string; clientId: string | null }> {
    const items = this.running ? [this.running.item, ...this.pending] : this.pending;
    return items.map((item) => ({ id: item.id, clientId: typeof item.extraData['client_id'] === 'string' ? item.extraData['client_id'] : null }));
  }

  private nextNumber(front: boolean): number {
    const number = this.counter++;
    return front ? -number : number;
  }

  private async postQueue({ req, res }: Ctx): Promise<void> {
    const body = asObject(await readJson(req));
    const before = this.pending.length;
    if (body['clear']) this.pending = [];
    if ('delete' in body) {
      const ids = asArray(body['delete']);
      const status = this.opts.queueDeleteStatus?.(ids) ?? 200;
      if (status !== 200) return sendEmpty(res, status);
      this.deletedFromQueue.push(...this.pending.filter((item) => ids.includes(item.id)).map((item) => item.id));
      this.pending = this.pending.filter((item) => !ids.includes(item.id));
    }
    if (this.pending.length !== before) this.broadcastStatus();
    sendEmpty(res, 200);
  }

  private async postInterrupt({ req, res }: Ctx): Promise<void> {
    const body = await readJson(req).catch(() => ({}));
    const target = isObject(body) && 'prompt_id' in body ? body['prompt_id'] : undefined;
    await this.opts.beforeInterrupt?.();
    const stops = target === undefined || this.opts.interrupts === 'global' || target === this.running?.item.id;
    if (this.running && stops) this.running.interrupted = true;
    sendEmpty(res, 200);
  }

  /**
   * The jobs API of newer servers: queue and history as one list of jobs. A finished job tells of its outputs as
   * comfy_execution/jobs.py does for the fake's images (other outputs, such as Preview3D's, neither counted nor previewed): every item counted and previewable, the preview the first
   * saved one (else the first), with its `nodeId` and `mediaType`; `detail` adds the history's outputs, status and
   * prompt, as `/api/jobs/{id}` answers. A failed job carries its `execution_error` event's data, as ComfyUI's does. Each job names the UI workflow it came from (`workflow_id`), which the list's
   * `workflow_id` parameter filters on.
   */
  private jobs(detail = false): Json[] {
    const status = (entry: Json): string => ((entry['status'] as Json | undefined)?.['status_str'] === 'success' ? 'completed' : 'failed');
    const finished = ([id, entry]: [string, Json]): Json => {
      const outputs = (entry['outputs'] as Json | undefined) ?? {};
      const items = Object.entries(outputs).flatMap(([nodeId, output]) => {
        const images = (output as Json)['images'];
        return Array.isArray(images) ? images.map((item): Json => ({ ...(item as Json), nodeId, mediaType: 'images' })) : [];
      });
      const preview = items.find((item) => item['type'] === 'output') ?? items[0];
      const [, , prompt, extraData] = entry['prompt'] as Json[];
      const messages = ((entry['status'] as Json | undefined)?.['messages'] ?? []) as Array<[string, Json]>;
      const error = messages.find(([event]) => event === 'execution_error')?.[1];
      return {
        id,
        status: status(entry),
        ...workflowIdOf(extraData),
        ...(error ? { execution_error: error } : {}),
        outputs_count: items.length,
        previewable_outputs_count: items.length,
        ...(preview ? { preview_output: preview } : {}),
        ...(detail ? { outputs, execution_status: entry['status'], workflow: { prompt, extra_data: extraData } } : {}),
      };
    };
    return [
      ...(this.running
        ? [{ id: this.running.item.id, status: 'in_progress', priority: this.running.item.number, ...workflowIdOf(this.running.item.extraData) }]
        : []),
      ...this.pending.map((item) => ({ id: item.id, status: 'pending', priority: item.number, ...workflowIdOf(item.extraData) })),
      ...[...this.history.entries()].map(([id, entry]) => finished([id, entry as Json])),
    ];
  }

  private getJobs({ res, query }: Ctx): void {
    const workflowId = query.get('workflow_id');
    const all = this.jobs().filter((job) => !workflowId || job['workflow_id'] === workflowId);
    // As ComfyUI: int() of each, a limit that is not positive refused, a negative offset read as 0.
    const int = (name: string): number | null | undefined => {
      const text = query.get(name);
      return text === null ? null : /^\s*[+-]?\d+(?:_\d+)*\s*$/.test(text) ? Number(text.replace(/_/g, '')) : undefined;
    };
    const [offsetAsked, limitAsked] = [int('offset'), int('limit')];
    if (limitAsked === undefined) return sendJson(res, { error: 'limit must be an integer' }, 400);
    if (limitAsked !== null && limitAsked <= 0) return sendJson(res, { error: 'limit must be a positive integer' }, 400);
    if (offsetAsked === undefined) return sendJson(res, { error: 'offset must be an integer' }, 400);
    const offset = Math.max(0, offsetAsked ?? 0);
    const page = all.slice(offset, limitAsked === null ? undefined : offset + limitAsked);
    sendJson(res, { jobs: page, pagination: { offset, limit: limitAsked, total: all.length, has_more: offset + page.length < all.length } });
  }

  private getJob({ res, params }: Ctx): void {
    const job = this.jobs(true).find((j) => j['id'] === params['id']);
    if (job) sendJson(res, job);
    else sendJson(res, { error: 'Job not found' }, 404);
  }

  /**
   * Cancels jobs as ComfyUI's `/api/jobs` cancel routes do: a pending one is taken out of the queue (the queue's
   * new length is broadcast, with no event of the job), a running one interrupted (it ends with
   * `execution_interrupted`); a finished or unknown one is left. True when any was pending or running.
   */
  private cancel(ids: unknown[]): boolean {
    const before = this.pending.length;
    this.pending = this.pending.filter((item) => !ids.includes(item.id));
    const running = this.running !== null && ids.includes(this.running.item.id);
    if (running) this.running!.interrupted = true;
    if (this.pending.length !== before) this.broadcastStatus();
    return running || this.pending.length !== before;
  }

  private cancelJob({ res, params }: Ctx): void {
    sendJson(res, { cancelled: this.cancel([params['id']]) });
  }

  /** Refuses, as ComfyUI does, a body that is not JSON, `job_ids` that is not a list, and a list with any id not a canonical UUID. */
  private async cancelJobs({ req, res }: Ctx): Promise<void> {
    const body = await readJson(req).catch(() => undefined);
    if (body === undefined) return sendJson(res, { error: 'Request body must be valid JSON' }, 400);
    const ids = isObject(body) ? body['job_ids'] : undefined;
    if (!Array.isArray(ids)) return sendJson(res, { error: 'job_ids must be a list' }, 400);
    // ComfyUI names an id that is not a string by its Python repr; the fake by its JSON.
    const invalid = ids.filter((id) => typeof id !== 'string' || !CANONICAL_UUID.test(id)).map((id) => (typeof id === 'string' ? id : JSON.stringify(id)));
    if (invalid.length > 0) return sendJson(res, { error: 'job_ids contains invalid id(s)', invalid_ids: invalid }, 400);
    sendJson(res, { cancelled: this.cancel(ids) });
  }

  /** Starts the lowest-numbered pending prompt unless one is running. */
  private pump(): void {
    if (this.running || this.closed || this.pending.length === 0) return;
    const item = this.pending.reduce((a, b) => (b.number < a.number ? b : a));
    this.pending.splice(this.pending.indexOf(item), 1);
    const clientId = item.extraData['client_id'];
    const run: Run = {
      item,
      clientId: typeof clientId === 'string' ? clientId : null,
      node: null,
      interrupted: false,
      executed: [],
      progress: {},
      outputs: {},
      meta: {},
      messages: [],
    };
    this.running = run;
    this.started.push(item.id);
    this.worker = this.execute(run).finally(() => this.pump());
  }

  private async execute(run: Run): Promise<void> {
    const promptId = run.item.id;
    await this.opts.beforeRun?.(promptId);
    this.broadcastStatus();
    let succeeded = false;
    try {
      await this.step(run);
      await this.stepRecorded(run, 'execution_start', { prompt_id: promptId });
      const order = executionOrder(run.item);
      const cached = new Map(order.flatMap((id) => this.cachedOutputOf(run.item.prompt, id)));
      await this.stepRecorded(run, 'execution_cached', { nodes: [...cached.keys()], prompt_id: promptId });
      for (const id of order) {
        await this.opts.beforeNode?.(promptId, id);
        const output = cached.get(id);
        if (output === undefined) await this.runNode(run, id);
        else await this.sendCachedOutput(run, id, output);
      }
      if (this.opts.executionSuccess !== false) this.recordEvent(run, 'execution_success', { prompt_id: promptId });
      succeeded = true;
    } catch (err) {
      this.recordFailure(run, err);
    }
    if (this.opts.historyWriteDelayMs) await sleep(this.opts.historyWriteDelayMs);
    this.finish(run, succeeded);
  }

  /** The exception of a failing node, raised in a custom node's file under the fake's root, as ComfyUI's execution.py reports it. */
  private nodeFailure(classType: string): NodeFailure {
    const missing = path.join(this.dirs.input, 'missing file.png');
    const names = this.opts.failuresNameFiles === true;
    const vae = path.join(this.root, 'models', 'vae', 'vae.safetensors');
    return new NodeFailure(
      names ? `${classType} failed: [Errno 2] No such file or directory: '${missing}'` : `${classType} failed`,
      [
        `  File "${path.join(this.root, 'execution.py')}", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all)\n`,
        `  File "${path.join(this.root, 'custom_nodes', 'fake-pack', 'nodes.py')}", line 12, in run\n    with open(${JSON.stringify(missing)}, 'rb') as f:\n`,
      ],
      names ? { vae: [`<VAE loaded from '${vae}'>`], tile_size: [512] } : {},
    );
  }

  private async runNode(run: Run, id: string): Promise<void> {
    const promptId = run.item.id;
    const classType = run.item.prompt[id]?.class_type ?? '';
    run.node = id;
    await this.progressState(run, id, 0, 1, 'running');
    await this.send(run, 'executing', { node: id, display_node: id, prompt_id: promptId });
    for (let value = 1; value <= 3; value++) {
      await this.send(run, 'progress', { value, max: 3, prompt_id: promptId, node: id }, true);
      await this.progressState(run, id, value, 3, 'running');
    }
    if (this.opts.previewFrames && SAMPLER_NODES.has(classType)) this.sendPreview(run, id);
    if (this.opts.progressText && SAMPLER_NODES.has(classType))
      for (const { ws } of this.clients.values()) sendBinary(ws, progressTextFrame(id, 'step 3 of 3'));
    if (this.opts.customBinaryFrames && SAMPLER_NODES.has(classType))
      for (const { ws } of this.clients.values()) sendBinary(ws, Buffer.concat([u32Pair(CUSTOM_BINARY_TYPE, 0), Buffer.from('every key')]));
    if (this.opts.failingClassTypes?.includes(classType)) throw this.nodeFailure(classType);
    const output = await this.nodeOutput(run.item.prompt[id]);
    if (output && this.opts.cachedOutputs) this.cachedOutputs.set(signature(run.item.prompt, id), output);
    if (output) {
      run.outputs[id] = output;
      run.meta[id] = { node_id: id, display_node: id, parent_node: null, real_node_id: id };
    }
    await this.send(run, 'executed', { node: id, display_node: id, output, prompt_id: promptId });
    run.executed.push(id);
    await this.progressState(run, id, 3, 3, 'finished');
  }

  /** With `cachedOutputs`, the node's earlier UI output when it is an output node that ran before with the same inputs. */
  private cachedOutputOf(prompt: Record<string, PromptNode>, id: string): Array<[string, Json]> {
    if (!this.opts.cachedOutputs || !OUTPUT_NODES.has(prompt[id]?.class_type ?? '')) return [];
    const output = this.cachedOutputs.get(signature(prompt, id));
    return output === undefined ? [] : [[id, output]];
  }

  /** What ComfyUI's emit_cached_output does: the cached UI output sent in `executed` and kept for the history, no file written. */
  private async sendCachedOutput(run: Run, id: string, output: Json): Promise<void> {
    run.outputs[id] = output;
    run.meta[id] = { node_id: id, display_node: id, parent_node: null, real_node_id: id };
    await this.send(run, 'executed', { node: id, display_node: id, output, prompt_id: run.item.id });
    await this.progressState(run, id, 1, 1, 'finished');
  }

  private async progressState(run: Run, id: string, value: number, max: number, state: string): Promise<void> {
    const promptId = run.item.id;
    run.progress[id] = {
      value,
      max,
      state,
      node_id: id,
      prompt_id: promptId,
      display_node_id: id,
      parent_node_id: null,
      real_node_id: id,
    };
    await this.send(run, 'progress_state', { prompt_id: promptId, nodes: { ...run.progress } }, true);
  }

  /**
   * SaveImage/PreviewImage write a real PNG and return their UI output; other nodes have none. Preview3D writes
   * its background image to temp under a random name and lists it as comfy_api's PreviewUI3D does, by its path in
   * a `result` list: `[model_file, camera_info, "temp/bg_<hex>.png"]`. SaveImage
   * names it after its `filename_prefix` (a plain name of letters, digits, `_`, `.`, `-` and the unpaired
   * surrogates Python's surrogateescape makes of bytes; one with a folder is not modelled and stays
   * `ComfyUI`), numbered per prefix as ComfyUI numbers them, and written as Python writes such a name.
   */
  private async nodeOutput(node: PromptNode | undefined): Promise<Json | null> {
    const classType = node?.class_type ?? '';
    const type = OUTPUT_NODES.get(classType);
    if (type === undefined) return null;
    if (classType === 'Preview3D') {
      const background = `bg_${randomUUID().replaceAll('-', '')}.png`;
      await writeFile(path.join(this.dirs.temp, background), PNG_1X1);
      const modelFile = isObject(node?.inputs) ? (node.inputs['model_file'] ?? '') : '';
      return { result: [modelFile, null, `temp/${background}`] };
    }
    const given = classType === 'SaveImage' && isObject(node?.inputs) ? node.inputs['filename_prefix'] : undefined;
    const prefix = typeof given === 'string' && /^(?:[\p{L}\p{N}_.-]|[\udc80-\udcff])+$/u.test(given) ? given : 'ComfyUI';
    const counter = `${type}/${prefix}`;
    const n = (this.imageCounters.get(counter) ?? 0) + 1;
    this.imageCounters.set(counter, n);
    const filename = `${prefix}_${String(n).padStart(5, '0')}_.png`;
    const file = this.onDisk(this.dirs[type], filename);
    await writeFile(pythonFsPath(file), Buffer.concat([PNG_1X1, Buffer.alloc(this.opts.outputPadding ?? 0)]));
    return { images: [{ filename, subfolder: '', type, ...(this.opts.outputFullPaths ? { fullpath: file } : {}) }] };
  }

  private async send(run: Run, type: string, data: Json, broadcastWithoutClient = false): Promise<void> {
    this.emit(run, type, data, broadcastWithoutClient);
    await this.step(run);
  }

  private async stepRecorded(run: Run, type: string, data: Json): Promise<void> {
    this.recordEvent(run, type, data);
    await this.step(run);
  }

  /** Timestamps an event, keeps it for the history entry's `messages` and sends it. */
  private recordEvent(run: Run, type: string, data: Json, broadcastWithoutClient = false): void {
    const stamped = { ...data, timestamp: Date.now() };
    run.messages.push([type, stamped]);
    this.emit(run, type, stamped, broadcastWithoutClient);
  }

  private async step(run: Run): Promise<void> {
    await sleep(this.opts.stepDelayMs ?? 5);
    if (run.interrupted) throw new Interrupted('Processing interrupted');
  }

  private recordFailure(run: Run, err: unknown): void {
    const base = {
      prompt_id: run.item.id,
      node_id: run.node,
      node_type: run.node === null ? null : (run.item.prompt[run.node]?.class_type ?? null),
      executed: [...run.executed],
    };
    if (err instanceof Interrupted) return this.recordEvent(run, 'execution_interrupted', base, true);
    this.recordEvent(run, 'execution_error', {
      ...base,
      exception_message: err instanceof Error ? err.message : String(err),
      exception_type: err instanceof Error ? err.name : 'Exception',
      traceback: err instanceof NodeFailure ? err.traceback : [],
      current_inputs: err instanceof NodeFailure ? err.currentInputs : {},
      current_outputs: [],
    });
  }

  /** Writes the history entry, then `status`, then the `executing{node:null}` completion signal. */
  private finish(run: Run, succeeded: boolean): void {
    run.node = null;
    this.history.set(run.item.id, {
      prompt: queueTuple(run.item, redact(run.item.extraData)),
      outputs: run.outputs,
      status: { status_str: succeeded ? 'success' : 'error', completed: succeeded, messages: run.messages },
      meta: run.meta,
    });
    this.running = null;
    this.broadcastStatus();
    this.emit(run, 'executing', { node: null, prompt_id: run.item.id });
  }

  // ---- History -------------------------------------------------------------------------------

  private getHistory({ res, query }: Ctx): void {
    const maxItems = optionalInt(query.get('max_items'));
    const offset = optionalInt(query.get('offset')) ?? -1;
    sendJson(res, historyWindow([...this.history], maxItems, offset));
  }

  private getHistoryItem({ res, params }: Ctx): void {
    const id = params['id'] ?? '';
    sendJson(res, this.history.has(id) ? { [id]: this.history.get(id) } : {});
  }

  private async postHistory({ req, res }: Ctx): Promise<void> {
    const body = asObject(await readJson(req));
    if (body['clear']) this.history.clear();
    if ('delete' in body) for (const id of asArray(body['delete'])) this.history.delete(String(id));
    sendEmpty(res, 200);
  }

  // ---- Files: /view, uploads, /internal/files ------------------------------------------------

  private dirFor(type: string): string | null {
    return isDirType(type) ? this.dirs[type] : null;
  }

  private async view({ req, res, query }: Ctx): Promise<void> {
    const filename = query.get('filename');
    if (filename === null) return sendEmpty(res, 404);
    if (filename.startsWith('blake3:')) return this.viewByHash(req, res, filename.slice('blake3:'.length));
    const { name, type } = annotatedFilename(filename);
    if (!name || name.startsWith('/') || name.includes('..')) return sendEmpty(res, 400);
    const base = this.dirFor(type ?? query.get('type') ?? 'output');
    if (base === null) return sendEmpty(res, 400);
    const subfolder = query.get('subfolder');
    const dir = subfolder === null ? base : this.onDisk(base, subfolder);
    if (!isInside(base, dir)) return sendEmpty(res, 403);
    const basename = name.slice(name.lastIndexOf('/') + 1);
    const file = this.onDisk(dir, basename);
    const st = await statFile(file);
    if (!st) return sendEmpty(res, 404);
    await serveFile(req, res, file, st, this.viewHeaders(req, basename, mimeType(file)));
  }

  /** `/view?filename=blake3:<hash>` with assets on: a stored file of input, output or temp with that content, whoever stored it. */
  private async viewByHash(req: IncomingMessage, res: ServerResponse, hash: string): Promise<void> {
    const file = this.opts.assets === false ? undefined : await this.fileWithHash(hash);
    const st = file === undefined ? null : await statFile(file);
    if (file === undefined || !st) return sendEmpty(res, 404);
    await serveFile(req, res, file, st, this.viewHeaders(req, path.basename(file), mimeType(file)));
  }

  private async fileWithHash(hash: string): Promise<string | undefined> {
    for (const base of Object.values(this.dirs)) {
      for (const rel of await listFiles(base, true)) {
        if ((await fileSha256(path.join(base, rel))) === hash) return path.join(base, rel);
      }
    }
    return undefined;
  }

  /** /view's headers for a file of `type` (§5 and `activeContent`). */
  private viewHeaders(req: IncomingMessage, name: string, type: string): Record<string, string> {
    if (this.opts.activeContent === 'inline') {
      return { 'Content-Type': DOWNGRADED_BY_VIEW.has(type) ? 'application/octet-stream' : type, 'Content-Disposition': `filename="${name}"` };
    }
    const quoted = `"${name.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
    const headers = { 'X-Content-Type-Options': 'nosniff', 'Content-Type': type, 'Content-Disposition': `filename=${quoted}` };
    if (!isActiveType(type)) return headers;
    const guarded = { ...headers, Vary: 'Sec-Fetch-Dest', 'Cache-Control': 'no-store' };
    if (type === 'image/svg+xml' && req.headers['sec-fetch-dest'] === 'image') return guarded;
    return { ...guarded, 'Content-Type': 'application/octet-stream', 'Content-Disposition': `attachment; filename=${quoted}` };
  }

  private async upload({ req, res }: Ctx, mask: boolean): Promise<void> {
    const spool = path.join(this.root, `upload-${randomUUID()}.part`);
    let result: Json | number;
    try {
      const form = await readForm(req, spool);
      if (form.file) this.lastUploadBytes = form.file.bytes;
      result = await this.saveUpload(form, spool, mask);
    } finally {
      await rm(spool, { force: true });
    }
    await sleep(this.opts.uploadAnswerDelayMs ?? 0);
    if (typeof result === 'number') sendEmpty(res, result);
    else sendJson(res, result);
  }

  /** ComfyUI's image_upload: resolves type/subfolder, avoids name clashes (same content reuses the name). */
  private async saveUpload(form: Form, spool: string, mask: boolean): Promise<Json | number> {
    const type = form.fields.get('type') ?? 'input';
    const base = this.dirFor(type);
    if (base === null) throw new Error(`invalid upload type: ${type}`);
    if (!form.file?.filename) return 400;
    const subfolder = form.fields.get('subfolder') ?? '';
    const folder = this.onDisk(base, path.normalize(subfolder));
    if (!isInside(base, path.resolve(folder, form.file.filename))) return 400;
    await mkdir(folder, { recursive: true });
    const overwrite = ['true', '1'].includes(form.fields.get('overwrite') ?? '');
    const locate = (name: string): string => this.onDisk(folder, name);
    const { name, duplicate } = overwrite ? { name: form.file.filename, duplicate: false } : await uniqueName(locate, form.file.filename, form.file.sha256);
    if (!duplicate) {
      if (mask && !form.fields.has('original_ref')) throw new Error('original_ref missing');
      await rename(spool, locate(name));
    }
    const stored = { name, subfolder, type };
    if (this.opts.assets === false) return stored;
    const asset = { id: randomUUID(), name, asset_hash: `blake3:${form.file.sha256}`, size: form.file.bytes, mime_type: mimeType(name), tags: [type] };
    return { ...stored, asset };
  }

  private async internalFiles({ res, params }: Ctx): Promise<void> {
    const dir = this.dirFor(params['type'] ?? '');
    if (dir === null) return sendJson(res, { error: 'Invalid directory type' }, 400);
    const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile());
    const files = await Promise.all(entries.map(async (e) => ({ name: e.name, mtime: (await stat(path.join(dir, e.name))).mtimeMs })));
    sendJson(
      res,
      files.sort((a, b) => b.mtime - a.mtime).map((f) => f.name),
    );
  }

  private folderPaths(): Json {
    return Object.fromEntries(MODEL_FOLDERS.map((f) => [f, [path.join(this.root, 'models', f)]]));
  }

  // ---- Users, settings, userdata -------------------------------------------------------------

  /** The request's user directory; throws (500) for a user not in `users`. */
  private userRoot(req: IncomingMessage): string {
    const header = req.headers['comfy-user'];
    const user = this.opts.multiUser && typeof header === 'string' ? header : 'default';
    if (!this.users.has(user)) throw new Error(`Unknown user: ${user}`);
    return path.resolve(this.userDir, user);
  }

  /** A path inside the user's directory (percent-decoded once more if it contains `%`), or null if it escapes. */
  private userPath(req: IncomingMessage, file: string): string | null {
    const root = this.userRoot(req);
    if (!isInside(this.userDir, root)) return null;
    const full = path.resolve(root, file.includes('%') ? decodeSegment(file) : file);
    return isInside(root, full) ? full : null;
  }

  private getUsers({ res }: Ctx): void {
    if (this.opts.multiUser) return sendJson(res, { storage: 'server', users: Object.fromEntries(this.users) });
    sendJson(res, { storage: 'server', migrated: existsSync(path.join(this.userDir, 'default')) });
  }

  private async postUsers({ req, res }: Ctx): Promise<void> {
    const username = asObject(await readJson(req))['username'];
    if ([...this.users.values()].some((name) => name === username)) return sendJson(res, { error: 'Duplicate username.' }, 400);
    if (typeof username !== 'string' || !username.trim()) throw new Error('username not provided');
    // user_manager.add_user: `__` starts the names of ComfyUI's system users.
    if (username.trim().startsWith('__')) return sendJson(res, { error: 'System User prefix not allowed' }, 400);
    const id = `${username.trim().replace(/[^a-zA-Z0-9-_]+/g, '-')}_${randomUUID()}`;
    this.users.set(id, username.trim());
    sendJson(res, id);
  }

  private settingsFile(req: IncomingMessage): string {
    try {
      return path.join(this.userRoot(req), 'comfy.settings.json');
    } catch {
      throw new HttpError(401, '401: Unauthorized');
    }
  }

  private async readSettings(req: IncomingMessage): Promise<Json> {
    const file = this.settingsFile(req);
    try {
      const settings: unknown = JSON.parse(await readFile(file, 'utf8'));
      return isObject(settings) ? settings : {};
    } catch {
      return {};
    }
  }

  private async writeSettings(req: IncomingMessage, settings: Json): Promise<void> {
    const file = this.settingsFile(req);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(settings, null, 4));
  }

  private async getSetting({ req, res, params }: Ctx): Promise<void> {
    const settings = await this.readSettings(req);
    const id = params['id'] ?? '';
    sendJson(res, Object.hasOwn(settings, id) ? settings[id] : null);
  }

  private async postSettings({ req, res }: Ctx): Promise<void> {
    const settings = await this.readSettings(req);
    await this.writeSettings(req, { ...settings, ...asObject(await readJson(req)) });
    sendEmpty(res, 200);
  }

  private async postSetting({ req, res, params }: Ctx): Promise<void> {
    const settings = await this.readSettings(req);
    settings[params['id'] ?? ''] = await readJson(req);
    await this.writeSettings(req, settings);
    sendEmpty(res, 200);
  }

  private async listUserdata({ req, res, query }: Ctx): Promise<void> {
    const dir = query.get('dir') ?? '';
    if (!dir) return sendText(res, 400, 'Directory not provided');
    const root = this.userPath(req, dir);
    if (root === null) return sendText(res, 403, 'Invalid directory');
    if (!existsSync(root)) return sendText(res, 404, 'Directory not found');
    const flag = (name: string): boolean => (query.get(name) ?? '').toLowerCase() === 'true';
    const files = await listFiles(root, flag('recurse'));
    const describe = (rel: string): unknown => (flag('full_info') ? fileInfo(path.join(root, rel), root) : flag('split') ? [rel, ...rel.split('/')] : rel);
    sendJson(res, await Promise.all(files.map(describe)));
  }

  /** GET /v2/userdata?path=: every folder and file under it, each with its path from the user's root, folders first. */
  private async listUserdataV2({ req, res, query }: Ctx): Promise<void> {
    let root: string;
    try {
      root = this.userRoot(req);
    } catch {
      return sendText(res, 403, 'Invalid user specified in request');
    }
    const asked = query.get('path') ?? '';
    const target = asked ? this.userPath(req, asked) : root;
    if (target === null) return sendText(res, 400, 'Invalid path requested');
    const st = await stat(target).catch(() => null);
    if (!st) return target === root ? sendJson(res, []) : sendText(res, 404, 'Requested path not found');
    if (!st.isDirectory()) return sendText(res, 400, 'Requested path is not a directory');
    const entries = await readdir(target, { withFileTypes: true, recursive: true });
    const listed = await Promise.all(
      entries.map(async (entry) => {
        const full = path.join(entry.parentPath, entry.name);
        const item = { name: entry.name, path: path.relative(root, full).split(path.sep).join('/'), type: entry.isDirectory() ? 'directory' : 'file' };
        if (entry.isDirectory()) return item;
        const { size, mtimeMs } = await stat(full);
        return { ...item, size, modified: mtimeMs / 1000 };
      }),
    );
    const order = (item: { type: string; name: string }): string => `${item.type === 'directory' ? 0 : 1}${item.name.toLowerCase()}`;
    sendJson(
      res,
      listed.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0)),
    );
  }

  private async getUserdataFile({ req, res, params }: Ctx): Promise<void> {
    const file = this.userPath(req, params['file'] ?? '');
    if (file === null) return sendEmpty(res, 403);
    const st = await statFile(file);
    if (!st) return sendEmpty(res, 404);
    await serveFile(req, res, file, st, this.userdataHeaders(req, file));
  }

  /** GET /userdata/{file}'s headers: with `activeContent` `attachment`, a download with nosniff (an active type as octet-stream), but the user's own user.css. */
  private userdataHeaders(req: IncomingMessage, file: string): Record<string, string> {
    const type = mimeType(file);
    if (this.opts.activeContent === 'inline') return { 'Content-Type': type };
    if (file === path.join(this.userRoot(req), 'user.css'))
      return { 'Content-Type': 'text/css', 'X-Content-Type-Options': 'nosniff', 'Content-Disposition': 'inline' };
    return { 'Content-Type': isActiveType(type) ? 'application/octet-stream' : type, 'X-Content-Type-Options': 'nosniff', 'Content-Disposition': 'attachment' };
  }

  private async postUserdataFile({ req, res, params, query }: Ctx): Promise<void> {
    const file = this.userPath(req, params['file'] ?? '');
    if (file === null) return sendEmpty(res, 403);
    if (query.get('overwrite') === 'false' && existsSync(file)) return sendText(res, 409, 'File already exists');
    const body = await readBody(req);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, body);
    const root = this.userRoot(req);
    const fullInfo = (query.get('full_info') ?? '').toLowerCase() === 'true';
    sendJson(res, fullInfo ? await fileInfo(file, root) : path.relative(root, file));
  }

  /** user_manager.move_userdata: both paths inside the user's own directory (else 403), the source existing (else 404); the dest's folder made. */
  private async moveUserdataFile({ req, res, params, query }: Ctx): Promise<void> {
    const source = this.userPath(req, params['file'] ?? '');
    if (source === null) return sendEmpty(res, 403);
    if (!existsSync(source)) return sendEmpty(res, 404);
    const dest = this.userPath(req, params['dest'] ?? '');
    if (dest === null) return sendEmpty(res, 403);
    if (query.get('overwrite') === 'false' && existsSync(dest)) return sendText(res, 409, 'File already exists');
    await mkdir(path.dirname(dest), { recursive: true });
    await rename(source, dest);
    sendJson(res, path.relative(this.userRoot(req), dest));
  }

  private async deleteUserdataFile({ req, res, params }: Ctx): Promise<void> {
    const file = this.userPath(req, params['file'] ?? '');
    if (file === null) return sendEmpty(res, 403);
    if (!existsSync(file)) return sendEmpty(res, 404);
    await unlink(file);
    sendEmpty(res, 204);
  }
}

// ---- Origin check (§8) ---------------------------------------------------------------------

function isLoopbackHostname(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

function splitHostPort(netloc: string): { hostname: string; port: string | null } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(netloc);
  return { hostname: (m?.[1] ?? netloc).replace(/^\[|\]$/g, ''), port: m?.[2] || null };
}

/** ComfyUI's origin-only middleware: cross-site fetches, and loopback Host with a different Origin, get 403. */
function originRejected(headers: IncomingHttpHeaders): boolean {
  if (headers['sec-fetch-site'] === 'cross-site') return true;
  const host = headers.host?.toLowerCase();
  const origin = headers.origin;
  if (!host || !origin) return false;
  const originNetloc = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(origin)?.[1]?.toLowerCase() ?? '';
  const h = splitHostPort(host);
  const o = splitHostPort(originNetloc);
  if (!isLoopbackHostname(h.hostname)) return false;
  const hostSide = o.port === null ? h.hostname : host;
  const originSide = h.port === null ? o.hostname : originNetloc;
  return hostSide !== '' && originSide !== '' && hostSide !== originSide;
}

function rejectUpgrade(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
}

// ---- Routing helpers -----------------------------------------------------------------------

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Splits the raw target like aiohttp routes it: per-segment percent-decoding, so `%2F` stays inside its segment. */
function parseTarget(rawUrl: string): { segments: string[]; query: URLSearchParams } {
  const q = rawUrl.indexOf('?');
  const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
  return { segments: rawPath.split('/').slice(1).map(decodeSegment), query: new URLSearchParams(q < 0 ? '' : rawUrl.slice(q + 1)) };
}

function matchPattern(pattern: readonly string[], segments: readonly string[]): Record<string, string> | null {
  if (pattern.length !== segments.length) return null;
  const params: Record<string, string> = {};
  for (const [i, part] of pattern.entries()) {
    const segment = segments[i] ?? '';
    if (part.startsWith('{')) {
      if (segment === '') return null;
      params[part.slice(1, -1)] = segment;
    } else if (part !== segment) {
      return null;
    }
  }
  return params;
}

function matchRoute(route: Pick<Route, 'pattern' | 'apiAlias'>, segments: string[]): Record<string, string> | null {
  const bare = matchPattern(route.pattern, segments);
  if (bare || !route.apiAlias || segments[0] !== 'api') return bare;
  return matchPattern(route.pattern, segments.slice(1));
}

// ---- Responses and request bodies ----------------------------------------------------------

function send(res: ServerResponse, status: number, body: string | Buffer, type: string, headers: Record<string, string> = {}): void {
  const buf = Buffer.from(body);
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': String(buf.length), ...headers });
  res.end(buf);
}

function sendJson(res: ServerResponse, value: unknown, status = 200): void {
  send(res, status, pythonJson(value), JSON_TYPE);
}

/** JSON as Python's json.dumps writes it (aiohttp's json_response): NaN, Infinity and -Infinity as bare words, a number read as Python reads it as its text. */
function pythonJson(value: unknown): string {
  const text = JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'number' && !Number.isFinite(v) ? `${BARE_MARK}${v}` : isLosslessNumber(v) ? `${BARE_MARK}${(v as LosslessNumber).value}` : v,
  );
  return text.includes('\\u0000') ? text.replace(/"\\u0000(NaN|-?Infinity|-?\d[\d.eE+-]*)"/g, '$1') : text;
}

const BARE_MARK = '\u0000';

function sendText(res: ServerResponse, status: number, text: string): void {
  send(res, status, text, 'text/plain; charset=utf-8');
}

function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, status === 204 ? headers : { 'Content-Length': '0', ...headers });
  res.end();
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of decodedBody(req)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The request's body as aiohttp's server reads it: a gzip, deflate or br Content-Encoding is decoded first (auto_decompress, on by default). */
function decodedBody(req: IncomingMessage): AsyncIterable<unknown> {
  const encoding = req.headers['content-encoding']?.trim().toLowerCase();
  const decoder = encoding === 'gzip' ? createGunzip() : encoding === 'deflate' ? createInflate() : encoding === 'br' ? createBrotliDecompress() : null;
  return decoder ? req.pipe(decoder) : req;
}

/**
 * Parses the body as JSON whatever its Content-Type, its numbers as Python's json.loads reads them: one whose
 * text JavaScript would write otherwise (`7.0`, `18446744073709551615`) is kept as that text. A parse error
 * becomes the 500 of aiohttp.
 */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const text = (await readBody(req)).toString('utf8');
  try {
    return parseLossless(text, undefined, (digits) => (String(Number(digits)) === digits ? Number(digits) : new LosslessNumber(digits)));
  } catch {
    return JSON.parse(text);
  }
}

function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asObject(value: unknown): Json {
  if (!isObject(value)) throw new Error('expected a JSON object');
  return value;
}

function asArray(value: unknown): unknown[] {
  if (!Array.isArray(value)) throw new Error('expected a JSON array');
  return value;
}

function toNumber(value: unknown): number {
  const n = typeof value === 'number' || typeof value === 'string' ? Number(value) : NaN;
  if (Number.isNaN(n)) throw new Error(`not a number: ${String(value)}`);
  return n;
}

/** Python's int() on a query value: absent → null, malformed → error (500). */
function optionalInt(value: string | null): number | null {
  if (value === null) return null;
  if (!/^\s*[+-]?\d+\s*$/.test(value)) throw new Error(`invalid literal for int(): ${value}`);
  return Number.parseInt(value, 10);
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

function sendFrame(ws: WebSocket, type: string, data: unknown): void {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type, data }));
}

function sendBinary(ws: WebSocket, frame: Buffer): void {
  if (ws.readyState === WebSocket.OPEN) ws.send(frame, { binary: true });
}

// ---- Prompts -------------------------------------------------------------------------------

function objectInfoFor(classType: string): Json {
  return Object.hasOwn(OBJECT_INFO, classType) ? { [classType]: OBJECT_INFO[classType] } : {};
}

/** A node error's lines as validate_prompt joins them into the refusal's `error.details`: `message: details` each. */
function asErrorLines(nodeError: unknown): string[] {
  const errors = isObject(nodeError) && Array.isArray(nodeError['errors']) ? nodeError['errors'] : [];
  return errors.map((error) => `${String(asObject(error)['message'])}: ${String(asObject(error)['details'])}`);
}

function promptError(type: string, message: string, details: string): Json {
  return { type, message, details, extra_info: {} };
}

/**
 * ComfyUI's NodeReplaceManager.apply_replacements, before validation: a node whose class it does not have
 * becomes its first replacement's class (when it has that one), with only the mapped inputs.
 */
function applyReplacements(prompt: unknown, replacements: Record<string, unknown[]>): void {
  for (const [id, node] of Object.entries(asObject(prompt))) {
    if (!isObject(node) || typeof node['class_type'] !== 'string' || Object.hasOwn(OBJECT_INFO, node['class_type'])) continue;
    const replacement = Object.hasOwn(replacements, node['class_type']) ? asObject(replacements[node['class_type']]![0]) : {};
    const newClass = replacement['new_node_id'];
    if (typeof newClass !== 'string' || !Object.hasOwn(OBJECT_INFO, newClass)) continue;
    const old = isObject(node['inputs']) ? node['inputs'] : {};
    const inputs: Json = {};
    for (const mapping of Array.isArray(replacement['input_mapping']) ? replacement['input_mapping'].map(asObject) : []) {
      if ('set_value' in mapping) inputs[String(mapping['new_id'])] = mapping['set_value'];
      else if ('old_id' in mapping) inputs[String(mapping['new_id'])] = old[String(mapping['old_id'])];
    }
    (prompt as Json)[id] = { ...node, class_type: newClass, inputs };
  }
}

/** ComfyUI's validate_prompt, reduced to class checks: returns the output nodes to execute or a §3 error. */
function validatePrompt(prompt: unknown, targets: unknown): { outputs: string[] } | { error: Json } {
  const outputs: string[] = [];
  for (const [id, node] of Object.entries(asObject(prompt))) {
    const details = `Node ID '#${id}'`;
    if (!isObject(node) || !('class_type' in node)) {
      return { error: promptError('invalid_prompt', 'Cannot execute because a node is missing the class_type property.', details) };
    }
    const classType = node['class_type'];
    if (typeof classType !== 'string' || !Object.hasOwn(OBJECT_INFO, classType)) {
      return { error: promptError('invalid_prompt', `Cannot execute because node ${String(classType)} does not exist.`, details) };
    }
    if (OUTPUT_NODES.has(classType) && (targets == null || (Array.isArray(targets) && targets.includes(id)))) outputs.push(id);
    convertFloatInputs(classType, node);
  }
  return outputs.length > 0 ? { outputs } : { error: promptError('prompt_no_outputs', 'Prompt has no outputs', '') };
}

/**
 * ComfyUI's validate_inputs writes `float(value)` back into the prompt for a FLOAT input, and its min/max
 * checks let NaN through: `"nan"` or `"inf"` is then NaN or Infinity in the queue and the history.
 */
function convertFloatInputs(classType: string, node: Json): void {
  const required = ((OBJECT_INFO[classType] as Json)['input'] as { required: Record<string, unknown[]> }).required;
  const inputs = isObject(node['inputs']) ? node['inputs'] : {};
  for (const [name, value] of Object.entries(inputs)) {
    if (required[name]?.[0] === 'FLOAT' && typeof value === 'string') inputs[name] = pythonFloat(value);
  }
}

/** Python's float() of a string, for the spellings a test uses: a number, or nan/inf/infinity with a sign. */
function pythonFloat(text: string): number | string {
  const special = /^\s*([+-]?)(nan|inf|infinity)\s*$/i.exec(text);
  if (special) return special[2]!.toLowerCase() === 'nan' ? NaN : special[1] === '-' ? -Infinity : Infinity;
  const number = Number(text);
  return text.trim() !== '' && !Number.isNaN(number) ? number : text;
}

/**
 * The bytes Python opens for a path (os.fsencode on Linux and macOS): UTF-8, but each unpaired surrogate
 * U+DC80..U+DCFF is the byte it escapes, so `caf\udcc3\udca9` is the file `café`.
 */
function pythonFsPath(file: string): Buffer {
  return Buffer.concat(
    file.split(/([\udc80-\udcff])/u).map((part, index) => (index % 2 === 1 ? Buffer.from([part.charCodeAt(0) - 0xdc00]) : Buffer.from(part))),
  );
}

/** A node's class and inputs with each link replaced by the linked node's own signature: what ComfyUI's cache keys a node's outputs by. */
function signature(prompt: Record<string, PromptNode>, id: string, depth = 0): string {
  const node = prompt[id];
  if (!node || depth > 64) return 'null';
  const inputs = Object.entries(isObject(node.inputs) ? node.inputs : {}).map(([name, value]) => [
    name,
    Array.isArray(value) && value.length === 2 ? `${signature(prompt, String(value[0]), depth + 1)}#${String(value[1])}` : pythonJson(value),
  ]);
  return JSON.stringify([node.class_type, inputs]);
}

/** `_extract_job_metadata`'s workflow id (`extra_pnginfo.workflow.id`), as a job's field; none when the prompt has none. */
function workflowIdOf(extraData: unknown): Json {
  const pngInfo = isObject(extraData) ? extraData['extra_pnginfo'] : undefined;
  const workflow = isObject(pngInfo) ? pngInfo['workflow'] : undefined;
  const id = isObject(workflow) ? workflow['id'] : undefined;
  return id === undefined || id === null ? {} : { workflow_id: id };
}

/** Nodes the outputs depend on, dependencies first. */
function executionOrder(item: QueueItem): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (id: string): void => {
    if (seen.has(id) || !Object.hasOwn(item.prompt, id)) return;
    seen.add(id);
    const inputs = item.prompt[id]?.inputs;
    for (const value of Object.values(isObject(inputs) ? inputs : {})) {
      if (Array.isArray(value) && value.length === 2) visit(String(value[0]));
    }
    order.push(id);
  };
  item.outputs.forEach(visit);
  return order;
}

function queueTuple(item: QueueItem, extraData: Json): unknown[] {
  return [item.number, item.id, item.prompt, extraData, item.outputs];
}

function redact(extraData: Json): Json {
  return Object.fromEntries(Object.entries(extraData).filter(([key]) => !SENSITIVE_EXTRA_KEYS.includes(key)));
}

/** GET /history semantics: max_items alone → newest N; offset K → from the K-th oldest; both → [K, K+N). */
function historyWindow(entries: Array<[string, unknown]>, maxItems: number | null, offset: number): Json {
  const start = offset < 0 && maxItems !== null ? entries.length - maxItems : offset;
  const window = entries.slice(Math.max(start, 0));
  return Object.fromEntries(maxItems === null ? window : window.slice(0, Math.max(maxItems, 1)));
}

function u32Pair(a: number, b: number): Buffer {
  const buf = Buffer.alloc(8);
  buf.writeUInt32BE(a, 0);
  buf.writeUInt32BE(b, 4);
  return buf;
}

/** Binary type 3 TEXT: the node id's length, the node id, then the text. */
function progressTextFrame(nodeId: string, text: string): Buffer {
  const node = Buffer.from(nodeId);
  return Buffer.concat([u32Pair(3, node.length), node, Buffer.from(text)]);
}

/** Binary type 1 PREVIEW_IMAGE, format 2 (PNG). */
function previewFrame(): Buffer {
  return Buffer.concat([u32Pair(1, 2), PNG_1X1]);
}

/** Binary type 4 PREVIEW_IMAGE_WITH_METADATA. */
function previewFrameWithMetadata(promptId: string, nodeId: string): Buffer {
  const metadata = Buffer.from(
    JSON.stringify({
      node_id: nodeId,
      prompt_id: promptId,
      display_node_id: nodeId,
      parent_node_id: null,
      real_node_id: nodeId,
      image_type: 'image/png',
    }),
  );
  return Buffer.concat([u32Pair(4, metadata.length), metadata, PNG_1X1]);
}

// ---- File serving (aiohttp FileResponse) ---------------------------------------------------

function isDirType(type: string): type is DirType {
  return (DIR_TYPES as readonly string[]).includes(type);
}

/** Whether Windows or macOS reads two names as one entry: alike but for case, and (APFS) for Unicode composition. */
function sameNameIgnoringCase(a: string, b: string): boolean {
  return a.normalize('NFC').toLowerCase() === b.normalize('NFC').toLowerCase();
}

/**
 * The entry of a folder that an 8.3 short name stands for (`LONG-P~1.PNG`: the first 6 characters of the long name
 * in capitals, without dots and spaces, `~n` for the n-th such name, the first 3 of its extension), or undefined.
 */
function shortNameTarget(segment: string, entries: readonly string[]): string | undefined {
  const short = /^([^.~]{1,6})~(\d+)(?:\.([^.]{1,3}))?$/.exec(segment.toUpperCase());
  if (!short) return undefined;
  const [, start, n, extension = ''] = short;
  const matching = entries.filter((entry) => {
    const ext = path.extname(entry);
    const long = entry
      .slice(0, entry.length - ext.length)
      .toUpperCase()
      .replace(/[. ]/g, '');
    return long.startsWith(start!) && ext.slice(1).toUpperCase().startsWith(extension);
  });
  return matching[Number(n) - 1];
}

function isInside(base: string, target: string): boolean {
  return target === base || target.startsWith(base + path.sep);
}

/** `[output]`, `[input]` or `[temp]` at the end of a filename selects the directory; it is cut with the character before it (a space in ` [output]`), whatever that is. */
function annotatedFilename(filename: string): { name: string; type: DirType | null } {
  for (const type of DIR_TYPES) {
    if (filename.endsWith(`[${type}]`)) return { name: filename.slice(0, -(type.length + 3)), type };
  }
  return { name: filename, type: null };
}

function mimeType(file: string): string {
  return MIME_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}

async function statFile(file: string): Promise<BigIntStats | null> {
  try {
    const st = await stat(file, { bigint: true });
    return st.isFile() ? st : null;
  } catch {
    return null;
  }
}

function notModified(headers: IncomingHttpHeaders, etag: string, mtimeMs: number): boolean {
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    return ifNoneMatch.split(',').some((tag) => ['*', etag].includes(tag.trim().replace(/^W\//, '')));
  }
  const ifModifiedSince = headers['if-modified-since'];
  return ifModifiedSince !== undefined && mtimeMs <= Date.parse(ifModifiedSince);
}

/** A single `bytes=` range as aiohttp accepts it (inclusive end), null without a Range header. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | null {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header);
  const first = m?.[1] ?? '';
  const last = m?.[2] ?? '';
  if (first === '' && last === '') return 'unsatisfiable';
  const start = first === '' ? Math.max(0, size - Number(last)) : Number(first); // `-N` is a suffix
  const end = first === '' || last === '' ? size - 1 : Number(last);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end: Math.min(end, size - 1) };
}

async function serveFile(req: IncomingMessage, res: ServerResponse, file: string, st: BigIntStats, headers: Record<string, string>): Promise<void> {
  const size = Number(st.size);
  const validators = { ETag: `"${st.mtimeNs.toString(16)}-${st.size.toString(16)}"`, 'Last-Modified': new Date(Number(st.mtimeMs)).toUTCString() };
  if (notModified(req.headers, validators.ETag, Number(st.mtimeMs))) {
    res.writeHead(304, validators);
    res.end();
    return;
  }
  const range = parseRange(req.headers.range, size);
  if (range === 'unsatisfiable') return sendEmpty(res, 416, { 'Content-Range': `bytes */${size}` });
  const { start, end } = range ?? { start: 0, end: size - 1 };
  res.writeHead(range ? 206 : 200, {
    ...headers,
    ...validators,
    'Accept-Ranges': 'bytes',
    'Content-Length': String(end - start + 1),
    ...(range ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
  });
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return;
  }
  await pipeline(createReadStream(file, { start, end }), res);
}

async function listFiles(dir: string, recurse: boolean): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: recurse });
  return entries
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .filter((rel) => !rel.split(path.sep).some((part) => part.startsWith('.'))) // glob skips dotfiles
    .map((rel) => rel.split(path.sep).join('/'));
}

async function fileInfo(file: string, relativeTo: string): Promise<Json> {
  const st = await stat(file);
  return { path: path.relative(relativeTo, file).split(path.sep).join('/'), size: st.size, modified: st.mtimeMs / 1000, created: st.ctimeMs / 1000 };
}

async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `name.ext`, else `name (1).ext`, … ; an existing file with the same content is reused. */
/** ComfyUI's choice of an upload's name without overwrite; `locate` finds a name's file in the folder as the disk does. */
async function uniqueName(locate: (name: string) => string, filename: string, sha256: string): Promise<{ name: string; duplicate: boolean }> {
  const ext = path.extname(filename);
  const stem = filename.slice(0, filename.length - ext.length);
  let name = filename;
  for (let i = 1; existsSync(locate(name)); i++) {
    if ((await fileSha256(locate(name))) === sha256) return { name, duplicate: true };
    name = `${stem} (${i})${ext}`;
  }
  return { name, duplicate: false };
}

// ---- Streaming multipart/form-data ---------------------------------------------------------

interface UploadedFile {
  filename: string;
  bytes: number;
  sha256: string;
}
interface Form {
  fields: Map<string, string>;
  file: UploadedFile | null;
}
interface PartSink {
  write(chunk: Buffer): Promise<void>;
  close(): Promise<void>;
}

const DISCARD: PartSink = { write: async () => {}, close: async () => {} };
const MAX_PART_HEADER_BYTES = 16 * 1024;

function multipartBoundary(contentType: string | undefined): string | null {
  if (!contentType || !/^\s*multipart\/form-data\b/i.test(contentType)) return null;
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m?.[1] ?? m?.[2] ?? null;
}

/** A Content-Disposition parameter (`name`, `filename`), honouring `filename*=UTF-8''…`. */
function dispositionParam(disposition: string, key: string): string | undefined {
  const extended = new RegExp(`;\\s*${key}\\*\\s*=\\s*utf-8''([^;]*)`, 'i').exec(disposition);
  if (extended) return decodeSegment(extended[1] ?? '');
  const plain = new RegExp(`;\\s*${key}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;]*))`, 'i').exec(disposition);
  if (!plain) return undefined;
  return plain[1] !== undefined ? plain[1].replace(/\\(.)/g, '$1') : (plain[2] ?? '').trim();
}

async function fileSink(file: string, done: (bytes: number, sha256: string) => void): Promise<PartSink> {
  const handle = await open(file, 'w');
  const hash = createHash('sha256');
  let bytes = 0;
  return {
    async write(chunk) {
      hash.update(chunk);
      bytes += chunk.length;
      for (let offset = 0; offset < chunk.length;) offset += (await handle.write(chunk, offset)).bytesWritten;
    },
    async close() {
      await handle.close();
      done(bytes, hash.digest('hex'));
    },
  };
}

function textSink(done: (text: string) => void): PartSink {
  const chunks: Buffer[] = [];
  return {
    write: async (chunk) => void chunks.push(chunk),
    close: async () => done(Buffer.concat(chunks).toString('utf8')),
  };
}

/** Python's bytes.strip()/rstrip() of ASCII whitespace, on a latin1 string. */
function pythonStrip(text: string, sides: 'end' | 'both'): string {
  const trimmed = text.replace(/[ \t\n\r\v\f]+$/, '');
  return sides === 'end' ? trimmed : trimmed.replace(/^[ \t\n\r\v\f]+/, '');
}

/**
 * Incremental multipart parser that reads a form as aiohttp's MultipartReader does (lines end at LF, and
 * are stripped), feeding each part's bytes to a sink without holding the body in memory.
 */
class MultipartParser {
  /** `--boundary`, as aiohttp compares a whole line with it. */
  private readonly boundaryLine: string;
  /** What ends a part's content: aiohttp looks for the boundary after a CRLF. */
  private readonly delimiter: Buffer;
  private buf: Buffer = Buffer.alloc(0);
  private state: 'preamble' | 'boundary' | 'headers' | 'body' | 'done' = 'preamble';
  private headerLines: string[] = [];
  private sink: PartSink = DISCARD;

  constructor(
    boundary: string,
    private readonly openPart: (disposition: string) => Promise<PartSink>,
  ) {
    this.boundaryLine = `--${boundary}`;
    this.delimiter = Buffer.from(`\r\n--${boundary}`);
  }

  async push(chunk: Buffer): Promise<void> {
    this.buf = this.buf.length > 0 ? Buffer.concat([this.buf, chunk]) : chunk;
    while (await this.advance());
  }

  end(): void {
    if (this.state !== 'done') throw new Error('truncated multipart body');
  }

  async dispose(): Promise<void> {
    await this.sink.close();
    this.sink = DISCARD;
  }

  /** Consumes what it can from the buffer; false when it needs more input. */
  private async advance(): Promise<boolean> {
    switch (this.state) {
      case 'preamble':
        return this.skipPreamble();
      case 'boundary':
        return this.afterBoundary();
      case 'headers':
        return this.readHeaders();
      case 'body':
        return this.readPartData();
      case 'done':
        this.buf = Buffer.alloc(0);
        return false;
    }
  }

  /** The next line up to and with its LF (aiohttp's StreamReader.readline), or null until one is whole. */
  private readLine(): string | null {
    const at = this.buf.indexOf(0x0a);
    if (at < 0) {
      if (this.buf.length > MAX_PART_HEADER_BYTES) throw new Error('multipart line too long');
      return null;
    }
    const line = this.buf.subarray(0, at + 1).toString('latin1');
    this.buf = this.buf.subarray(at + 1);
    return line;
  }

  /** aiohttp's _read_until_first_boundary: lines are skipped until one, without its trailing whitespace, is the boundary. */
  private skipPreamble(): boolean {
    const line = this.readLine();
    if (line === null) return false;
    const bare = pythonStrip(line, 'end');
    if (bare === this.boundaryLine) this.state = 'headers';
    else if (bare === `${this.boundaryLine}--`) this.state = 'done';
    return true;
  }

  /** aiohttp's _read_boundary: the rest of the delimiter's line, without trailing whitespace, is nothing (a part follows) or `--` (the end). */
  private afterBoundary(): boolean {
    const line = this.readLine();
    if (line === null) return false;
    const rest = pythonStrip(line, 'end');
    if (rest === '') this.state = 'headers';
    else if (rest === '--') this.state = 'done';
    else throw new Error('multipart boundary line has more than the boundary');
    return true;
  }

  /** aiohttp's _read_headers: lines up to LF, each stripped, until an empty one. */
  private async readHeaders(): Promise<boolean> {
    const line = this.readLine();
    if (line === null) return false;
    const bare = pythonStrip(line, 'both');
    if (bare !== '') {
      this.headerLines.push(Buffer.from(bare, 'latin1').toString('utf8'));
      return true;
    }
    const disposition = this.headerLines.find((header) => /^content-disposition\s*:/i.test(header));
    this.headerLines = [];
    this.sink = await this.openPart(disposition?.slice(disposition.indexOf(':') + 1).trim() ?? '');
    this.state = 'body';
    return true;
  }

  private async readPartData(): Promise<boolean> {
    const at = this.buf.indexOf(this.delimiter);
    if (at < 0) {
      const safe = this.buf.length - this.delimiter.length + 1; // a delimiter may straddle the next chunk
      if (safe > 0) {
        await this.sink.write(this.buf.subarray(0, safe));
        this.buf = this.buf.subarray(safe);
      }
      return false;
    }
    if (at > 0) await this.sink.write(this.buf.subarray(0, at));
    await this.dispose();
    this.buf = this.buf.subarray(at + this.delimiter.length);
    this.state = 'boundary';
    return true;
  }
}

/** Streams a multipart/form-data body: text fields are collected, the first `image` file part goes to `spoolPath`. */
async function readForm(req: IncomingMessage, spoolPath: string): Promise<Form> {
  const form: Form = { fields: new Map(), file: null };
  const boundary = multipartBoundary(req.headers['content-type']);
  if (boundary === null) {
    req.resume();
    await finished(req);
    return form;
  }
  let imageClaimed = false;
  const parser = new MultipartParser(boundary, async (disposition) => {
    const name = dispositionParam(disposition, 'name');
    const filename = dispositionParam(disposition, 'filename');
    if (filename !== undefined && name === 'image' && !imageClaimed) {
      imageClaimed = true;
      return fileSink(spoolPath, (bytes, sha256) => {
        form.file = { filename, bytes, sha256 };
      });
    }
    if (filename !== undefined || name === undefined || form.fields.has(name)) return DISCARD;
    return textSink((text) => form.fields.set(name, text));
  });
  try {
    for await (const chunk of decodedBody(req)) await parser.push(chunk as Buffer);
    parser.end();
  } finally {
    await parser.dispose();
  }
  return form;
}
