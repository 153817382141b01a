// Rewrites the table of ComfyUI routes in docs/security.md from the gateway's route table (run `npm run build` first).
import { readFileSync, writeFileSync } from 'node:fs';
import { routeTableMarkdown } from '../dist/src/isolation/route-table.js';

const doc = new URL('../docs/security.md', import.meta.url);
const text = readFileSync(doc, 'utf8');
const start = '<!-- route-table:start -->\n';
const end = '\n<!-- route-table:end -->';
const from = text.indexOf(start);
const to = text.indexOf(end);
if (from < 0 || to < from) throw new Error('docs/security.md has no route-table markers');
writeFileSync(doc, text.slice(0, from + start.length) + routeTableMarkdown() + text.slice(to));
