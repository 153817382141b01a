// Unit tests of what a key is shown of the nodes ComfyUI took from its cache: the history text check, a node's output, and a job's counts and preview.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ownCachedOutput, showOwnCachedJobOutputs } from '../../src/isolation/cached-outputs.js';
import { mayNameCachedNodes, type NamedFile } from '../../src/isolation/files.js';

const image = (filename: string, type = 'output'): { filename: string; subfolder: string; type: string } => ({ filename, subfolder: '', type });
const isOwn = (file: NamedFile): boolean => file.filename.startsWith('own');

describe('mayNameCachedNodes', () => {
  test("reads ComfyUI's event as json.dumps writes it (with spaces) and compact", () => {
    assert.equal(mayNameCachedNodes('{"status": {"messages": [["execution_cached", {"nodes": [], "prompt_id": "p", "timestamp": 1}]]}}'), false);
    assert.equal(mayNameCachedNodes('{"status":{"messages":[["execution_cached",{"nodes":[],"prompt_id":"p"}]]}}'), false);
    assert.equal(mayNameCachedNodes('{"status": {"messages": [["execution_cached", {"nodes": ["9"], "prompt_id": "p", "timestamp": 1}]]}}'), true);
    assert.equal(mayNameCachedNodes('{"status":{"messages":[["execution_cached",{"nodes":["9","10"]}]]}}'), true);
    assert.equal(mayNameCachedNodes('{"outputs": {}, "status": {"messages": []}}'), false, 'no such event: nothing was taken from the cache');
  });

  test('the same words with no node earlier in the entry (a prompt or its extra_data) do not hide the event that lists nodes', () => {
    const crafted =
      '{"prompt": [1, "p", {}, {"note": ["execution_cached", {"nodes": []}]}, []], "status": {"messages": [["execution_cached", {"nodes": ["9"]}]]}}';
    assert.equal(mayNameCachedNodes(crafted), true);
  });

  test('an event written another way (prompt_id first) is read as one that may list nodes', () => {
    assert.equal(mayNameCachedNodes('[["execution_cached", {"prompt_id": "p", "nodes": []}]]'), true);
  });
});

describe('ownCachedOutput', () => {
  test("keeps the key's files and what names no file, leaves out the others'", () => {
    const output = { images: [image('other_00001_.png'), image('own_00001_.png')], animated: [false] };
    assert.deepEqual(ownCachedOutput(output, isOwn), { images: [image('own_00001_.png')], animated: [false] });
  });

  test("is null when the output names files and none is the key's; the same object when nothing is left out", () => {
    assert.equal(ownCachedOutput({ images: [image('other_00001_.png')], animated: [false] }, isOwn), null);
    const own = { images: [image('own_00001_.png')] };
    assert.equal(ownCachedOutput(own, isOwn), own);
    const text = { text: ['a caption'] };
    assert.equal(ownCachedOutput(text, isOwn), text);
    assert.equal(ownCachedOutput(null, isOwn), null);
  });
  test("a file named by a path string (Preview3D's result list, a 3D file) is a file: shown only when it is the key's, read in output unless annotated", () => {
    const seen: NamedFile[] = [];
    const record = (file: NamedFile): boolean => (seen.push(file), isOwn(file));
    const preview3d = { result: ['3d/other_mesh.glb', { position: [0, 0, 1] }, 'temp/bg_0123.png'] };
    assert.equal(ownCachedOutput(preview3d, record), null, "both its files are named, neither is the key's");
    assert.deepEqual(seen, [
      { type: 'output', subfolder: '3d', filename: 'other_mesh.glb' },
      { type: 'output', subfolder: 'temp', filename: 'bg_0123.png' },
    ]);
    assert.deepEqual(ownCachedOutput({ result: ['own_mesh.glb [input]', 'other.glb'] }, record), { result: ['own_mesh.glb [input]'] });
    assert.deepEqual(seen.at(-2), { type: 'input', subfolder: '', filename: 'own_mesh.glb' });
    const text = { text: ['other.png'], result: ['', null, 'no file here'] };
    assert.equal(ownCachedOutput(text, isOwn), text, 'text, and strings of no file shape, name no file');
  });
});

