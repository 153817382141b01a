// The names a prompt's outputs get: for a user key, a save node's filename_prefix must be plain text without %batch_num%.

import { invalidRequest } from '../errors.js';
import { inputValue } from './input-value.js';

/** The input of ComfyUI's save nodes (and of custom nodes that follow them) that names their files. */
const PREFIX_INPUT = 'filename_prefix';
/** The token ComfyUI replaces only after it has numbered the files (folder_paths.get_save_image_path). */
const BATCH_TOKEN = '%batch_num%';

/**
 * Refuses a prompt whose `filename_prefix` ComfyUI could turn into the name of a file already there.
 * ComfyUI numbers a save node's files after the files of its prefix, but replaces `%batch_num%` only
 * afterwards: `img%batch_num%` is numbered from 1 whatever exists, and writes `img0_00001_.png` over
 * the file of that name, another key's too. A prefix given by a link is refused as well: another node
 * could spell the token at run time.
 * @throws GatewayError 400 INVALID_REQUEST naming each such input
 */
export function checkOutputPrefixes(prompt: unknown): void {
  if (typeof prompt !== 'object' || prompt === null) return;
  const problems: Array<{ field: string; problem: string }> = [];
  for (const [nodeId, node] of Object.entries(prompt as Record<string, unknown>)) {
    const inputs = typeof node === 'object' && node !== null ? (node as { inputs?: unknown }).inputs : undefined;
    if (typeof inputs !== 'object' || inputs === null || !Object.hasOwn(inputs, PREFIX_INPUT)) continue;
    const prefix = inputValue((inputs as Record<string, unknown>)[PREFIX_INPUT]);
    const field = `prompt node ${nodeId.slice(0, 64)} input ${PREFIX_INPUT}`;
    if (Array.isArray(prefix)) problems.push({ field, problem: 'a link: give the prefix as text' });
    else if (typeof prefix === 'string' && prefix.includes(BATCH_TOKEN)) problems.push({ field, problem: `holds ${BATCH_TOKEN}` });
  }
  if (problems.length > 0) {
    throw invalidRequest(
      `A save node's filename_prefix must be text without ${BATCH_TOKEN}: ComfyUI numbers such files without looking at those already there, so they would replace other files.`,
      problems.slice(0, 50),
    );
  }
}
