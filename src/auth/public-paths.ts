// Paths the operator opened to everyone in required mode (`--public-path`), matched without room for tricks.

/**
 * Whether a GET/HEAD of `path` is public. Only a path already in plain form can match: one with
 * percent-escapes, a backslash, an empty segment (`//`) or a dot segment is never public, so no
 * spelling of a protected path can pass as a public one.
 */
export function isPublicPath(method: string | undefined, path: string, prefixes: readonly string[]): boolean {
  if (prefixes.length === 0 || (method !== 'GET' && method !== 'HEAD')) return false;
  if (path.includes('%') || path.includes('\\') || path.includes('//') || /\/\.\.?(\/|$)/.test(path)) return false;
  return prefixes.some((prefix) => path === prefix || path.startsWith(prefix.endsWith('/') ? prefix : `${prefix}/`));
}
