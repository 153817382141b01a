// The size checks of an upload that overwrites a file: a prompt admitted before may load that file, so what is written must be within the limits.

import { overwritePolicy } from '../errors.js';
import { bytesWantedBy, MAX_HEADER_BYTES } from '../policy/file-header.js';
import { imageFrames, MAX_WHOLE_IMAGE_BYTES } from '../policy/image-frames.js';
import { headerBytesWanted, headerSize } from '../policy/image-header.js';
import { declaresLoadableHeader, headerLatent, safetensorsHeader } from '../policy/latent-header.js';
import { imageBatchViolations, imageSizeViolations, sideLimits, type SizeReasons } from '../policy/loaded-images.js';
import { latentViolations } from '../policy/loaded-media.js';
import type { PromptPolicy } from '../policy/schema.js';
import type { FileHead, FormPart } from './upload-form.js';

/** Whether ComfyUI's image_upload overwrites: its `overwrite` field (the first of the name) is the text `true` or `1`. */
export function overwrites(parts: ReadonlyMap<string, FormPart>): boolean {
  const field = parts.get('overwrite');
  return field?.filename === null && (field.value === 'true' || field.value === '1');
}

/** Whether a policy holds an overwriting upload to be an image: it sets max_width, max_height or max_batch_size. */
function imagesLimited(policy: PromptPolicy | null): boolean {
  return sideLimits(policy).length > 0 || policy?.max_batch_size !== undefined;
}

/** The whole of a file, read to MAX_WHOLE_IMAGE_BYTES and one more byte (so that a longer file shows). */
const wholeFile = (): number => MAX_WHOLE_IMAGE_BYTES + 1;

/**
 * What a user key's upload form keeps of its `image` part: when the key's policy sets max_batch_size, the whole
 * file (see wholeFile: an image's batch is known from the whole file only); else, when it sets max_width or
 * max_height, the start of the file, as much as its header needs (see headerBytesWanted, at most
 * MAX_HEADER_BYTES); else, when it sets max_frames, as much as a safetensors header needs (the file may be a
 * latent); nothing when an `overwrite` field read before it says the upload does not overwrite. Undefined, so
 * that nothing is kept, for a policy that sets none of these limits.
 */
export function imageHeadOfUpload(policy: PromptPolicy | null): FileHead | undefined {
  const wanted =
    policy?.max_batch_size !== undefined
      ? wholeFile
      : sideLimits(policy).length > 0
        ? headerBytesWanted
        : policy?.max_frames !== undefined
          ? (head: Buffer) => bytesWantedBy(safetensorsHeader, head)
          : undefined;
  if (!wanted) return undefined;
  return { part: 'image', wanted: (head, earlier) => (earlier.has('overwrite') && !overwrites(earlier) ? 0 : wanted(head)) };
}

const OVERWRITE_REASONS: SizeReasons = {
  unread: "this one's size cannot be read from its start",
  over: (size) =>
    `this one is ${size.width}×${size.height} (each side is held to the longer one, as ComfyUI turns an image its EXIF orientation says is turned)`,
};

const OVERWRITE_BATCH_REASON = `this one is not known to hold one image (a still PNG, a JPEG or a simple WebP of at most ${MAX_WHOLE_IMAGE_BYTES / 1024 / 1024} MiB)`;

const IMAGE_RULE =
  'under max_width, max_height or max_batch_size, an upload that overwrites a file must be an image the gateway can size ' +
  '(PNG, JPEG, WebP, GIF or BMP) within the limits, and under max_batch_size one it knows holds a single image';
const LATENT_RULE = 'under max_frames, an upload that overwrites a file with a safetensors file must hold a latent the gateway can read within the limit';
const LATENT_UNREAD =
  'this one may be a safetensors file whose latent the gateway cannot read (a header of 1 MiB to 100 MB, or no latent_tensor of 4 or 5 whole dimensions)';

/**
 * Refuses an overwriting upload's `image` (kept as imageHeadOfUpload says) that a prompt admitted before, whose
 * loaded files were checked then, may load when ComfyUI runs it, unless it is within the policy's limits: under
 * max_width or max_height, an image whose header gives a size within them, the longer side held to each; under
 * max_batch_size, a whole file imageFrames knows holds one image (a latent is no image: it is refused); else,
 * under max_frames, a safetensors file must hold a latent within it (see latentViolations), and anything else
 * (which LoadLatent cannot load) passes. Nothing to check under a policy without these limits.
 * @throws GatewayError 403 PROMPT_POLICY
 */
export function checkOverwritingImage(policy: PromptPolicy | null, image: FormPart): void {
  if (!policy) return;
  if (imagesLimited(policy)) {
    const head = image.head;
    const batch = head && head.length <= MAX_WHOLE_IMAGE_BYTES ? imageFrames(head) : undefined;
    const violations = [
      ...imageSizeViolations(policy, null, head && headerSize(head), OVERWRITE_REASONS),
      ...imageBatchViolations(policy, null, batch, OVERWRITE_BATCH_REASON),
    ];
    if (violations.length > 0) throw overwritePolicy(IMAGE_RULE, violations);
    return;
  }
  if (policy.max_frames === undefined) return;
  const read = safetensorsHeader(image.head ?? Buffer.alloc(0));
  // No safetensors file: not JSON, a header longer than safetensors reads, or a file that ends before its header does.
  if (read === null || ('need' in read && (read.need <= MAX_HEADER_BYTES || !declaresLoadableHeader(read.need)))) return;
  const latent = 'need' in read ? null : headerLatent(read.header);
  const violations = latent
    ? latentViolations(policy, null, latent)
    : [{ node_id: null, rule: 'max_frames' as const, limit: policy.max_frames, value: 'unbounded', reason: LATENT_UNREAD }];
  if (violations.length > 0) throw overwritePolicy(LATENT_RULE, violations);
}
