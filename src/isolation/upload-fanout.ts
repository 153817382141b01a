// Sends one upload to several backends at once, so that a prompt loading the file can run on any of them: the body is streamed to all, and their answers must agree.

import type { IncomingMessage } from 'node:http';
import { finished, PassThrough, type Readable } from 'node:stream';
import type { PoolBackend } from '../backends/backend-pool.js';
import { GatewayError, uploadIncomplete } from '../errors.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import { parseComfyJson } from './json-body.js';

/** The file ComfyUI says an upload was stored as. */
export interface StoredFile {
  name: string;
  subfolder: string;
  type: string;
}

/** The file an upload's answer names, or undefined when it is not a 200 that names one. */
export function storedFileOf(answer: UpstreamAnswer): StoredFile | undefined {
  const stored = answer.status === 200 ? (parseComfyJson(answer.body) as { name?: unknown; subfolder?: unknown; type?: unknown } | undefined) : undefined;
  if (typeof stored?.name !== 'string') return undefined;
  return {
    name: stored.name,
    subfolder: typeof stored.subfolder === 'string' ? stored.subfolder : '',
    type: typeof stored.type === 'string' ? stored.type : 'input',
  };
}

/**
 * Streams `body` (the client's upload, or its checked form) to every backend at once, each through its
 * own PassThrough: the body moves at the pace of the slowest backend still reading, and nothing is
 * buffered past the streams' own high-water marks. A backend that fails or answers before reading it all
 * is cut off, so it does not hold the others back; an error of `body` (a refused form, a client gone)
 * ends every backend's request.
 * Resolves the first backend's answer when every backend answered 200 naming the same stored file, or
 * when every one answered the same refusal (the form itself is wrong, as ComfyUI says). With `req`
 * null (an upload the gateway makes itself), `target` gives the method and path.
 * @throws GatewayError 502 UPLOAD_INCOMPLETE otherwise, naming each backend that did not store it alike
 */
export async function uploadToEach(
  backends: readonly PoolBackend[],
  req: IncomingMessage | null,
  body: Readable,
  headers: Record<string, string | null>,
  target: { method: string; path: string } | Record<string, never> = {},
): Promise<UpstreamAnswer> {
  const branches = backends.map(() => new PassThrough().on('error', () => undefined));
  finished(body, { writable: false }, (error) => {
    if (error) for (const branch of branches) branch.destroy(error);
  });
  for (const branch of branches) body.pipe(branch);
  const settled = await Promise.allSettled(
    backends.map(async (backend, i) => {
      const branch = branches[i]!;
      try {
        return await backend.proxy.fetch(req, { ...target, headers, body: branch });
      } finally {
        body.unpipe(branch);
        branch.destroy();
      }
    }),
  );
  // What no backend read any more (all answered early) is read to its end, so the client gets the answer.
  body.resume();
  const answers = settled.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const first = answers[0];
  if (first && answers.length === backends.length && first.status !== 200 && answers.every((answer) => answer.status === first.status)) return first;
  const failed = problems(backends, settled);
  if (failed.length > 0) throw uploadIncomplete(failed);
  return first!;
}

/** What each backend that did not store the file as the first one did went wrong with; empty when all agree. */
function problems(backends: readonly PoolBackend[], settled: ReadonlyArray<PromiseSettledResult<UpstreamAnswer>>): Array<{ backend: string; problem: string }> {
  const stored = settled.map((result) => (result.status === 'fulfilled' ? storedFileOf(result.value) : undefined));
  const reference = stored.find((file) => file !== undefined);
  return settled.flatMap((result, i) => {
    const problem = problemOf(result, stored[i], reference);
    return problem === null ? [] : [{ backend: backends[i]!.name, problem }];
  });
}

function problemOf(result: PromiseSettledResult<UpstreamAnswer>, file: StoredFile | undefined, reference: StoredFile | undefined): string | null {
  if (result.status === 'rejected') {
    const error = result.reason as unknown;
    return error instanceof GatewayError && error.code === 'UPSTREAM_TIMEOUT' ? 'did not answer in time' : 'could not be reached';
  }
  if (result.value.status !== 200) return `answered ${result.value.status}`;
  if (!file) return 'answered 200 without naming the stored file';
  if (file.name !== reference!.name || file.subfolder !== reference!.subfolder || file.type !== reference!.type) {
    return `stored it as ${JSON.stringify(pathOf(file))}, not ${JSON.stringify(pathOf(reference!))}`;
  }
  return null;
}

function pathOf(file: StoredFile): string {
  return `${file.type}/${file.subfolder ? `${file.subfolder}/` : ''}${file.name}`;
}
