// The max_width/max_height check of an upload that overwrites a file: a prompt admitted before may load that file, so what is written must be within the limits.

import { overwritePolicy } from '../errors.js';
import { headerBytesWanted, headerSize } from '../policy/image-header.js';
import { imageSizeViolations, sideLimits, type SizeReasons } from '../policy/loaded-images.js';
import type { PromptPolicy } from '../policy/schema.js';
import type { FileHead, FormPart } from './upload-form.js';

/** Whether ComfyUI's image_upload overwrites: its `overwrite` field (the first of the name) is the text `true` or `1`. */
export function overwrites(parts: ReadonlyMap<string, FormPart>): boolean {
  const field = parts.get('overwrite');
  return field?.filename === null && (field.value === 'true' || field.value === '1');
}

/**
 * What a user key's upload form keeps of its `image` part when the key's policy sets max_width or max_height:
 * the start of the file, as much as its header needs (see headerBytesWanted, at most MAX_HEADER_BYTES), and
 * nothing when an `overwrite` field read before it says the upload does not overwrite. Undefined, so that
 * nothing is kept, for a policy that sets neither limit.
 */
export function imageHeadOfUpload(policy: PromptPolicy | null): FileHead | undefined {
  if (sideLimits(policy).length === 0) return undefined;
  return { part: 'image', wanted: (head, earlier) => (earlier.has('overwrite') && !overwrites(earlier) ? 0 : headerBytesWanted(head)) };
}

const OVERWRITE_REASONS: SizeReasons = {
  unread: "this one's size cannot be read from its start",
  over: (size) =>
    `this one is ${size.width}×${size.height} (each side is held to the longer one, as ComfyUI turns an image its EXIF orientation says is turned)`,
};

/**
 * Refuses an overwriting upload's `image` (kept as imageHeadOfUpload says) unless its header gives a size within
 * the policy's max_width and max_height, the longer side held to each: a prompt admitted before, whose loaded
 * images were checked then, may load the file when ComfyUI runs it. Nothing to check under a policy without either limit.
 * @throws GatewayError 403 PROMPT_POLICY
 */
export function checkOverwritingImage(policy: PromptPolicy | null, image: FormPart): void {
  if (!policy) return;
  const violations = imageSizeViolations(policy, null, image.head && headerSize(image.head), OVERWRITE_REASONS);
  if (violations.length > 0) throw overwritePolicy(violations);
}
