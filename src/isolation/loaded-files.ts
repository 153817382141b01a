// The files a user key's prompt makes ComfyUI load: each must be the key's own, and no input may name another key's file.

import { posix } from 'node:path';
import { forbidden, invalidRequest } from '../errors.js';
import type { JobRecord, OwnershipStore } from '../store/types.js';
import { jsonNumber } from '../json/exact-json.js';
import { ANNOTATION, checkFileReference, endsInShortName, fileId, namedFileOf, windowsReading, type NamedFile } from './files.js';
import { checkBoundedId } from './ids.js';
import { inputValue } from './input-value.js';
import { namesOneFile } from '../policy/loaded-images.js';
import { FOLDER_INPUT, FOLDER_LOADERS, REFUSED_NODES } from './refused-nodes.js';

/** A node input that names a file to load, and the folder ComfyUI looks in when the name has no annotation. */
interface LoadedFileInput {
  input: string;
  folder: 'input' | 'output';
  /** For an input whose value is an object (Load3D's `image`): the members that name files. */
  members?: readonly string[];
}

/** The members of Load3D's `image` object that ComfyUI loads (`folder_paths.get_annotated_filepath`). */
const LOAD_3D_IMAGES = ['image', 'mask', 'normal', 'lineart', 'recording'];

/** ComfyUI's core nodes that load one file by name, and the inputs that name it. */
const FILE_LOADERS: Record<string, readonly LoadedFileInput[]> = {
  LoadImage: [{ input: 'image', folder: 'input' }],
  LoadImageMask: [{ input: 'image', folder: 'input' }],
  LoadImageOutput: [{ input: 'image', folder: 'output' }],
  // A LoadImage whose widget is a camera: the same string, loaded the same way.
  WebcamCapture: [{ input: 'image', folder: 'input' }],
  LoadAudio: [{ input: 'audio', folder: 'input' }],
  // A LoadAudio whose widget is a microphone; its string is not checked by ComfyUI at all (an absolute path is read as it is).
  RecordAudio: [{ input: 'audio', folder: 'input' }],
  LoadVideo: [{ input: 'file', folder: 'input' }],
  LoadLatent: [{ input: 'latent', folder: 'input' }],
  Load3D: [
    { input: 'model_file', folder: 'input' },
    { input: 'image', folder: 'input', members: LOAD_3D_IMAGES },
  ],
  Load3DAnimation: [
    { input: 'model_file', folder: 'input' },
    { input: 'image', folder: 'input', members: LOAD_3D_IMAGES },
  ],
};

/** Loaders whose input is a widget of their own (a camera, a microphone), not a list of the input folder's files. */
const UNLISTED_LOADERS = new Set(['WebcamCapture', 'RecordAudio']);

/** The inputs whose options ComfyUI fills with the files (or subfolders) of its input folder, by node class. */
export const FILE_LISTING_INPUTS: ReadonlyMap<string, readonly string[]> = new Map([
  ...Object.entries(FILE_LOADERS)
    .filter(([classType]) => !UNLISTED_LOADERS.has(classType))
    .map(([classType, inputs]): [string, string[]] => [classType, inputs.filter((input) => !input.members).map((input) => input.input)]),
  ...FOLDER_LOADERS.map((classType): [string, string[]] => [classType, [FOLDER_INPUT]]),
]);

/** The folders a name without annotation may be looked up in by a node the gateway does not know. */
const ANY_FOLDER = ['input', 'output', 'temp'] as const;

/** Nested objects and arrays of an input's value that are searched for strings naming another key's file. */
const MAX_DEPTH = 4;

/** Longest file name a folder can hold (NAME_MAX, 255 bytes): a string whose last part is longer names no file. */
const MAX_NAME_LENGTH = 255;

/**
 * Strings a prompt's inputs may hold that could name a file (each costs a few lookups): far more than
 * a graph of hundreds of nodes holds, few enough that checking them never stalls the gateway.
 */
export const MAX_FILE_LIKE_STRINGS = 20_000;

/** What `checkLoadedFiles` reads: whose files are whose and, with several backends, which job made a file last. */
export interface LoadedFilesContext {
  ownership: OwnershipStore;
  /** With several backends, the newest job that made a file of this name (JobStore.producerOf); null with one backend. */
  producerOf: ((type: string, subfolder: string, filename: string) => JobRecord | undefined) | null;
}

