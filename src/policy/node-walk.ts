// A walk up a prompt's links that finds a number for each node once: the largest over its forms, unknown on a cycle or too deep.

import type { PromptNode } from './node-replacements.js';

/** Longest chain of links walked: a node further upstream counts as unknown. */
const MAX_WALK_DEPTH = 200;

/** Numbers found for a prompt's nodes, each once per key (so a walk costs at most the prompt's size). */
export class NodeWalk {
  private readonly found = new Map<string, number | null>();
  private readonly walking = new Set<string>();

  /** `formsOf` gives a node id's forms: the node as sent, and as ComfyUI runs it when it replaces its class; none for an unknown id. */
  constructor(private readonly formsOf: (nodeId: string) => readonly PromptNode[]) {}

  /**
   * The largest `made` over node `nodeId`'s forms, found once for `key`; undefined when it has no forms, one of them
   * is unknown, the walk comes back to it (a cycle), or `depth` is past MAX_WALK_DEPTH.
   */
  largest(key: string, nodeId: string, depth: number, made: (form: PromptNode) => number | undefined): number | undefined {
    const known = this.found.get(key);
    if (known !== undefined) return known ?? undefined;
    if (this.walking.has(key) || depth > MAX_WALK_DEPTH) return undefined;
    this.walking.add(key);
    const forms = this.formsOf(nodeId);
    let largest: number | undefined = forms.length > 0 ? 0 : undefined;
    for (const form of forms) {
      const bound = largest === undefined ? undefined : made(form);
      largest = bound === undefined ? undefined : Math.max(largest!, bound);
    }
    this.walking.delete(key);
    this.found.set(key, largest ?? null);
    return largest;
  }
}
