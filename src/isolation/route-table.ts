// Every ComfyUI route the gateway knows, 2024 releases to current, with what a user key gets on each: deny by default.

import { DEFAULT_HISTORY_WINDOW, HISTORY_LOOKUPS_AT_ONCE } from './history-window.js';

/** What a user key gets on a route. Admin keys get everything. */
export type Access =
  /** Forwarded as it is. */
  | 'forwarded'
  /** Answered by an isolation handler: the key's own share only. */
  | 'filtered'
  /** The key's own ComfyUI user under `--multi-user`, read-only without it. */
  | 'per-user'
  /** 403 for user keys; `--user-route` cannot open it. */
  | 'admin-only';

/** The handler that answers a filtered or per-user route, or a forwarded one the gateway answers itself (from its cache). */
export type Handler =
  | 'prompt'
  | 'history-list'
  | 'history-entry'
  | 'history-change'
  | 'queue-list'
  | 'queue-change'
  | 'interrupt'
  | 'view'
  | 'upload'
  | 'system-stats'
  | 'model-folders'
  | 'users'
  | 'user-data'
  | 'jobs-list'
  | 'job'
  | 'job-cancel'
  | 'jobs-cancel'
  | 'catalog'
  | 'websocket';

export interface RouteEntry {
  /**
   * Path patterns as aiohttp declares them: `{name}` is one segment; `{name:path}` is one segment that
   * may hold an encoded slash (`workflows%2Fa.json`); `{name:*}` is the rest of the path; `{name:file}`
   * is one segment ending in a static file's extension.
   */
  patterns: readonly string[];
  /** Methods; GET includes HEAD, as aiohttp registers it. */
  methods: readonly string[];
  /** Whether ComfyUI also serves the patterns under `/api` (its shared route table does; sub-apps and static mounts do not). */
  alsoUnderApi: boolean;
  access: Access;
  handler?: Handler;
  /** Whether the handler also runs for admin keys (claims, secret removal, file headers), not only for user keys. */
  forAdmins?: boolean;
  /** What a user key gets, for docs/security.md. */
  userGets: string;
}

const FORWARDED_READ = 'forwarded';

