// The route a path reaches in ComfyUI, however it is spelled: the form isolation rules are matched against.

/** Letters, digits and `/_-`, one slash at a time, no trailing slash: nothing to decode, merge or resolve. */
const PLAIN_PATH = /^(?:\/[A-Za-z0-9_-]+)+$|^\/$/;

/**
 * Decodes percent-escapes (ComfyUI's router decodes them too), merges repeated slashes, resolves dot
 * segments and removes one leading `/api`. This over-approximates what ComfyUI would route: a spelling
 * ComfyUI would 404 may still match a rule here, which only ever makes a rule apply more often.
 * @example canonicalRoute('/api//%68istory/./x') === '/history/x'
 */
export function canonicalRoute(path: string): string {
  // The common case, a plain path, needs no decoding or segment walk.
  if (PLAIN_PATH.test(path)) return path.startsWith('/api/') ? path.slice(4) : path === '/api' ? '/' : path;
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // A malformed escape stays as written.
  }
  const segments: string[] = [];
  for (const segment of decoded.replaceAll('\\', '/').split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  if (segments[0] === 'api') segments.shift();
  return '/' + segments.join('/');
}
