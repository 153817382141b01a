// The sign-in page: a plain HTML form (no script) where a person pastes an API key.

const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** The page's Content-Security-Policy: nothing may load or run but its own inline style, and it posts only to itself. */
export const LOGIN_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** The sign-in page, with `next` carried through the form and an optional error message. */
export function loginPage(next: string, error?: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · comfy-gate</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; background: #1e1e24; color: #eee; display: grid; place-items: center; min-height: 100vh; margin: 0; }
  form { background: #2a2a33; padding: 2rem; border-radius: 12px; width: min(26rem, 90vw); box-shadow: 0 8px 24px #0006; }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  label { display: block; margin-bottom: .4rem; }
  input { width: 100%; box-sizing: border-box; padding: .6rem; border-radius: 6px; border: 1px solid #555; background: #15151a; color: #eee; font: inherit; }
  button { margin-top: 1rem; width: 100%; padding: .6rem; border: 0; border-radius: 6px; background: #4f7cff; color: white; font: inherit; cursor: pointer; }
  .error { background: #5a1f24; border-radius: 6px; padding: .5rem .75rem; margin-bottom: 1rem; }
  p.hint { color: #aaa; font-size: .85rem; margin: 1rem 0 0; }
</style>
</head>
<body>
<form method="post" action="/login">
  <h1>Sign in to ComfyUI</h1>
  ${error ? `<div class="error" role="alert">${escapeHtml(error)}</div>` : ''}
  <label for="api_key">API key</label>
  <input id="api_key" name="api_key" type="password" autocomplete="current-password" placeholder="comfy_…" required autofocus>
  <input type="hidden" name="next" value="${escapeHtml(next)}">
  <button type="submit">Sign in</button>
  <p class="hint">Your key is checked by the gateway and never stored in the browser: you get a session cookie instead.</p>
</form>
</body>
</html>
`;
}
