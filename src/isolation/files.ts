// Files as ComfyUI names them ({filename, subfolder, type}), reduced to one id for ownership records, and the names a user key may give.

import { posix } from 'node:path';
import { invalidRequest } from '../errors.js';
import { foldCase } from '../store/file-name-case.js';

/**
 * The ends of a name by which ComfyUI picks a file's folder (`folder_paths.annotated_filepath`): it tests only
 * the end, then cuts the annotation and the character before it (a space in ` [output]`), whatever that is;
 * some releases also trim what is left.
 */
export const ANNOTATION = /\[(output|input|temp)\]$/;

/**
 * The ownership id of a file: `type/subfolder/name`, with the subfolder normalised as ComfyUI joins it, case-folded
 * (foldCase): on Windows and macOS, names that differ only by case are one file, so no two keys may own them.
 */
export function fileId(type: string, subfolder: string, filename: string): string {
  // Most names have no folder: they are put together without the path functions (a prompt's every input is looked up so).
  const folder =
    subfolder === '' || subfolder === '.'
      ? ''
      : posix
          .normalize(subfolder)
          .replace(/^\.\/?$/, '')
          .replace(/\/+$/, '');
  return foldCase(`${type}/${folder}/${filename.includes('/') ? posix.basename(filename) : filename}`);
}

/** The file an upload is stored as: ComfyUI joins the name (which may hold folders) to the subfolder. */
export function uploadedFileId(type: string, subfolder: string, name: string): string {
  return fileId(type, posix.join(subfolder || '.', posix.dirname(name)), name);
}

/**
 * The file a `/view` query (or a LoadImage input) names: `filename`, `type` (default output, or `input`
 * for inputs) and `subfolder`; a name ending in `[output]`, `[input]` or `[temp]` picks the folder, read
 * as ComfyUI reads it. A user key's names are checked first (`checkFileReference`), so that every
 * release reads them alike.
 */
export function fileIdOf(filename: string, subfolder: string, defaultType: string, type?: string | null): string {
  const file = namedFileOf(filename, subfolder, defaultType, type);
  return fileId(file.type, file.subfolder, file.filename);
}

/** The file a name picks, as `fileIdOf` reads it: its folder type, subfolder and name, the annotation cut. */
export function namedFileOf(filename: string, subfolder: string, defaultType: string, type?: string | null): NamedFile {
  const annotated = ANNOTATION.exec(filename);
  return { type: annotated?.[1] ?? type ?? defaultType, subfolder, filename: annotated ? filename.slice(0, -annotated[0].length - 1) : filename };
}

/** A path that ComfyUI would not join below its folder as the gateway does: absolute, a drive, or climbing out. */
export function escapesFolder(path: string): boolean {
  return path.startsWith('/') || /^[A-Za-z]:/.test(path) || path.split('/').includes('..');
}

/**
 * Refuses a user key's file path given as the rest of a URL (a `{name:*}` parameter: a model preview's, a
 * static file's) that leaves its folder once ComfyUI joins it: older releases join a model preview's path
 * unchecked, and on Windows `C:/…` names any file of the disk. Null (no such parameter) passes.
 * @throws GatewayError INVALID_REQUEST (400)
 */
export function checkPathInUrl(rest: string | null): void {
  if (rest !== null && escapesFolder(rest)) {
    throw invalidRequest('A file path in the URL must stay below its folder: it may not start with a drive (C:).', [
      { field: 'target', problem: 'a drive at the start of a file path' },
    ]);
  }
}

/** A Windows device name (`CON`, `NUL`, `COM1`, …), with or without an extension: Windows opens the device, not a file, in any folder. */
const DEVICE_NAME = /^(con|prn|aux|nul|conin\$|conout\$|com[0-9¹²³]|lpt[0-9¹²³])\s*(\..*)?$/i;
/** An 8.3 short name's ending (`MY-PHO~1.PNG`, `PROGRA~1`): Windows may read it as another, long-named file of the folder. */
const SHORT_NAME = /~\d+(\.[^.]*)?$/;

/** A whole 8.3 short name (`BOB-LO~1.PNG`): the form a string that any node may open as a file names another file by on Windows. */
const WHOLE_SHORT_NAME = /^[^\s.~/]{1,6}~\d{1,6}(\.[^\s.]{1,3})?$/;

/** Whether the last name of a path is shaped as a whole 8.3 short name (see WHOLE_SHORT_NAME); a text that only ends in `~1` is not. */
export function endsInShortName(path: string): boolean {
  return WHOLE_SHORT_NAME.test(posix.basename(path));
}

/** Why Windows could read a path segment as another file than its spelling names; null when it cannot. */
function windowsSegmentProblem(segment: string): string | null {
  if (segment.endsWith('.') && segment !== '.') return `"${segment.slice(0, 64)}" ends in a dot, which Windows drops: remove it`;
  if (segment.endsWith(' ')) return `"${segment.slice(0, 64)}" ends in a space, which Windows drops: remove it`;
  if (DEVICE_NAME.test(segment)) return `"${segment.slice(0, 64)}" is a Windows device name: rename it`;
  if (SHORT_NAME.test(segment))
    return `"${segment.slice(0, 64)}" has the shape of a Windows 8.3 short name (~ and digits at its end), which can name another file: rename it`;
  return null;
}

/**
 * The path Windows opens for `path` (`/` between folders): a backslash is a separator, and each name is cut at its
 * first `:` (a stream: `bob.png::$DATA` is `bob.png`) and loses its trailing dots and spaces (`bob.png.` is `bob.png`).
 */
export function windowsReading(path: string): string {
  return path
    .replaceAll('\\', '/')
    .split('/')
    .map((segment) => (segment === '.' || segment === '..' ? segment : segment.split(':', 1)[0]!.replace(/[. ]+$/, '')))
    .join('/');
}

