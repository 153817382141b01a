// Reads the project's Markdown files as GitHub renders them: headings, their anchors, and relative links.

import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root folder (tests run from dist/test/...). */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** README.md and every docs/*.md, as absolute paths. */
export function projectDocs(root = REPO_ROOT): string[] {
  const docs = join(root, 'docs');
  return [
    join(root, 'README.md'),
    ...readdirSync(docs)
      .filter((name) => name.endsWith('.md'))
      .sort()
      .map((name) => join(docs, name)),
  ];
}

/** The lines of a Markdown text that are not inside a fenced code block. */
function proseLines(markdown: string): string[] {
  const lines: string[] = [];
  let inFence = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    else if (!inFence) lines.push(line);
  }
  return lines;
}

/** The text of every ATX heading (`## Text`), outside code blocks. */
export function headings(markdown: string): string[] {
  return proseLines(markdown).flatMap((line) => {
    const match = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    return match ? [match[1] as string] : [];
  });
}

/** GitHub's anchor of a heading: link markup reduced to its text, lower case, punctuation but `-` and `_` dropped, spaces to `-`. */
export function anchorOf(heading: string): string {
  return heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Every anchor of a document; a repeated heading gets `-1`, `-2`, … as on GitHub. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  for (const heading of headings(markdown)) {
    const base = anchorOf(heading);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    result.add(count === 0 ? base : `${base}-${count}`);
  }
  return result;
}

/** The target of every link and image outside code (`[text](target)`, `![alt](target)`), in order. */
export function linkTargets(markdown: string): string[] {
  const prose = proseLines(markdown)
    .join('\n')
    .replace(/`[^`\n]*`/g, 'code');
  return [...prose.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)/g)].map((match) => match[1] as string);
}

/** What is wrong with each relative link of a Markdown file: a missing file, or an anchor no heading of the target has. */
export function brokenLinks(file: string, root = REPO_ROOT): string[] {
  const problems: string[] = [];
  const name = relative(root, file);
  for (const target of linkTargets(readFileSync(file, 'utf8'))) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) continue;
    const [path = '', anchor] = target.split('#', 2);
    const targetFile = path === '' ? file : join(dirname(file), decodeURIComponent(path));
    if (!existsSync(targetFile)) {
      problems.push(`${name}: ${target}: no file ${relative(root, targetFile)}`);
      continue;
    }
    if (anchor === undefined) continue;
    if (!targetFile.endsWith('.md')) problems.push(`${name}: ${target}: an anchor into a file that is not Markdown`);
    else if (!anchors(readFileSync(targetFile, 'utf8')).has(decodeURIComponent(anchor)))
      problems.push(`${name}: ${target}: no heading of ${relative(root, targetFile)} has the anchor #${anchor}`);
  }
  return problems;
}

/** The first fenced code block of a language (```js) in the section under a heading (up to the next heading of its level or higher). */
export function codeUnder(markdown: string, heading: string, language: string): string {
  const level = /^#+/.exec(heading)![0].length;
  let inSection = false;
  let block: string[] | null = null;
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) {
      if (inSection && block && fenced) return block.join('\n');
      fenced = !fenced;
      if (inSection && fenced && line === `\`\`\`${language}`) block = [];
      continue;
    }
    if (block && fenced) block.push(line);
    else if (!fenced && /^#+ /.test(line) && /^#+/.exec(line)![0].length <= level) {
      if (inSection) break;
      inSection = line === heading;
    }
  }
  throw new Error(`no ${language} block under ${heading}`);
}