/** The table. Order matters only for overlapping patterns: the first match wins. */
export const ROUTES: readonly RouteEntry[] = [
  { patterns: ['/ws'], methods: ['GET'], alsoUnderApi: true, access: 'filtered', handler: 'websocket', userGets: 'the WebSocket; see below' },
  {
    patterns: ['/prompt'],
    methods: ['POST'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'prompt',
    forAdmins: true,
    userGets:
      "the prompt becomes a job of the key (a `prompt_id` is minted when none is given; when ComfyUI answers with another `prompt_id`, as releases before v0.3.45 do, the job takes that one; releases of 2026 take only a UUID in canonical lowercase form, and refuse any other with 400 `invalid_prompt_id`, which the client gets as it is, or which ends a held job as `error`). ComfyUI is given the gateway's own `client_id`, and the job's events go to the key's sockets with the client's. `front` and `number` are dropped (the gateway's fair queue orders jobs). A taken `prompt_id` or a `client_id` that belongs to another key is refused with 403 (on replicas a chosen `prompt_id` is recorded before it is sent, so two replicas cannot both send it), and so is a loader node (`LoadImage`, `LoadImageMask`, `LoadImageOutput`, `WebcamCapture`, `LoadAudio`, `RecordAudio`, `LoadVideo`, `LoadLatent`, `Load3D`) that names a file the key does not own, a core node whose file access the gateway cannot keep to the key's own, with the reason (see [Core nodes that touch files](#core-nodes-that-touch-files): the nodes that load a whole input folder, `LoadImageDataSetFromFolder` and its kin; `SaveImageDataSetToFolder` and `SaveImageTextDataSetToFolder`, which write fixed names; `SaveTrainingDataset` and `LoadTrainingDataset`), and any other node whose input names a file another key owns, in any spelling ComfyUI reads (a custom node that loads an absolute path is not checked: keep such nodes out with the prompt policy's `deny_nodes` or `allow_nodes`). A file name ComfyUI could read as another file (see `/view`) is refused with 400, and so is a loader's file name holding `%`, `*`, `?`, `[`, `]`, `{` or `}` (ComfyUI opens loaded images, videos and audio with FFmpeg, which reads `a%d.png` as `a0.png`, `a1.png`, … of any key: upload such a file under another name), and a loader's file given by a link (ComfyUI knows its name only when it runs the graph), and a save node's `filename_prefix` that holds `%batch_num%` or is given by a link (ComfyUI numbers such files without looking at those already there, so they would replace another key's), or that leaves its folder once normalised (a leading `/`, a drive, a leading `..`). A `filename_prefix` that differs only by case from a prefix that another key's known outputs were saved under is refused with 403 (on macOS ComfyUI numbers `CAT` after the names spelt `CAT` only, and its files land on `cat`'s), and so is an input naming another key's file in other case. With several backends, a loader's output or temp file must be one the key's own job made last, and the prompt runs on that job's backend (outputs of two backends in one prompt: 403); any other node's string naming an output or temp file of the key's that no job the registry still knows made is refused with 403 (it may be another key's file of that name on the backend the prompt runs on).",
  },
  { patterns: ['/prompt'], methods: ['GET'], alsoUnderApi: true, access: 'forwarded', userGets: 'forwarded (the length of the queue)' },
  {
    patterns: ['/history'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'history-list',
    forAdmins: true,
    userGets: `only its own prompts; others are absent, as if they never existed. \`max_items\` and \`offset\` keep ComfyUI's meaning over the key's own completed entries. Without \`max_items\` the window is the newest ${DEFAULT_HISTORY_WINDOW} of them (from \`offset\` on, with \`offset\`). The window is looked up with \`/history/{prompt_id}\` for the key's own prompts only (at most ${HISTORY_LOOKUPS_AT_ONCE} at a time, and only until it is full), never with ComfyUI's whole history, so its cost follows the key's own work. Its order is the order the key submitted its prompts in; ComfyUI's is the order they completed in, which is the same unless the key reordered its own queue (\`front\`, \`number\`).`,
  },
  {
    patterns: ['/history/{prompt_id}'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'history-entry',
    forAdmins: true,
    userGets: "its own prompt; `{}` for another key's id, as for an unknown one",
  },
  {
    patterns: ['/history'],
    methods: ['POST'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'history-change',
    forAdmins: true,
    userGets: '`delete` and `clear` act on its own entries only',
  },
  {
    patterns: ['/queue'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'queue-list',
    forAdmins: true,
    userGets:
      "its own items in full; others' reduced to `[number, id, {}, {}, []]`, enough to see its place in line; the id stands in for another key's prompt id (the same on every poll) and is never the id itself",
  },
  {
    patterns: ['/queue'],
    methods: ['POST'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'queue-change',
    forAdmins: true,
    userGets: '`delete` and `clear` act on its own pending prompts only',
  },
  {
    patterns: ['/interrupt'],
    methods: ['POST'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'interrupt',
    forAdmins: true,
    userGets:
      "acts only on the key's own prompt: with a `prompt_id`, only if it is the key's and runs now (ComfyUI releases before September 2025 stop whatever runs, whichever id they are given); without one, only if the running prompt is the key's. Otherwise a no-op 200, as ComfyUI answers for a prompt that is not running.",
  },
  {
    patterns: ['/view'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'view',
    forAdmins: true,
    userGets:
      "only files it uploaded or its prompts produced; anything else is an empty 404, exactly like a missing file. A name ComfyUI could read as another file is refused with 400: a `blake3:` hash name, an absolute, Windows or `..` path, an annotation spelt other than `name [output]`, and what Windows reads as another file: a `:` (a stream), a file or folder name ending in a dot or a space (Windows drops them), a device name (`CON`, `PRN`, `AUX`, `NUL`, `COM1`…, `LPT1`…, with an extension too) or a name shaped as an 8.3 short name (`~` and digits before the extension or the end, as in `MY-PHO~1.PNG`). Names are compared as Windows and macOS compare them, whatever the backend's disk: a file in other case than another key's (`BOB.PNG` for `bob.png`) is another key's file. Every answer is served with `Content-Security-Policy: sandbox` and `X-Content-Type-Options: nosniff`, so an uploaded page or SVG opened from the gateway runs no script there. With several backends, which number their outputs each on its own (the same name is another file, maybe another key's, on each), an output or temp file is served from the backend of the key's own job that made it, only while that job is the newest to make a file of that name in any spelling (another case, `./sub` for `sub`); when no job is known to have made it, only from a backend that alone has a file of that name, and only while every backend is up and answers whether it has one. Outputs are recorded from the history and `executed` events passing through, and, when a file is asked for that has not been seen yet, from the key's 8 most recent prompts (at most 8 `/history` lookups per miss, shared by the misses that arrive meanwhile).",
  },
  {
    patterns: ['/upload/image', '/upload/mask'],
    methods: ['POST'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'upload',
    forAdmins: true,
    userGets:
      "the stored file is recorded as the key's. Uploads go to `input` only: `type=output` or `type=temp` is refused with 403, and so is `overwrite=true` on a file another key owns, in any case (`BOB.PNG` over `bob.png`), or a mask whose `original_ref` names an image the key does not own (read as Python's `json.loads` reads it, `NaN` included; one that is not a JSON object is 400). When the key's prompt policy (or the default one) sets `max_width` or `max_height`, an upload with `overwrite` must hold an image whose header gives a size within them (its longer side against each): an image over them, or of a size the gateway cannot read, is refused with 403 `PROMPT_POLICY`. When it sets `max_batch_size`, an overwriting upload must be a whole file (at most 4 MiB) the gateway knows holds one image (a still PNG, a JPEG or a simple WebP; see the API's Loaded images). When it sets none of these but sets `max_frames`, an overwriting upload that may be a safetensors file must hold a latent whose header the gateway reads, within it (see the API's Loaded videos, latents and 3D scenes). The form is read as it streams on to ComfyUI, whose end is held back until these checks pass, so a refused upload is never stored. An `overwrite=true` upload of a name nobody owns claims it before ComfyUI writes it, on every replica at once: another key's overwriting upload of the name at the same moment gets 403, and another key's upload without overwrite that ComfyUI stored under that name meanwhile, or under a name that differs from another key's file only by case, gets 409 `FILE_NAME_TAKEN`, and so does an upload without overwrite of the very bytes another key holds under that name (ComfyUI releases since 2024 answer with that file and store no copy, each time it is sent): upload it under another name. An upload that stores nothing under the name it claimed (refused, cut off, or stored under another name) lets its claim go. A form that aiohttp could read another way (bytes before the first boundary, a line of part headers ended by LF alone, a `_charset_` field, a part with an encoding, a `Content-Length`, `filename*`, escapes) is refused with 400. With several backends the form streams to every backend at once, and the file is the key's only when each stored it under the same name; otherwise the answer is 502 `UPLOAD_INCOMPLETE`, naming the backends that did not (while a backend is down, at once, and nothing is stored: it would come back without the file, and store another key's upload of that name under it). With several backends a mask's `original_ref` must be an uploaded image (each backend numbers its outputs on its own, so an output's name is another file on each): 403 otherwise.",
  },
  {
    patterns: ['/system_stats'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'system-stats',
    forAdmins: true,
    userGets: "one healthy backend's stats, without `argv` (it can hold paths and secrets); admin keys get every backend's",
  },
  {
    patterns: ['/api/jobs'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'jobs-list',
    forAdmins: true,
    userGets:
      "only its own jobs (newer ComfyUI), from the job registry: `offset` and `limit` are read as ComfyUI reads them (Python's `int()` of the text; a negative offset is 0, a limit under 1 is refused with 400), ComfyUI checks the other parameters with a one-job list, then answers for each job of the page (at most 8 lookups at once), so the cost is the page's, never ComfyUI's whole list; a job the gateway holds is listed as pending. Jobs from before the registry are not listed.",
  },
  {
    patterns: ['/api/jobs/cancel'],
    methods: ['POST'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'jobs-cancel',
    forAdmins: true,
    userGets:
      "cancels its own jobs only (other keys' ids are left out of the list sent on): a job the gateway holds is cancelled there, the others are ComfyUI's to cancel as for `/api/jobs/{job_id}/cancel` (below), and the client gets ComfyUI's answer",
  },
  {
    patterns: ['/api/jobs/{job_id}'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'job',
    forAdmins: true,
    userGets: "its own job; another key's is 404, as an unknown one",
  },
  {
    patterns: ['/api/jobs/{job_id}/cancel'],
    methods: ['POST'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'job-cancel',
    forAdmins: true,
    userGets:
      'cancels its own job only (another key\'s is `{"cancelled": false}`, as an unknown one). A job the gateway holds is cancelled there. ComfyUI takes a pending job out of its queue, and the job registry has it `cancelled` by the time the client gets ComfyUI\'s answer (`{"cancelled": true}`): its `max_queued` place is free, it is never sent again and not metered; ComfyUI interrupts a running job, which ends as `interrupted` by its events, as after `/interrupt`',
  },
  {
    patterns: ['/users'],
    methods: ['GET', 'POST'],
    alsoUnderApi: true,
    access: 'per-user',
    handler: 'users',
    userGets: 'only its own ComfyUI user; creating users is refused',
  },
  {
    patterns: ['/settings', '/settings/{id}', '/userdata', '/v2/userdata', '/userdata/{file:path}', '/userdata/{file:path}/move/{dest:path}'],
    methods: ['GET', 'POST', 'DELETE'],
    alsoUnderApi: true,
    access: 'per-user',
    handler: 'user-data',
    forAdmins: true,
    userGets:
      "with ComfyUI started with `--multi-user` (the gateway asks ComfyUI once a minute, again whenever a backend reconnects, and on every such request while its event socket to ComfyUI is closed, since a restarted ComfyUI may run with it or without it): the key's own ComfyUI user, created on its first use and set as `Comfy-User` on every request (a client's own `Comfy-User` is dropped); made again when ComfyUI no longer lists it (a ComfyUI started with a fresh or restored `users.json`), so the key starts with an empty user of its own rather than failing. Without `--multi-user`, ComfyUI's one user is the operator's (its settings, saved workflows, and files custom nodes keep there, credentials among them): a user key reads it as a user who has saved nothing (`/settings` is `{}`, a setting `null`, anything else 404) and may not write it.",
  },
  {
    patterns: [
      '/models/custom_nodes',
      '/models/datasets',
      '/experiment/models/custom_nodes',
      '/experiment/models/datasets',
      '/experiment/models/preview/custom_nodes/{index}/{file:*}',
      '/experiment/models/preview/datasets/{index}/{file:*}',
      '/view_metadata/custom_nodes',
      '/view_metadata/datasets',
    ],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'admin-only',
    userGets:
      'refused: ComfyUI lists every file under these folders, whatever its kind (custom nodes keep their own data there, and training datasets are kept in `datasets`), and serves any image of them as a model preview',
  },
  {
    patterns: ['/object_info', '/object_info/{node_class}', '/embeddings', '/models', '/models/{folder}'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'forwarded',
    handler: 'catalog',
    forAdmins: true,
    userGets:
      'forwarded to a healthy backend; the gateway keeps a 200 answer for every key (per path and query, at most 64 answers and 64 MiB) for up to 60 s, and drops them all when a backend (re)connects or comes up. In node definitions, the lists of the files of the input folder that ComfyUI gives the loaders (`LoadImage`, `LoadAudio`, `LoadVideo`, `Load3D`, …) are empty for a user key: they would name the uploads of every key',
  },
  {
    patterns: ['/features', '/extensions', '/view_metadata/{folder}', '/experiment/models/{folder}', '/experiment/models/preview/{folder}/{index}/{file:*}'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'forwarded',
    userGets: FORWARDED_READ,
  },
  {
    patterns: ['/experiment/models'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'filtered',
    handler: 'model-folders',
    userGets: "the model folders' names, each with `folders` empty: ComfyUI lists the absolute paths of the server's folders there",
  },
  {
    patterns: ['/i18n', '/workflow_templates', '/global_subgraphs', '/global_subgraphs/{id}', '/node_replacements'],
    methods: ['GET'],
    alsoUnderApi: true,
    access: 'forwarded',
    userGets: 'forwarded (web UI support)',
  },
  {
    patterns: ['/api/workflow_templates/{pack}/{file:*}', '/templates/{file:*}', '/docs/{file:*}'],
    methods: ['GET'],
    alsoUnderApi: false,
    access: 'forwarded',
    userGets: 'forwarded (templates and embedded docs)',
  },
  { patterns: ['/'], methods: ['GET'], alsoUnderApi: true, access: 'forwarded', userGets: 'forwarded: the web UI page' },
  {
    patterns: ['/{name:file}', '/assets/{file:*}', '/scripts/{file:*}', '/lib/{file:*}', '/extensions/{file:*}', '/cursor/{file:*}', '/fonts/{file:*}'],
    methods: ['GET'],
    alsoUnderApi: false,
    access: 'forwarded',
    userGets:
      "forwarded: the web UI's files, legacy and current (`/{name:file}` is a top-level `.html`, `.js`, `.css`, `.json`, `.ico`, `.png`, `.svg`, `.webp`, `.woff2` or `.map` file)",
  },
  { patterns: ['/free'], methods: ['POST'], alsoUnderApi: true, access: 'admin-only', userGets: '403 `ROUTE_NOT_ALLOWED`: admin keys only' },
  {
    patterns: ['/internal', '/internal/{rest:*}'],
    methods: ['*'],
    alsoUnderApi: false,
    access: 'admin-only',
    userGets: "403 `ROUTE_NOT_ALLOWED`: ComfyUI's logs, server paths and log subscriptions",
  },
  {
    patterns: ['/api/assets', '/api/assets/{rest:*}', '/api/tags', '/api/tasks', '/api/tasks/{rest:*}'],
    methods: ['*'],
    alsoUnderApi: false,
    access: 'admin-only',
    userGets: "403 `ROUTE_NOT_ALLOWED`: every user's files, and `POST /api/assets/download` makes the server fetch a URL (newer ComfyUI)",
  },
  {
    patterns: [
      '/manager/{rest:*}',
      '/customnode/{rest:*}',
      '/snapshot/{rest:*}',
      '/externalmodel/{rest:*}',
      '/comfyui_manager/{rest:*}',
      '/v2/manager/{rest:*}',
      '/v2/customnode/{rest:*}',
      '/v2/snapshot/{rest:*}',
      '/v2/externalmodel/{rest:*}',
      '/v2/comfyui_manager/{rest:*}',
    ],
    methods: ['*'],
    alsoUnderApi: true,
    access: 'admin-only',
    userGets: '403 `ROUTE_NOT_ALLOWED`: ComfyUI-Manager installs packages and custom nodes',
  },
];

/** Extensions of the web UI's top-level static files (`/{name:file}`). */
const STATIC_FILE = /\.(?:html|js|css|json|ico|png|svg|webp|woff2|map)$/;

/** A route matched on a request: its entry and its decoded path parameters. */
export interface RouteMatch {
  entry: RouteEntry;
  params: Record<string, string>;
  /** The path a `{name:*}` parameter took (`a/b.png`), which ComfyUI or a static mount joins to a folder; null without one. */
  rest: string | null;
}

type Part = { literal: string } | { param: string; kind: 'segment' | 'path' | 'rest' | 'file' };

interface CompiledPattern {
  entry: RouteEntry;
  parts: Part[];
}

function compile(pattern: string, entry: RouteEntry): CompiledPattern {
  const parts =
    pattern === '/'
      ? []
      : pattern
          .slice(1)
          .split('/')
          .map((segment): Part => {
            const param = /^\{(\w+)(?::(path|\*|file))?\}$/.exec(segment);
            if (!param) return { literal: segment };
            const kind = param[2] === '*' ? 'rest' : param[2] === 'path' ? 'path' : param[2] === 'file' ? 'file' : 'segment';
            return { param: param[1]!, kind };
          });
  return { entry, parts };
}

const COMPILED: CompiledPattern[] = ROUTES.flatMap((entry) =>
  entry.patterns.flatMap((pattern) => [compile(pattern, entry), ...(entry.alsoUnderApi ? [compile(`/api${pattern === '/' ? '/' : pattern}`, entry)] : [])]),
);

/** A pattern's first segment when it is a literal; null when it may match any first segment (a parameter, or the pattern `/`). */
const firstLiteral = ({ parts }: CompiledPattern): string | null => (parts[0] && 'literal' in parts[0] ? parts[0].literal : null);

/** The patterns that may match a path whose first segment is no pattern's literal, in table order. */
const OPEN_FIRST = COMPILED.filter((pattern) => firstLiteral(pattern) === null);

/** By first segment, the only patterns that may match a path starting with it, in table order. */
const BY_FIRST_SEGMENT = new Map(
  [...new Set(COMPILED.map(firstLiteral))]
    .filter((first) => first !== null)
    .map((first) => [first, COMPILED.filter((pattern) => [null, first].includes(firstLiteral(pattern)))]),
);

/** Matches decoded segments against one pattern; an encoded slash may stand only in a `path` parameter. */
function matchParts(parts: Part[], segments: readonly string[]): Omit<RouteMatch, 'entry'> | null {
  // `/api/` is the index page: segments ['api', ''] against the pattern '/api/'.
  const params: Record<string, string> = {};
  for (let i = 0; i < parts.length; i += 1) {
    const part = parts[i]!;
    const segment = segments[i];
    if (segment === undefined) return null;
    if ('literal' in part) {
      if (segment !== part.literal) return null;
    } else if (part.kind === 'rest') {
      const rest = segments.slice(i);
      if (rest.every((s) => s === '') || rest.some((s) => s.includes('/'))) return null;
      params[part.param] = rest.join('/');
      return { params, rest: params[part.param]! };
    } else {
      if (segment === '' || (part.kind !== 'path' && segment.includes('/'))) return null;
      if (part.kind === 'file' && !STATIC_FILE.test(segment)) return null;
      params[part.param] = segment;
    }
  }
  return parts.length === segments.length ? { params, rest: null } : null;
}

/** The route a request reaches, or null when the table does not know it. `OPTIONS` matches a route of any method. */
export function matchRoute(method: string, segments: readonly string[]): RouteMatch | null {
  const asked = method === 'HEAD' ? 'GET' : method;
  for (const { entry, parts } of BY_FIRST_SEGMENT.get(segments[0] ?? '') ?? OPEN_FIRST) {
    if (asked !== 'OPTIONS' && !entry.methods.includes('*') && !entry.methods.includes(asked)) continue;
    const matched = matchParts(parts, segments);
    if (matched) return { entry, params: matched.params, rest: matched.rest };
  }
  return null;
}

/** Path prefixes that stay admin-only whatever `--user-route` says: the table's admin-only routes, without their trailing parameters. */
export const LOCKED_PREFIXES: readonly string[] = ROUTES.filter((entry) => entry.access === 'admin-only').flatMap((entry) =>
  entry.patterns.flatMap((pattern) => {
    const prefix = pattern.replace(/(?:\/\{[^}]+\})+$/, '');
    return entry.alsoUnderApi ? [prefix, `/api${prefix}`] : [prefix];
  }),
);

/** The table of routes in docs/security.md, generated from the table so the two cannot drift apart. */
export function routeTableMarkdown(): string {
  const rows = ROUTES.map((entry) => {
    const methods = entry.methods.includes('*') ? 'any' : entry.methods.join(', ');
    const paths = entry.patterns.map((p) => `\`${p}\``).join(', ');
    const api = entry.alsoUnderApi ? ' (also under `/api`)' : '';
    return `| ${methods} | ${paths}${api} | ${entry.userGets} |`;
  });
  return ['| methods | route | a user key gets |', '|---|---|---|', ...rows].join('\n');
}