/**
 * Why a file name and subfolder that a user key gives (a `/view` query, an upload's form, a loader node's
 * input) could name another file in ComfyUI than the one the gateway checks; null when they cannot. Refused:
 * a `blake3:` name (ComfyUI finds it by content hash, across owners); a backslash (a folder separator on
 * Windows); an absolute path, a drive or a `..` segment (ComfyUI's join would leave the folder, or land in it
 * by another name); an annotated name in any spelling but `name [output]` (ComfyUI cuts a fixed length,
 * and some releases trim spaces); and what Windows reads as another file: a `:` (a stream of a file), a
 * segment ending in a dot or a space (dropped), a device name, or an 8.3 short name's shape.
 */
export function fileReferenceProblem(filename: string, subfolder = ''): string | null {
  if (filename.startsWith('blake3:')) return 'a blake3: name finds a file by its content, whoever owns it: give the file name';
  if (filename.includes('\\') || subfolder.includes('\\')) return 'a backslash is a folder separator to ComfyUI on Windows: use / between folders';
  if (escapesFolder(subfolder) || escapesFolder(filename)) return 'the name must stay below its folder: no leading /, drive or .. segment';
  if (filename.includes(':') || subfolder.includes(':')) return 'a colon names a stream of another file on Windows: remove it';
  const annotated = ANNOTATION.exec(filename);
  if (annotated) {
    const name = filename.slice(0, -annotated[0].length);
    if (!name.endsWith(' ') || name.length === 1 || name.slice(0, -1) !== name.slice(0, -1).trim()) {
      return `a name ending in [${annotated[1]}] must be written "name [${annotated[1]}]": one space before it, none around the name`;
    }
  }
  const path = annotated ? filename.slice(0, -annotated[0].length - 1) : filename;
  for (const segment of [...subfolder.split('/'), ...path.split('/')]) {
    const problem = windowsSegmentProblem(segment);
    if (problem !== null) return problem;
  }
  return null;
}

/**
 * Refuses a user key's file reference that ComfyUI could read as another file (see fileReferenceProblem).
 * @throws GatewayError INVALID_REQUEST (400), naming `field`
 */
export function checkFileReference(field: string, filename: string, subfolder = ''): void {
  const problem = fileReferenceProblem(filename, subfolder);
  if (problem !== null) throw invalidRequest(`${field}: ${problem}.`, [{ field, problem }]);
}

/** A file as ComfyUI names it in a node's UI output. */
export interface NamedFile {
  filename: string;
  subfolder: string;
  type: string;
}

/** The file an item of a node's UI output names (a `{filename, subfolder, type}` object), or undefined for any other item. */
export function outputItemFile(item: unknown): NamedFile | undefined {
  const { filename, subfolder, type } = (item ?? {}) as Record<string, unknown>;
  if (typeof filename !== 'string') return undefined;
  return { filename, subfolder: typeof subfolder === 'string' ? subfolder : '', type: typeof type === 'string' ? type : 'output' };
}

/** The files listed in a node's UI output (`{images: [{filename, subfolder, type}], gifs: [...], ...}`). */
export function outputFiles(output: unknown): NamedFile[] {
  if (typeof output !== 'object' || output === null) return [];
  // Loops, not flatMap: read for every `executed` event, and V8's flatMap costs more than the reading itself.
  const files: NamedFile[] = [];
  for (const items of Object.values(output)) {
    if (!Array.isArray(items)) continue;
    for (const item of items as unknown[]) {
      const file = outputItemFile(item);
      if (file) files.push(file);
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

/**
 * The outputs of a history entry (`{outputs: {node: ui output}, status: {completed, messages}}`), but those of
 * the nodes ComfyUI took from its cache: an earlier prompt made their files, maybe another key's.
 */
export function promptOutputsOf(entry: unknown): PromptOutputs {
  if (typeof entry !== 'object' || entry === null) return { files: [], completed: false };
  const { outputs, status } = entry as { outputs?: Record<string, unknown>; status?: { completed?: boolean; messages?: unknown } };
  const cached = new Set(cachedNodesOf(status?.messages));
  return {
    files: Object.entries(outputs ?? {}).flatMap(([node, output]) => (cached.has(node) ? [] : outputFileIds(output))),
    completed: status?.completed === true,
  };
}

/** The nodes a history entry's `messages` say ComfyUI took from its cache (its `execution_cached` event). */
export function cachedNodesOf(messages: unknown): string[] {
  const cached = Array.isArray(messages) ? (messages as unknown[]).find((message) => Array.isArray(message) && message[0] === 'execution_cached') : undefined;
  return nodeIds((cached as [string, { nodes?: unknown } | undefined] | undefined)?.[1]?.nodes);
}

/** `"execution_cached"` written as a JSON string, and what follows it when it is ComfyUI's event with no node: `, {"nodes": []`. */
const EXECUTION_CACHED = /"execution_cached"(\s*,\s*\{\s*"nodes"\s*:\s*\[\s*\])?/g;

/**
 * Whether a history entry's JSON text may list nodes ComfyUI took from its cache, without parsing it: false only
 * when every `"execution_cached"` in it is followed by an empty `nodes` list, as ComfyUI writes its event
 * (`["execution_cached", {"nodes": [], ...}]`) when it took none. The same words in a prompt or its
 * extra_data only make the entry be parsed.
 */
export function mayNameCachedNodes(jsonText: string): boolean {
  for (const match of jsonText.matchAll(EXECUTION_CACHED)) if (match[1] === undefined) return true;
  return false;
}

/** The node ids of an `execution_cached` event's `nodes`. */
export function nodeIds(nodes: unknown): string[] {
  return Array.isArray(nodes) ? nodes.map(String) : [];
}
