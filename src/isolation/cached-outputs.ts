// What a key is shown of the nodes ComfyUI took from its cache: their files are an earlier prompt's, maybe another key's, and only the key's own are named.

import { posix } from 'node:path';
import type { JobRecord, OwnershipStore } from '../store/types.js';
import { cachedNodesOf, fileId, namedFileOf, outputItemFile, type NamedFile } from './files.js';
import { outputsSummary } from './job-outputs-summary.js';

/** Whether a file that an earlier prompt made may be shown to a key as its prompt's output, the prompt having run on `backend`. */
export type EarlierFileCheck = (keyId: string, backend: string, file: NamedFile) => boolean;

/**
 * A file an earlier prompt made is the key's to be shown when the key owns it and its jobs made it last on the
 * prompt's backend. With one backend, a file no known job made (its job was forgotten) is the owner's too; with
 * `several` (where one name is a file of each backend) it may be another key's file of the name on this backend,
 * which ComfyUI's cache gives back, and is not shown.
 */
export function earlierFileCheck(
  ownership: Pick<OwnershipStore, 'ownerOf'>,
  producerOf: (type: string, subfolder: string, filename: string) => JobRecord | undefined,
  several: boolean,
): EarlierFileCheck {
  return (keyId, backend, file) => {
    if (ownership.ownerOf('file', fileId(file.type, file.subfolder, file.filename)) !== keyId) return false;
    const producer = producerOf(file.type, file.subfolder, file.filename);
    return producer === undefined ? !several : producer.key_id === keyId && producer.backend === backend;
  };
}

/** A string with a file's shape: a name ending in an extension, maybe annotated with its folder (`mesh.glb [output]`). */
const FILE_SHAPED = /\.[\p{L}\p{N}]{1,10}(?: \[(?:output|input|temp)\])?$/u;

/**
 * The file an item of a node's UI output names: a `{filename, subfolder, type}` object, or, in any list but
 * `text` (whose strings are text), a string of a file's shape, read as a path in output unless annotated:
 * Preview3D lists its model and background image so (`["3d/mesh.glb", {...}, "temp/bg_….png"]`), and
 * ComfyUI's jobs API counts and previews a 3D file's name given so as an output.
 */
function cachedItemFile(field: string, item: unknown): NamedFile | undefined {
  if (typeof item !== 'string') return outputItemFile(item);
  if (field === 'text' || !FILE_SHAPED.test(item)) return undefined;
  const folder = posix.dirname(item);
  return namedFileOf(posix.basename(item), folder === '.' ? '' : folder, 'output');
}

/**
 * A cached node's UI output (`{images: [{filename, subfolder, type}], animated: [...], ...}`) as the key is
 * shown it: the same object when it names no file the key may not see; without those files when some of
 * its files are the key's; null when it names files and none is the key's (nothing of the entry is then shown).
 * A file named by a path string (see cachedItemFile) is a file too.
 */
export function ownCachedOutput(output: unknown, isOwn: (file: NamedFile) => boolean): unknown {
  if (typeof output !== 'object' || output === null || Array.isArray(output)) return output;
  let named = 0;
  let kept = 0;
  const shown: Record<string, unknown> = {};
  for (const [field, items] of Object.entries(output)) {
    if (!Array.isArray(items)) {
      shown[field] = items;
      continue;
    }
    shown[field] = items.filter((item) => {
      const file = cachedItemFile(field, item);
      if (!file) return true;
      named += 1;
      if (!isOwn(file)) return false;
      kept += 1;
      return true;
    });
  }
  if (kept === named) return output;
  return kept === 0 ? null : shown;
}

/** A prompt's `outputs` (by node) as the key is shown them: each cached node's through ownCachedOutput, a node with nothing left left out. */
export function ownCachedOutputs(
  outputs: Record<string, unknown>,
  cachedNodes: ReadonlySet<string>,
  isOwn: (file: NamedFile) => boolean,
): Record<string, unknown> {
  if (cachedNodes.size === 0) return outputs;
  let changed = false;
  const shown: Record<string, unknown> = {};
  for (const [node, output] of Object.entries(outputs)) {
    const own = cachedNodes.has(node) ? ownCachedOutput(output, isOwn) : output;
    if (own !== output) changed = true;
    if (own !== null) shown[node] = own;
  }
  return changed ? shown : outputs;
}

/**
 * A job of ComfyUI's jobs API with its detail fields (`/api/jobs/{id}`: `outputs`, `execution_status`) as the key
 * is shown it, changed in place: its cached nodes' outputs through ownCachedOutputs, `outputs_count` and
 * `previewable_outputs_count` less what was left out, and `preview_output` picked again (as ComfyUI picks it)
 * when it was left out.
 */
export function showOwnCachedJobOutputs(job: Record<string, unknown>, isOwn: (file: NamedFile) => boolean): void {
  const { outputs, execution_status: status } = job as { outputs?: unknown; execution_status?: { messages?: unknown } };
  if (typeof outputs !== 'object' || outputs === null) return;
  const all = outputs as Record<string, unknown>;
  const shown = ownCachedOutputs(all, new Set(cachedNodesOf(status?.messages)), isOwn);
  if (shown === all) return;
  const before = outputsSummary(all);
  const after = outputsSummary(shown);
  job.outputs = shown;
  if (typeof job.outputs_count === 'number') job.outputs_count -= before.count - after.count;
  if (typeof job.previewable_outputs_count === 'number') job.previewable_outputs_count -= before.previewable - after.previewable;
  if (job.preview_output === undefined || isShown(job.preview_output, shown)) return;
  if (after.preview) job.preview_output = after.preview;
  else delete job.preview_output;
}

/** Whether a `preview_output` (an item with its `nodeId`) is among the outputs shown: its node is, and so is its file if it names one. */
function isShown(preview: unknown, shown: Record<string, unknown>): boolean {
  const { nodeId, filename, subfolder, type } = (preview ?? {}) as Record<string, unknown>;
  const output = typeof nodeId === 'string' ? shown[nodeId] : undefined;
  if (typeof output !== 'object' || output === null) return false;
  if (typeof filename !== 'string') return true;
  return Object.values(output).some(
    (items) =>
      Array.isArray(items) &&
      items.some((item: Record<string, unknown> | null) => item?.filename === filename && item.subfolder === subfolder && item.type === type),
  );
}