/**
 * Refuses a user key's prompt that loads a file it did not upload or produce, with a loader node the
 * gateway knows (FILE_LOADERS: the name must be the key's own file), with a core node whose file access
 * no check can keep to the key's own (REFUSED_NODES: folder loaders, dataset savers), or with any other node whose input (a string, or one inside an object or list) names a file
 * another key owns, in any folder and spelling ComfyUI reads.
 * With several backends, an output or temp file a loader names must have been made last by the key's
 * own job, and the prompt must run on that job's backend: it returns that backend (undefined otherwise).
 * `nodes` are the prompt's nodes as nodesAsChecked lists them (node id, or label, to node).
 * @throws GatewayError 403 FORBIDDEN naming the nodes; 400 INVALID_REQUEST for a name ComfyUI could read as another file (see
 * fileReferenceProblem, and namesOneFile: FFmpeg's patterns), any node's string shaped as a whole 8.3 short name (endsInShortName), a known loader's file given by a link, or a prompt with more than MAX_FILE_LIKE_STRINGS strings to look up
 */
export function checkLoadedFiles(files: LoadedFilesContext, keyId: string, nodes: ReadonlyArray<readonly [string, unknown]>): string | undefined {
  const { ownership, producerOf } = files;
  const foreign: Array<{ node: string; file: string }> = [];
  /** With several backends, the backends that made the outputs it loads. */
  const madeOn = new Set<string>();
  let fileLike = 0;
  for (const [nodeId, node] of nodes as ReadonlyArray<readonly [string, { class_type?: unknown; inputs?: unknown } | null]>) {
    const classType = typeof node?.class_type === 'string' ? node.class_type : '';
    const refusal = REFUSED_NODES.get(classType);
    if (refusal !== undefined) throw forbidden(`Prompt node ${nodeId.slice(0, 64)} (${classType}) ${refusal}.`);
    const inputs = node?.inputs;
    if (typeof inputs !== 'object' || inputs === null) continue;
    const loaders = Object.hasOwn(FILE_LOADERS, classType) ? FILE_LOADERS[classType] : undefined;
    for (const [input, value] of Object.entries(inputs as Record<string, unknown>)) {
      const loader = loaders?.find((known) => known.input === input);
      const field = `prompt node ${nodeId.slice(0, 64)} input ${input.slice(0, 64)}`;
      if (loader) {
        // ComfyUI reads a list as a link to another node's output, whose value it knows only when it runs the graph.
        if (Array.isArray(value)) {
          throw invalidRequest(`A loader's file name must be given as text: ${field} is a link, whose file the gateway cannot check.`, [
            { field, problem: 'a link: give the file name' },
          ]);
        }
        for (const name of namedFiles(inputValue(value), loader)) {
          checkBoundedId(field, name);
          checkFileReference(field, name);
          const folder = posix.dirname(name);
          const file = namedFileOf(posix.basename(name), folder === '.' ? '' : folder, loader.folder);
          if (!namesOneFile(file)) {
            throw invalidRequest(
              `A loaded file's name may not hold %, *, ?, [, ], { or }: ComfyUI opens loaded files with FFmpeg, which reads such a name as a pattern ` +
                `and loads every file it matches, other keys' too. Upload the file under another name (${field}).`,
              [{ field, problem: 'a name FFmpeg reads as a pattern' }],
            );
          }
          if (ownership.ownerOf('file', fileId(file.type, file.subfolder, file.filename)) !== keyId) foreign.push({ node: nodeId, file: name });
          else if (producerOf && file.type !== 'input') {
            // ComfyUI numbers outputs per backend: the prompt must run where the key's own job made the file, the newest of its name.
            const producer = producerOf(file.type, file.subfolder, file.filename);
            if (producer?.key_id === keyId) madeOn.add(producer.backend);
            else foreign.push({ node: nodeId, file: name });
          }
        }
      } else {
        for (const text of stringsIn(value, MAX_DEPTH)) {
          if (!couldNameFile(text)) continue;
          if ((fileLike += 1) > MAX_FILE_LIKE_STRINGS) {
            throw invalidRequest(`The prompt's inputs hold more than ${MAX_FILE_LIKE_STRINGS} strings that could name a file: split it.`, [
              { field: 'prompt', problem: `over ${MAX_FILE_LIKE_STRINGS} file-like strings` },
            ]);
          }
          const windows = windowsReading(text);
          if (endsInShortName(windows)) {
            throw invalidRequest(
              `${field} has the shape of a Windows 8.3 short name (~ and digits at its end), which can name another key's file: rename it.`,
              [{ field, problem: 'the shape of a Windows 8.3 short name' }],
            );
          }
          if (!namesOthersFile(files, keyId, text) && (windows === text || !namesOthersFile(files, keyId, windows))) continue;
          foreign.push({ node: nodeId, file: text });
          break;
        }
      }
    }
  }
  if (foreign.length > 0) {
    throw forbidden(
      `The prompt loads files this key did not upload or produce: ${foreign.map((f) => `node ${f.node.slice(0, 64)} (${f.file.slice(0, 200)})`).join(', ')}.`,
    );
  }
  if (madeOn.size > 1) throw forbidden(`The prompt loads outputs made on different backends (${[...madeOn].join(', ')}): it can run on one only.`);
  return madeOn.values().next().value;
}

