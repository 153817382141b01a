// A node input's value as ComfyUI reads it: a `{"__value__": v}` wrapper stands for v.

/**
 * The value ComfyUI reads for a node input: a JSON object holding `__value__` is unwrapped, once, as
 * ComfyUI's validation does before it reads any input (the web UI wraps a list this way, so that it is
 * not read as a link). Any other value is itself.
 */
export function inputValue(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, '__value__')) return value;
  return (value as { __value__: unknown }).__value__;
}