describe('showOwnCachedJobOutputs', () => {
  const status = { messages: [['execution_cached', { nodes: ['9', '10'], prompt_id: 'p' }]] };

  test('takes the left-out files from the counts, and picks the preview again as ComfyUI picks it when it was left out', () => {
    const job: Record<string, unknown> = {
      outputs_count: 3,
      previewable_outputs_count: 3,
      preview_output: { ...image('other_00001_.png'), nodeId: '9', mediaType: 'images' },
      outputs: { '9': { images: [image('other_00001_.png')] }, '10': { images: [image('own_00001_.png', 'temp')] }, '11': { text: ['hello'] } },
      execution_status: status,
    };
    showOwnCachedJobOutputs(job, isOwn);
    assert.deepEqual(job.outputs, { '10': { images: [image('own_00001_.png', 'temp')] }, '11': { text: ['hello'] } });
    assert.equal(job.outputs_count, 2);
    assert.equal(job.previewable_outputs_count, 2);
    assert.deepEqual(
      job.preview_output,
      { ...image('own_00001_.png', 'temp'), nodeId: '10', mediaType: 'images' },
      'a preview image when no saved one is left',
    );
  });

  test('a 3D file named by a string, which ComfyUI counts and may preview, leaves the counts and the preview with it', () => {
    const job: Record<string, unknown> = {
      outputs_count: 2,
      previewable_outputs_count: 2,
      preview_output: { filename: 'other_mesh.glb', type: 'output', subfolder: '', mediaType: '3d', nodeId: '9' },
      outputs: { '9': { result: ['other_mesh.glb', null] }, '10': { images: [image('own_00001_.png', 'temp')] } },
      execution_status: status,
    };
    showOwnCachedJobOutputs(job, isOwn);
    assert.deepEqual(job.outputs, { '10': { images: [image('own_00001_.png', 'temp')] } });
    assert.deepEqual([job.outputs_count, job.previewable_outputs_count], [1, 1]);
    assert.deepEqual(job.preview_output, { ...image('own_00001_.png', 'temp'), nodeId: '10', mediaType: 'images' });
  });

  test('a preview that is still shown stays; with nothing left to preview but text, the text is the preview; with nothing, there is none', () => {
    const kept: Record<string, unknown> = {
      outputs_count: 2,
      preview_output: { ...image('own_00001_.png'), nodeId: '10', mediaType: 'images' },
      outputs: { '9': { images: [image('other_00001_.png')] }, '10': { images: [image('own_00001_.png')] } },
      execution_status: status,
    };
    showOwnCachedJobOutputs(kept, isOwn);
    assert.deepEqual([kept.outputs_count, (kept.preview_output as { filename: string }).filename], [1, 'own_00001_.png']);

    const text: Record<string, unknown> = {
      outputs_count: 1,
      preview_output: { ...image('other_00001_.png'), nodeId: '9', mediaType: 'images' },
      outputs: { '9': { images: [image('other_00001_.png')] }, '11': { text: ['hello'] } },
      execution_status: status,
    };
    showOwnCachedJobOutputs(text, isOwn);
    assert.deepEqual([text.outputs_count, text.preview_output], [0, { content: 'hello', nodeId: '11', mediaType: 'text' }]);

    const none: Record<string, unknown> = {
      outputs_count: 1,
      preview_output: { ...image('other_00001_.png'), nodeId: '9', mediaType: 'images' },
      outputs: { '9': { images: [image('other_00001_.png')] } },
      execution_status: status,
    };
    showOwnCachedJobOutputs(none, isOwn);
    assert.deepEqual(none, { outputs_count: 0, outputs: {}, execution_status: status });
  });

  test('a job without cached nodes, or without outputs (a list item), is left as it is', () => {
    const job = { outputs_count: 1, outputs: { '9': { images: [image('other_00001_.png')] } }, execution_status: { messages: [] } };
    const before = structuredClone(job);
    showOwnCachedJobOutputs(job, isOwn);
    assert.deepEqual(job, before);
    const item = { outputs_count: 1 };
    showOwnCachedJobOutputs(item, isOwn);
    assert.deepEqual(item, { outputs_count: 1 });
  });
});