/** The file names a known loader input holds: its string, or the named members of its object; empty names left out. */
function namedFiles(value: unknown, loader: LoadedFileInput): string[] {
  if (loader.members) {
    if (typeof value !== 'object' || value === null) return [];
    const members = value as Record<string, unknown>;
    return loader.members.map((member) => members[member]).filter((name): name is string => typeof name === 'string' && name !== '');
  }
  return typeof value === 'string' ? [value] : [];
}

/** The strings in a value, down `depth` levels of objects and lists; a link to another node's output (`["4", 0]`) is not one. */
function stringsIn(value: unknown, depth: number): string[] {
  if (typeof value === 'string') return value === '' ? [] : [value];
  if (depth === 0 || typeof value !== 'object' || value === null || jsonNumber(value) !== undefined) return [];
  if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && jsonNumber(value[1]) !== undefined) return [];
  return Object.values(value).flatMap((item) => stringsIn(item, depth - 1));
}

/** Whether a string's last part is short enough to be a file's name (a long text is not looked up). */
function couldNameFile(text: string): boolean {
  return text.length - text.lastIndexOf('/') - 1 <= MAX_NAME_LENGTH;
}

/**
 * The file of input, output or temp that a name climbing out of its folder reaches, as ComfyUI lays them out
 * (siblings): `../input/bob.png` from output, `../../ComfyUI/input/bob.png`. A loader's name may not climb
 * (checkFileReference), but another node may join any string to its folder.
 */
function siblingFolderFile(file: NamedFile): NamedFile[] {
  const segments = posix.normalize(file.subfolder || '.').split('/');
  const ups = segments.findIndex((segment) => segment !== '..');
  const type = ups > 0 ? segments[2 * ups - 1] : undefined;
  if (type === undefined || !(ANY_FOLDER as readonly string[]).includes(type)) return [];
  return [{ type, subfolder: segments.slice(2 * ups).join('/'), filename: file.filename }];
}

/**
 * Whether ComfyUI could read `text` as a file another key owns, or, with several backends, an output or
 * temp file another key's job made last, or one of the key's own names that no known job made: with an annotation, in its folder (the name cut as every
 * release cuts it, trimmed or not); without, in input, output or temp. Its caller also asks it of the
 * text as Windows reads it (windowsReading), since a node that is not a known loader may open any string.
 */
function namesOthersFile({ ownership, producerOf }: LoadedFilesContext, keyId: string, text: string): boolean {
  const dirname = posix.dirname(text);
  const folder = dirname === '.' ? '' : dirname;
  const annotated = ANNOTATION.exec(text);
  const candidates = annotated
    ? [namedFileOf(posix.basename(text), folder, 'input'), namedFileOf(posix.basename(text.slice(0, -annotated[0].length - 1).trim()), folder, annotated[1]!)]
    : ANY_FOLDER.map((type) => namedFileOf(posix.basename(text), folder, type));
  return candidates
    .flatMap((file) => [file, ...siblingFolderFile(file)])
    .some((file) => {
      const owner = ownership.ownerOf('file', fileId(file.type, file.subfolder, file.filename));
      if (owner !== undefined && owner !== keyId) return true;
      if (!producerOf || file.type === 'input') return false;
      const producer = producerOf(file.type, file.subfolder, file.filename);
      // The key's own name that no known job made (its job was forgotten) may be another key's file on the backend the prompt runs on.
      return producer === undefined ? owner === keyId : producer.key_id !== keyId;
    });
}
