// What ComfyUI's jobs API tells of a job's outputs (outputs_count, previewable_outputs_count, preview_output), worked out as comfy_execution/jobs.py does.

/** Media types the web UI previews (`PREVIEWABLE_MEDIA_TYPES`). */
const PREVIEWABLE_MEDIA = new Set(['images', 'video', 'audio', '3d', 'text']);
const THREE_D_EXTENSIONS = ['.obj', '.fbx', '.gltf', '.glb', '.usdz'];
const TEXT_EXTENSIONS = ['.txt', '.md', '.json'];
/** `TEXT_PREVIEW_MAX_LENGTH`: a text preview's content is cut to this many characters. */
const TEXT_PREVIEW_MAX_LENGTH = 1024;

type Item = Record<string, unknown>;

export interface OutputsSummary {
  /** `outputs_count`: every output item (text content left out). */
  count: number;
  /** `previewable_outputs_count`. */
  previewable: number;
  /** `preview_output`; undefined when there is none (ComfyUI then leaves the field out). */
  preview: Item | undefined;
}

function endsWithAny(filename: unknown, extensions: readonly string[]): boolean {
  const lower = typeof filename === 'string' ? filename.toLowerCase() : '';
  return extensions.some((extension) => lower.endsWith(extension));
}

/** `normalize_output_item`: an object stays; a string naming a 3D file becomes one; anything else is no item. */
function normalizedItem(item: unknown): Item | undefined {
  if (typeof item === 'string') return endsWithAny(item, THREE_D_EXTENSIONS) ? { filename: item, type: 'output', subfolder: '', mediaType: '3d' } : undefined;
  return typeof item === 'object' && item !== null && !Array.isArray(item) ? (item as Item) : undefined;
}

/** `is_previewable`. */
function isPreviewable(media: string, item: Item): boolean {
  const format = typeof item.format === 'string' ? item.format : '';
  return (
    PREVIEWABLE_MEDIA.has(media) ||
    format.startsWith('video/') ||
    format.startsWith('audio/') ||
    endsWithAny(item.filename, THREE_D_EXTENSIONS) ||
    endsWithAny(item.filename, TEXT_EXTENSIONS)
  );
}

/** `_create_text_preview`: the text, cut to TEXT_PREVIEW_MAX_LENGTH characters (Python's, code points). */
function textPreview(value: string): Item {
  const characters = [...value];
  return characters.length <= TEXT_PREVIEW_MAX_LENGTH
    ? { content: value }
    : { content: characters.slice(0, TEXT_PREVIEW_MAX_LENGTH).join(''), truncated: true };
}

/**
 * `get_outputs_summary` and `count_previewable_outputs` of a job's `outputs` (by node): the preview is the first
 * saved (`type: output`) visual item, else the first other visual one, else the first saved text file, else
 * the first text content.
 */
export function outputsSummary(outputs: Record<string, unknown>): OutputsSummary {
  let count = 0;
  let previewable = 0;
  let preview: Item | undefined;
  let fallback: Item | undefined;
  let textFile: Item | undefined;
  let text: Item | undefined;
  for (const [nodeId, output] of Object.entries(outputs)) {
    if (typeof output !== 'object' || output === null || Array.isArray(output)) continue;
    for (const [media, items] of Object.entries(output)) {
      if (media === 'animated' || !Array.isArray(items)) continue;
      for (const raw of items as unknown[]) {
        const item = normalizedItem(raw);
        if (!item) {
          if (media === 'text' && raw !== null && preview === undefined)
            text ??= { ...textPreview(Array.isArray(raw) ? String(raw[0] ?? '') : String(raw)), nodeId, mediaType: media };
          continue;
        }
        count += 1;
        if (!isPreviewable(media, item)) continue;
        previewable += 1;
        if (preview !== undefined) continue;
        const enriched = { ...item, nodeId, ...('mediaType' in item ? {} : { mediaType: media }) };
        if (media === 'text' || endsWithAny(item.filename, TEXT_EXTENSIONS)) textFile ??= enriched;
        else if (item.type === 'output') preview = enriched;
        else fallback ??= enriched;
      }
    }
  }
  return { count, previewable, preview: preview ?? fallback ?? textFile ?? text };
}
