// Whole numbers of a query string read as ComfyUI reads them: Python's int() of the parameter's text.

import { invalidRequest } from '../errors.js';

/** What int() of a str takes (ASCII digits here): surrounding whitespace, a sign, digits with single underscores between them. */
const PYTHON_INT = /^\s*[+-]?\d+(?:_\d+)*\s*$/;

/** The whole number Python's int() reads from `text`, or undefined where int() raises ValueError (`2.0`, `1e3`, `0x10`, an empty string). */
export function pythonInt(text: string): number | undefined {
  return PYTHON_INT.test(text) ? Number(text.replace(/_/g, '')) : undefined;
}

/**
 * The query parameter `name` as int() reads it; undefined when it is absent.
 * @throws GatewayError 400 when int() would not read it (where ComfyUI answers 400, or fails with 500)
 */
export function queryInteger(query: URLSearchParams, name: string): number | undefined {
  const text = query.get(name);
  if (text === null) return undefined;
  const value = pythonInt(text);
  if (value === undefined) throw invalidRequest(`${name} must be an integer.`, [{ field: name, problem: `got ${JSON.stringify(text)}` }]);
  return value;
}
