// Secrets that ComfyUI keeps in a prompt's extra_data never leave the gateway, whoever asks.

/** The extra_data keys that carry credentials of Comfy's own API nodes. */
const SECRET_EXTRA_DATA_KEYS = ['auth_token_comfy_org', 'api_key_comfy_org'];

/** Whether JSON text may hold a secret: it names one of the secret keys anywhere (then it must be parsed and redacted). */
export function mayHoldSecrets(jsonText: string): boolean {
  return SECRET_EXTRA_DATA_KEYS.some((key) => jsonText.includes(`"${key}"`));
}

/** Removes secrets from an extra_data object in place. */
export function redactExtraData(extraData: unknown): void {
  if (typeof extraData !== 'object' || extraData === null) return;
  for (const key of SECRET_EXTRA_DATA_KEYS) delete (extraData as Record<string, unknown>)[key];
}

/** Removes secrets from a queue item or a history entry's `prompt` array: `[number, id, prompt, extra_data, outputs]`. */
export function redactQueueItem(item: unknown): void {
  if (Array.isArray(item)) redactExtraData(item[3]);
}
