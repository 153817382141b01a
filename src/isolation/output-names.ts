// The names a prompt's outputs get: for a user key, a save node's filename_prefix must be plain text without %batch_num%, below its folder, and not another key's prefix in other case.

import { posix } from 'node:path';
import { forbidden, invalidRequest } from '../errors.js';
import { foldCase } from '../store/file-name-case.js';
import { prefixShape } from '../store/output-prefixes.js';
import type { JobStore } from '../store/types.js';
import { escapesFolder } from './files.js';
import { inputValue } from './input-value.js';

/** The input of ComfyUI's save nodes (and of custom nodes that follow them) that names their files. */
const PREFIX_INPUT = 'filename_prefix';
/** The token ComfyUI replaces only after it has numbered the files (folder_paths.get_save_image_path). */
const BATCH_TOKEN = '%batch_num%';
/** The tokens ComfyUI replaces with numbers before it numbers the files (folder_paths.compute_vars). */
const NUMBER_TOKEN = /%(?:width|height|year|month|day|hour|minute|second)%/;

/**
 * Refuses a prompt whose `filename_prefix` ComfyUI could turn into the name of a file already there.
 * ComfyUI numbers a save node's files after the files of its prefix, but replaces `%batch_num%` only
 * afterwards: `img%batch_num%` is numbered from 1 whatever exists, and writes `img0_00001_.png` over
 * the file of that name, another key's too. A prefix given by a link is refused as well: another node
 * could spell the token at run time. And ComfyUI numbers after the names that match the prefix in their
 * case only (`os.path.normcase` folds nothing on macOS), so on a case-insensitive disk `CAT` is numbered
 * from 1 and its files land on `cat`'s: a prefix that differs only by case from one another key's known
 * outputs were saved under is refused. So is a prefix that leaves its folder once normalised (a leading `/`, a
 * drive, a leading `..`, a `\` read as `/`): ComfyUI's get_save_image_path refuses it, but save nodes that join the prefix
 * themselves (LossGraphNode of 2025, `{prefix}_{date}.png` in temp) write wherever it points. `nodes` are the prompt's nodes
 * as nodesAsChecked lists them (node id, or label, to node).
 * @throws GatewayError 400 INVALID_REQUEST naming each link, %batch_num% or escaping prefix; 403 FORBIDDEN for another key's prefix in other case
 */
export function checkOutputPrefixes(nodes: ReadonlyArray<readonly [string, unknown]>, keyId: string, jobs: Pick<JobStore, 'outputPrefixes'>): void {
  const problems: Array<{ field: string; problem: string }> = [];
  const othersInOtherCase: string[] = [];
  for (const [nodeId, node] of nodes) {
    const inputs = typeof node === 'object' && node !== null ? (node as { inputs?: unknown }).inputs : undefined;
    if (typeof inputs !== 'object' || inputs === null || !Object.hasOwn(inputs, PREFIX_INPUT)) continue;
    const prefix = inputValue((inputs as Record<string, unknown>)[PREFIX_INPUT]);
    const field = `prompt node ${nodeId.slice(0, 64)} input ${PREFIX_INPUT}`;
    if (Array.isArray(prefix)) problems.push({ field, problem: 'a link: give the prefix as text' });
    if (typeof prefix !== 'string') continue;
    // The path ComfyUI joins below its folder: `\` is a separator on Windows, and `sub/../x` stays below.
    const path = posix.normalize(prefix.replaceAll('\\', '/'));
    if (prefix.includes(BATCH_TOKEN)) problems.push({ field, problem: `holds ${BATCH_TOKEN}` });
    else if (escapesFolder(path)) problems.push({ field, problem: 'leaves its folder: no leading /, drive or .. segment' });
    else if (isOthersPrefixInOtherCase(path, keyId, jobs)) othersInOtherCase.push(nodeId.slice(0, 64));
  }
  if (problems.length > 0) {
    throw invalidRequest(
      `A save node's filename_prefix must be text without ${BATCH_TOKEN}, below its folder: ComfyUI numbers such files without looking at those already there, ` +
        'or writes them outside the folder, so they would replace other files.',
      problems.slice(0, 50),
    );
  }
  if (othersInOtherCase.length > 0) {
    throw forbidden(
      `The filename_prefix of node ${othersInOtherCase.slice(0, 50).join(', ')} differs only by case from a prefix another key's outputs were saved under: ` +
        'on a case-insensitive disk (Windows, macOS) ComfyUI would number its files over them. Choose another prefix.',
    );
  }
}

/**
 * Whether ComfyUI could read a prefix (its normalised `path`, its number tokens put as digits) as a prefix that another
 * key's known outputs were saved under, spelt in other case: the prefixes of its shape that match it folded, but not as spelt.
 */
function isOthersPrefixInOtherCase(path: string, keyId: string, jobs: Pick<JobStore, 'outputPrefixes'>): boolean {
  const known = jobs.outputPrefixes(prefixShape(path.replace(new RegExp(NUMBER_TOKEN, 'g'), '0')));
  if (known.length === 0) return false;
  const spelt = prefixPattern(path, (text) => text);
  const folded = prefixPattern(path, foldCase);
  return known.some(({ prefix: other, keyIds }) => keyIds.some((id) => id !== keyId) && folded.test(foldCase(other)) && !spelt.test(other));
}

/** A pattern of the prefixes `path` can become: its text as `spell` gives it, each number token any number. */
function prefixPattern(path: string, spell: (text: string) => string): RegExp {
  const text = path.split(NUMBER_TOKEN).map((part) => spell(part).replace(/[\\^$.*+?()[\]{}|]/g, '\\$&'));
  return new RegExp(`^${text.join('\\d+')}$`);
}
