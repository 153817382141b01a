// ComfyUI's node replacements (GET /node_replacements): a prompt node of an old class_type that ComfyUI runs as another node.

/** What ComfyUI turns a node of a replaced class_type into: the node class, and where each input comes from. */
export interface NodeReplacement {
  new_node_id: string;
  input_mapping: ReadonlyArray<{ new_id: string; old_id?: string; set_value?: unknown }>;
}

/**
 * Per old class_type, the replacements ComfyUI may apply: the first registered on each backend. Backends that
 * run different custom nodes may replace one class with different nodes, and a prompt may run on any of them.
 */
export type NodeReplacements = ReadonlyMap<string, readonly NodeReplacement[]>;

/** A prompt node, as the policy reads it. */
export interface PromptNode {
  class_type: string;
  inputs: unknown;
}

/**
 * Reads ComfyUI's answer to GET /node_replacements (`{old_node_id: [{new_node_id, input_mapping, ...}]}`):
 * per old class_type, its first replacement, which is the one ComfyUI applies. Entries it cannot read are
 * left out; anything but an object reads as none (releases without replacements answer 404).
 */
export function parseNodeReplacements(body: unknown): NodeReplacements {
  const replacements = new Map<string, NodeReplacement[]>();
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return replacements;
  for (const [oldId, list] of Object.entries(body)) {
    const first: unknown = Array.isArray(list) ? list[0] : undefined;
    if (typeof first !== 'object' || first === null) continue;
    const { new_node_id: newId, input_mapping: mapping } = first as { new_node_id?: unknown; input_mapping?: unknown };
    if (typeof newId !== 'string') continue;
    const inputMapping = Array.isArray(mapping)
      ? mapping.filter((entry): entry is NodeReplacement['input_mapping'][number] => typeof (entry as { new_id?: unknown } | null)?.new_id === 'string')
      : [];
    replacements.set(oldId, [{ new_node_id: newId, input_mapping: inputMapping }]);
  }
  return replacements;
}

/** The replacements of several backends together: per old class_type, each distinct replacement any of them applies. */
export function mergeNodeReplacements(each: readonly NodeReplacements[]): NodeReplacements {
  if (each.length === 1) return each[0]!;
  const merged = new Map<string, NodeReplacement[]>();
  const seen = new Set<string>();
  for (const replacements of each) {
    for (const [oldId, list] of replacements) {
      for (const replacement of list) {
        const id = JSON.stringify([oldId, replacement.new_node_id, replacement.input_mapping]);
        if (seen.has(id)) continue;
        seen.add(id);
        const forms = merged.get(oldId);
        if (forms) forms.push(replacement);
        else merged.set(oldId, [replacement]);
      }
    }
  }
  return merged;
}

/**
 * The nodes ComfyUI may run in place of `node` when its class_type has replacements (and is not a node class
 * of its own), one per replacement: its class, with only the inputs the mapping sets, each a fixed value or an
 * input of the old node. None when there is no replacement.
 */
export function replacedNodes(node: PromptNode, replacements: NodeReplacements): PromptNode[] {
  const list = replacements.get(node.class_type);
  if (!list) return [];
  const old = typeof node.inputs === 'object' && node.inputs !== null ? (node.inputs as Record<string, unknown>) : {};
  return list.map((replacement) => {
    const inputs: Record<string, unknown> = {};
    for (const { new_id: newId, old_id: oldId, set_value: value } of replacement.input_mapping) {
      if (value !== undefined) inputs[newId] = value;
      else if (oldId !== undefined && Object.hasOwn(old, oldId)) inputs[newId] = old[oldId];
    }
    return { class_type: replacement.new_node_id, inputs };
  });
}

/**
 * The nodes of `prompt` (node ids to nodes) as checks that read a node by its class_type see them: each node
 * as sent, under its id; then each node that ComfyUI may run as another class, as that class (see
 * replacedNodes), under its id and the class it becomes (`"5 as LoadImage"`). Entries, not an object: a node
 * of the prompt may itself be named `"5 as LoadImage"`, and neither may stand in for the other. None for a
 * prompt that is not an object.
 */
export function nodesAsChecked(prompt: unknown, replacements: NodeReplacements): Array<[string, unknown]> {
  if (typeof prompt !== 'object' || prompt === null) return [];
  const given = Object.entries(prompt as Record<string, unknown>);
  const replaced: Array<[string, PromptNode]> = [];
  for (const [nodeId, node] of replacements.size === 0 ? [] : given) {
    const classType = typeof node === 'object' && node !== null ? (node as { class_type?: unknown }).class_type : undefined;
    if (typeof classType !== 'string') continue;
    for (const form of replacedNodes({ class_type: classType, inputs: (node as { inputs?: unknown }).inputs }, replacements)) {
      replaced.push([`${nodeId} as ${form.class_type}`, form]);
    }
  }
  return [...given, ...replaced];
}
