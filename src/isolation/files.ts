// Files as ComfyUI names them ({filename, subfolder, type}), reduced to one id for ownership records.

import { posix } from 'node:path';

const ANNOTATION = / \[(output|input|temp)\]$/;

/** The ownership id of a file: `type/subfolder/name`, with the subfolder normalised as ComfyUI joins it. */
export function fileId(type: string, subfolder: string, filename: string): string {
  const folder = posix
    .normalize(subfolder || '.')
    .replace(/^\.\/?$/, '')
    .replace(/\/+$/, '');
  return `${type}/${folder}/${posix.basename(filename)}`;
}

/** The file an upload is stored as: ComfyUI joins the name (which may hold folders) to the subfolder. */
export function uploadedFileId(type: string, subfolder: string, name: string): string {
  return fileId(type, posix.join(subfolder || '.', posix.dirname(name)), name);
}

/**
 * The file a `/view` query (or a LoadImage input) names: `filename`, `type` (default output, or `input`
 * for inputs) and `subfolder`; a name ending in ` [output]`, ` [input]` or ` [temp]` picks the folder.
 */
export function fileIdOf(filename: string, subfolder: string, defaultType: string, type?: string | null): string {
  const annotated = ANNOTATION.exec(filename);
  const name = annotated ? filename.slice(0, -annotated[0].length) : filename;
  return fileId(annotated?.[1] ?? type ?? defaultType, subfolder, name);
}

/** A file as ComfyUI names it in a node's UI output. */
export interface NamedFile {
  filename: string;
  subfolder: string;
  type: string;
}

/** The files listed in a node's UI output (`{images: [{filename, subfolder, type}], gifs: [...], ...}`). */
export function outputFiles(output: unknown): NamedFile[] {
  if (typeof output !== 'object' || output === null) return [];
  const files: NamedFile[] = [];
  for (const items of Object.values(output)) {
    if (!Array.isArray(items)) continue;
    for (const item of items as Array<Record<string, unknown>>) {
      if (typeof item?.filename !== 'string') continue;
      files.push({
        filename: item.filename,
        subfolder: typeof item.subfolder === 'string' ? item.subfolder : '',
        type: typeof item.type === 'string' ? item.type : 'output',
      });
    }
  }
  return files;
}

/** The ownership ids of the files listed in a node's UI output. */
export function outputFileIds(output: unknown): string[] {
  return outputFiles(output).map((file) => fileId(file.type, file.subfolder, file.filename));
}

/** What a history entry tells of its prompt's outputs: the ownership ids of its files, and whether its run completed. */
export interface PromptOutputs {
  files: string[];
  completed: boolean;
}

/** The outputs of a history entry (`{outputs: {node: ui output}, status: {completed}}`). */
export function promptOutputsOf(entry: unknown): PromptOutputs {
  if (typeof entry !== 'object' || entry === null) return { files: [], completed: false };
  const { outputs, status } = entry as { outputs?: Record<string, unknown>; status?: { completed?: boolean } };
  return { files: Object.values(outputs ?? {}).flatMap(outputFileIds), completed: status?.completed === true };
}
