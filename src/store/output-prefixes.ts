// The prefixes the job registry's known outputs were saved under, by their shape, with the keys whose jobs made them.

import { posix } from 'node:path';
import { foldCase } from './file-name-case.js';
import type { JobOutput } from './types.js';

/** A file a save node names as ComfyUI does (folder_paths.get_save_image_path): `{prefix}_{counter:05}_`, then its extension. */
const NUMBERED = /^(.+)_\d{5,}_(\.[^.]*)?$/;

/**
 * The shape of a save prefix (`subfolder/name`, `/` between folders): case-folded, with each run of digits as
 * one `#`, so that prefixes that differ only by case, or by the digits ComfyUI puts for `%year%` and the
 * like, share it.
 */
export function prefixShape(prefix: string): string {
  return foldCase(prefix).replace(/\d+/g, '#');
}

/** The prefix (`subfolder/name`) an output of a save node was numbered after, or undefined for a file not named so. */
function prefixOf(file: JobOutput): string | undefined {
  const stem = NUMBERED.exec(file.filename)?.[1];
  if (stem === undefined) return undefined;
  // ComfyUI on Windows names subfolders with backslashes.
  const folder = file.subfolder.replaceAll('\\', '/');
  return folder === '' ? stem : posix.normalize(`${folder}/${stem}`);
}

/**
 * Per prefix shape, the prefixes of known output files (type `output`) of that shape, each with how many
 * files of each key: a prompt's save prefix is compared with the few of its shape, never with every job.
 */
export class OutputPrefixes {
  private readonly byShape = new Map<string, Map<string, Map<string, number>>>();

  /** Counts a job's output file under its prefix. */
  noted(keyId: string, file: JobOutput): void {
    const prefix = file.type === 'output' ? prefixOf(file) : undefined;
    if (prefix === undefined) return;
    const shape = prefixShape(prefix);
    let prefixes = this.byShape.get(shape);
    if (!prefixes) this.byShape.set(shape, (prefixes = new Map()));
    let keys = prefixes.get(prefix);
    if (!keys) prefixes.set(prefix, (keys = new Map()));
    keys.set(keyId, (keys.get(keyId) ?? 0) + 1);
  }

  /** Undoes `noted` for a job that is forgotten. */
  forgotten(keyId: string, file: JobOutput): void {
    const prefix = file.type === 'output' ? prefixOf(file) : undefined;
    if (prefix === undefined) return;
    const shape = prefixShape(prefix);
    const keys = this.byShape.get(shape)?.get(prefix);
    const count = keys?.get(keyId);
    if (!keys || count === undefined) return;
    if (count > 1) return void keys.set(keyId, count - 1);
    keys.delete(keyId);
    if (keys.size > 0) return;
    const prefixes = this.byShape.get(shape)!;
    prefixes.delete(prefix);
    if (prefixes.size === 0) this.byShape.delete(shape);
  }

  /** The known prefixes of this shape (see prefixShape), each with the keys whose jobs saved files under it. */
  ofShape(shape: string): Array<{ prefix: string; keyIds: string[] }> {
    return [...(this.byShape.get(shape) ?? [])].map(([prefix, keys]) => ({ prefix, keyIds: [...keys.keys()] }));
  }
}
