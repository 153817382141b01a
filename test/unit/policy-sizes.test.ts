// The prompt policy's size limits: inputs read by name on every node, and the size a resizing node makes, bounded by walking its links upstream.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PolicyViolation } from '../../src/errors.js';
import { parseExactJson } from '../../src/json/exact-json.js';
import { promptViolations } from '../../src/policy/check.js';
import type { LoadedSizes } from '../../src/policy/loaded-images.js';
import { parseNodeReplacements, type NodeReplacements } from '../../src/policy/node-replacements.js';
import type { PromptPolicy } from '../../src/policy/schema.js';

type Graph = Record<string, { class_type: string; inputs: Record<string, unknown> }>;

/**
 * The violations without their reasons, for comparison. The sizes of loaded images are not read unless `loaded`
 * gives them: a loader then stands for a node of unknown size, and is not itself checked.
 */
function violations(
  policy: PromptPolicy,
  prompt: Graph,
  replacements: NodeReplacements = new Map(),
  loaded: LoadedSizes = 'later',
): Array<Omit<PolicyViolation, 'reason'>> {
  return promptViolations(policy, prompt, 0, {}, replacements, loaded).map(({ node_id, rule, limit, value }) => ({ node_id, rule, limit, value }));
}

/** The reasons given, in order (loaded images' sizes not read unless `loaded` gives them). */
function reasons(policy: PromptPolicy, prompt: Graph, loaded: LoadedSizes = 'later'): Array<string | undefined> {
  return promptViolations(policy, prompt, 0, {}, new Map(), loaded).map((violation) => violation.reason);
}

const SIZE = { max_width: 1024, max_height: 1024 };

/** A text-to-image graph at `size`, its sampled latent at node 3, then the nodes `more` adds. */
function txt2img(size: number, more: Graph = {}): Graph {
  return {
    '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'model.safetensors' } },
    '5': { class_type: 'EmptyLatentImage', inputs: { width: size, height: size, batch_size: 1 } },
    '6': { class_type: 'CLIPTextEncode', inputs: { text: 'a cat', clip: ['4', 1] } },
    '3': { class_type: 'KSampler', inputs: { model: ['4', 0], positive: ['6', 0], negative: ['6', 0], latent_image: ['5', 0], steps: 20 } },
    ...more,
  };
}

const LOADED = { '10': { class_type: 'LoadImage', inputs: { image: 'photo.png' } } };

describe('prompt policy sizes', () => {
  test('limited inputs are read by name on every node, core and custom alike', () => {
    const prompt: Graph = {
      '1': { class_type: 'EmptyImage', inputs: { width: 2048, height: 512, batch_size: 8, color: 0 } },
      '2': { class_type: 'WanImageToVideo', inputs: { width: 832, height: 1280, length: 121, batch_size: 1, positive: ['9', 0] } },
      '3': { class_type: 'SVD_img2vid_Conditioning', inputs: { width: 1024, height: 576, video_frames: 50 } },
      '4': { class_type: 'EmptyCosmosLatentVideo', inputs: { width: 1280, height: 704, length: 121, batch_size: 1 } },
      '5': { class_type: 'EmptyChromaRadianceLatentImage', inputs: { width: 1536, height: 1024, batch_size: 1 } },
      '6': { class_type: 'LTXVScheduler', inputs: { steps: 100 } },
      '7': { class_type: 'ExtendIntermediateSigmas', inputs: { sigmas: ['6', 0], steps: 50 } },
      '8': { class_type: 'ResizeAndPadImage', inputs: { image: ['1', 0], target_width: 4096, target_height: 512 } },
      '9': { class_type: 'ImageScaleToMaxDimension', inputs: { image: ['1', 0], largest_size: 2048 } },
      '10': { class_type: 'RepeatImageBatch', inputs: { image: ['1', 0], amount: 16 } },
      '11': { class_type: 'SomePackVideoSampler', inputs: { num_frames: 97, steps: 31 } },
      '12': {
        class_type: 'ResizeImageMaskNode',
        inputs: { input: ['1', 0], resize_type: 'scale dimensions', 'resize_type.width': 1536, 'resize_type.height': 512 },
      },
    };
    const policy = { ...SIZE, max_batch_size: 4, max_steps: 30, max_frames: 33 };
    assert.deepEqual(violations(policy, prompt), [
      { node_id: '1', rule: 'max_width', limit: 1024, value: 2048 },
      { node_id: '1', rule: 'max_batch_size', limit: 4, value: 8 },
      { node_id: '2', rule: 'max_height', limit: 1024, value: 1280 },
      { node_id: '2', rule: 'max_frames', limit: 33, value: 121 },
      { node_id: '3', rule: 'max_frames', limit: 33, value: 50 },
      { node_id: '4', rule: 'max_width', limit: 1024, value: 1280 },
      { node_id: '4', rule: 'max_frames', limit: 33, value: 121 },
      { node_id: '5', rule: 'max_width', limit: 1024, value: 1536 },
      { node_id: '6', rule: 'max_steps', limit: 30, value: 100 },
      { node_id: '7', rule: 'max_steps', limit: 30, value: 50 },
      { node_id: '7', rule: 'max_steps', limit: 30, value: 5000 },
      { node_id: '8', rule: 'max_width', limit: 1024, value: 4096 },
      { node_id: '9', rule: 'max_width', limit: 1024, value: 2048 },
      { node_id: '9', rule: 'max_height', limit: 1024, value: 2048 },
      { node_id: '10', rule: 'max_batch_size', limit: 4, value: 16 },
      { node_id: '10', rule: 'max_batch_size', limit: 4, value: 128 },
      { node_id: '11', rule: 'max_frames', limit: 33, value: 97 },
      { node_id: '11', rule: 'max_steps', limit: 30, value: 31 },
      { node_id: '12', rule: 'max_width', limit: 1024, value: 1536 },
    ]);
  });

  test('frame counts named frames_number (LTXVEmptyLatentAudio) or frame_count, and the layers of a layered Qwen latent, are read', () => {
    const prompt: Graph = {
      '1': { class_type: 'LTXVEmptyLatentAudio', inputs: { frames_number: 1000, frame_rate: 25, batch_size: 1, audio_vae: ['9', 0] } },
      '2': { class_type: 'SomePackVideoNode', inputs: { frame_count: 600 } },
      '3': { class_type: 'EmptyQwenImageLayeredLatentImage', inputs: { width: 640, height: 640, layers: 4096, batch_size: 1 } },
    };
    assert.deepEqual(violations({ max_frames: 121, max_batch_size: 4 }, prompt), [
      { node_id: '1', rule: 'max_frames', limit: 121, value: 1000 },
      { node_id: '2', rule: 'max_frames', limit: 121, value: 600 },
      { node_id: '3', rule: 'max_frames', limit: 121, value: 4096 },
      { node_id: '3', rule: 'max_batch_size', limit: 4, value: 4096 },
    ]);
    prompt['3']!.inputs.layers = 3;
    assert.deepEqual(violations({ max_batch_size: 4 }, prompt), [], 'the default 3 layers');
  });

  test("inputs of a limited name that mean something else are not read: a batch subset's length, SDXL's conditioning sizes", () => {
    const prompt: Graph = {
      '1': { class_type: 'LatentFromBatch', inputs: { samples: ['2', 0], batch_index: 0, length: 64 } },
      '2': { class_type: 'ImageFromBatch', inputs: { image: ['3', 0], batch_index: 0, length: 64 } },
      '3': {
        class_type: 'CLIPTextEncodeSDXL',
        inputs: { clip: ['9', 1], width: 4096, height: 0, crop_w: 0, crop_h: 0, target_width: 4096, target_height: 4096, text_g: 'a', text_l: 'a' },
      },
      '4': { class_type: 'CLIPTextEncodeSDXLRefiner', inputs: { clip: ['9', 1], ascore: 6, width: 4096, height: 4096, text: 'a' } },
    };
    assert.deepEqual(violations({ ...SIZE, max_frames: 16 }, prompt), []);
  });

  test('a factor of at most 1 passes; above 1 the size made from a node of literal size is checked', () => {
    const hiresFix = txt2img(512, { '7': { class_type: 'LatentUpscaleBy', inputs: { samples: ['3', 0], upscale_method: 'nearest-exact', scale_by: 1.5 } } });
    assert.deepEqual(violations(SIZE, hiresFix), [], '512 × 1.5 = 768');
    assert.deepEqual(violations({ max_width: 768 }, hiresFix), [], 'exactly the limit');
    hiresFix['7']!.inputs.scale_by = '2.5';
    assert.deepEqual(violations(SIZE, hiresFix), [
      { node_id: '7', rule: 'max_width', limit: 1024, value: 1280 },
      { node_id: '7', rule: 'max_height', limit: 1024, value: 1280 },
    ]);
    assert.deepEqual(violations({ max_steps: 30 }, hiresFix), [], 'no size limit: factors are not read');

    const shrunk = { ...LOADED, '11': { class_type: 'ImageScaleBy', inputs: { image: ['10', 0], upscale_method: 'area', scale_by: 0.5 } } };
    assert.deepEqual(violations(SIZE, shrunk), [], 'shrinking a loaded image');
    shrunk['11'].inputs.scale_by = 1;
    assert.deepEqual(violations(SIZE, shrunk), []);
  });

  test('factors multiply along the chain, through decoders and other nodes, and a node given several images takes the largest', () => {
    const chain = txt2img(512, {
      '7': { class_type: 'LatentUpscaleBy', inputs: { samples: ['3', 0], upscale_method: 'bislerp', scale_by: 1.5 } },
      '8': { class_type: 'VAEDecode', inputs: { samples: ['7', 0], vae: ['4', 2] } },
      '9': { class_type: 'ImageScaleBy', inputs: { image: ['8', 0], upscale_method: 'lanczos', scale_by: 1.5 } },
    });
    assert.deepEqual(violations({ max_width: 1024 }, chain), [{ node_id: '9', rule: 'max_width', limit: 1024, value: 1152 }]);

    const blended: Graph = {
      '1': { class_type: 'EmptyImage', inputs: { width: 512, height: 512, batch_size: 1, color: 0 } },
      '2': { class_type: 'EmptyImage', inputs: { width: 900, height: 300, batch_size: 1, color: 0 } },
      '3': { class_type: 'ImageBlend', inputs: { image1: ['1', 0], image2: ['2', 0], blend_factor: 0.5, blend_mode: 'normal' } },
      '4': {
        class_type: 'ResizeImageMaskNode',
        inputs: { input: ['3', 0], resize_type: 'scale by multiplier', 'resize_type.multiplier': 1.2, scale_method: 'area' },
      },
    };
    assert.deepEqual(violations(SIZE, blended), [{ node_id: '4', rule: 'max_width', limit: 1024, value: 1080 }]);
  });

  test('a link is followed in every shape ComfyUI runs: its slot written as -0 or 0.0, and wrapped as {"__value__": [...]}', () => {
    const composite = (link: string): string =>
      JSON.stringify({
        '1': { class_type: 'EmptyImage', inputs: { width: 1024, height: 1024, batch_size: 1, color: 0 } },
        '2': { class_type: 'EmptyImage', inputs: { width: 8, height: 8, batch_size: 1, color: 0 } },
        '3': { class_type: 'ImageCompositeMasked', inputs: { destination: 'LINK', source: ['2', 0], x: 0, y: 0, resize_source: false } },
        '4': { class_type: 'ImageScaleBy', inputs: { image: ['3', 0], upscale_method: 'lanczos', scale_by: 8.0 } },
      }).replace('"LINK"', link);
    const refused = [{ node_id: '4', rule: 'max_width', limit: 1024, value: 8192 }];
    for (const link of ['["1",0]', '["1",-0]', '["1",0.0]', '{"__value__":["1",0]}', '{"__value__":["1",-0]}']) {
      // 8.0 makes the gateway's exact reader read the body, as it reads such a prompt: -0 and 0.0 are then kept as written.
      const prompt = parseExactJson(composite(link).replace('"scale_by":8', '"scale_by":8.0')) as Graph;
      assert.deepEqual(violations({ max_width: 1024 }, prompt), refused, link);
    }
  });

  test("SD_4XUpscale_Conditioning's scale_ratio is a factor, and LTXVLatentUpsampler a model upscaler", () => {
    const prompt: Graph = {
      ...txt2img(512),
      '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
      '9': {
        class_type: 'SD_4XUpscale_Conditioning',
        inputs: { images: ['8', 0], positive: ['6', 0], negative: ['6', 0], scale_ratio: 10, noise_augmentation: 0 },
      },
      '10': { class_type: 'LTXVLatentUpsampler', inputs: { samples: ['3', 0], upscale_model: ['11', 0], vae: ['4', 2] } },
      '11': { class_type: 'LatentUpscaleModelLoader', inputs: { model_name: 'ltxv-spatial-upscaler.safetensors' } },
    };
    assert.deepEqual(violations({ max_width: 1024 }, prompt), [
      { node_id: '9', rule: 'max_width', limit: 1024, value: 5120 },
      { node_id: '10', rule: 'max_width', limit: 1024, value: 'model' },
    ]);
    prompt['9']!.inputs.scale_ratio = 2;
    delete prompt['10'];
    assert.deepEqual(violations({ max_width: 1024 }, prompt), [], '512 × 2');
  });

  test('a factor above 1 is refused when the size it enlarges is not fixed by the prompt, with the reason', () => {
    const loaded: Graph = { ...LOADED, '11': { class_type: 'ImageScaleBy', inputs: { image: ['10', 0], upscale_method: 'lanczos', scale_by: 2 } } };
    assert.deepEqual(violations({ max_width: 1024 }, loaded), [{ node_id: '11', rule: 'max_width', limit: 1024, value: 'unbounded' }]);
    assert.match(reasons({ max_width: 1024 }, loaded)[0]!, /size the prompt does not fix.*literal width and height/);

    const encoded = {
      ...txt2img(512),
      ...LOADED,
      '12': { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } },
      '13': { class_type: 'LatentUpscaleBy', inputs: { samples: ['14', 0], upscale_method: 'nearest-exact', scale_by: 1.5 } },
      '14': { class_type: 'LatentBlend', inputs: { samples1: ['3', 0], samples2: ['12', 0], blend_factor: 0.5 } },
    };
    assert.deepEqual(
      violations({ max_height: 1024 }, encoded),
      [{ node_id: '13', rule: 'max_height', limit: 1024, value: 'unbounded' }],
      'one unknown input is enough',
    );

    const linkedAway: Graph = { '1': { class_type: 'LatentUpscaleBy', inputs: { samples: ['99', 0], upscale_method: 'area', scale_by: 2 } } };
    assert.deepEqual(violations({ max_width: 4096 }, linkedAway), [{ node_id: '1', rule: 'max_width', limit: 4096, value: 'unbounded' }], 'a link to no node');

    const cycle: Graph = {
      '1': { class_type: 'ImageScaleBy', inputs: { image: ['2', 0], upscale_method: 'area', scale_by: 2 } },
      '2': { class_type: 'ImageInvert', inputs: { image: ['1', 0] } },
    };
    assert.deepEqual(violations({ max_width: 4096 }, cycle), [{ node_id: '1', rule: 'max_width', limit: 4096, value: 'unbounded' }], 'a cycle');
  });

  test('a linked or text factor is refused; other values are left to ComfyUI', () => {
    const prompt = (scale_by: unknown): Graph =>
      txt2img(512, { '7': { class_type: 'LatentUpscaleBy', inputs: { samples: ['3', 0], upscale_method: 'area', scale_by } } });
    assert.deepEqual(violations({ max_width: 1024 }, prompt(['20', 0])), [{ node_id: '7', rule: 'max_width', limit: 1024, value: 'linked' }]);
    assert.deepEqual(violations({ max_width: 1024 }, prompt({ __value__: '1_5' })), [{ node_id: '7', rule: 'max_width', limit: 1024, value: 'text' }]);
    assert.deepEqual(violations({ max_width: 1024 }, prompt('nan')), [{ node_id: '7', rule: 'max_width', limit: 1024, value: 'text' }]);
    assert.deepEqual(violations({ max_width: 1024 }, prompt('Infinity')), [{ node_id: '7', rule: 'max_width', limit: 1024, value: Infinity }]);
    for (const other of [null, true, undefined]) assert.deepEqual(violations({ max_width: 1024 }, prompt(other)), [], String(other));
  });

  test('a very long chain counts as unknown, and the walk costs at most the size of the prompt', () => {
    const long: Graph = { '0': { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0 } } };
    for (let id = 1; id <= 20_000; id++) long[String(id)] = { class_type: 'ImageInvert', inputs: { image: [String(id - 1), 0] } };
    long['last'] = { class_type: 'ImageScaleBy', inputs: { image: ['20000', 0], upscale_method: 'area', scale_by: 2 } };
    const started = performance.now();
    assert.deepEqual(violations({ max_width: 4096 }, long), [{ node_id: 'last', rule: 'max_width', limit: 4096, value: 'unbounded' }]);
    const fanIn: Graph = { '0': { class_type: 'EmptyImage', inputs: { width: 64, height: 64, batch_size: 1, color: 0 } } };
    // Each node links to every earlier one of 150: without each bound found once, the walk would take exponential time.
    for (let id = 1; id <= 150; id++) {
      const inputs: Record<string, unknown> = { upscale_method: 'area', scale_by: 1.01 };
      for (let earlier = Math.max(0, id - 20); earlier < id; earlier++) inputs[`image${earlier}`] = [String(earlier), 0];
      fanIn[String(id)] = { class_type: 'SomePackScaleBy', inputs };
    }
    assert.equal(violations({ max_width: 4096 }, fanIn).length, 0, '64 × 1.01^150 ≈ 286');
    assert.ok(performance.now() - started < 2000, `took ${Math.round(performance.now() - started)} ms`);
  });

  test('ImageScaleToTotalPixels: megapixels are held to max_width × max_height', () => {
    const prompt = (megapixels: unknown): Graph => ({
      ...LOADED,
      '11': { class_type: 'ImageScaleToTotalPixels', inputs: { image: ['10', 0], upscale_method: 'lanczos', megapixels, resolution_steps: 1 } },
    });
    assert.deepEqual(violations(SIZE, prompt(1)), [], '1,048,576 pixels');
    assert.deepEqual(violations(SIZE, prompt(4)), [{ node_id: '11', rule: 'max_width', limit: 1024, value: 4 }]);
    assert.match(reasons(SIZE, prompt(4))[0]!, /4 megapixels is more than max_width × max_height \(1048576 pixels\)/);
    assert.deepEqual(violations({ max_height: 2048 }, prompt(4)), [], 'one limit stands for both: 2048 × 2048');
    assert.deepEqual(violations(SIZE, prompt(['7', 0])), [{ node_id: '11', rule: 'max_width', limit: 1024, value: 'linked' }]);
  });

  test('padding adds to the size it is given, which must be known', () => {
    const padded = (source: Graph, from: string): Graph => ({
      ...source,
      '11': { class_type: 'ImagePadForOutpaint', inputs: { image: [from, 0], left: 0, top: 0, right: 256, bottom: 0, feathering: 40 } },
    });
    const empty: Graph = { '1': { class_type: 'EmptyImage', inputs: { width: 1024, height: 1024, batch_size: 1, color: 0 } } };
    assert.deepEqual(violations(SIZE, padded(empty, '1')), [{ node_id: '11', rule: 'max_width', limit: 1024, value: 1280 }]);
    assert.deepEqual(violations({ max_width: 1280, max_height: 1024 }, padded(empty, '1')), []);
    assert.deepEqual(violations(SIZE, padded(LOADED, '10')), [{ node_id: '11', rule: 'max_width', limit: 1024, value: 'unbounded' }]);
  });

  test('a side derived from the aspect ratio is refused: a 0 beside a given side, shorter_size, a one-side mode', () => {
    const prompt: Graph = {
      '1': { class_type: 'EmptyImage', inputs: { width: 16, height: 1024, batch_size: 1, color: 0 } },
      '2': { class_type: 'ImageScale', inputs: { image: ['1', 0], upscale_method: 'area', width: 1024, height: 0, crop: 'disabled' } },
      '3': { class_type: 'ImageScale', inputs: { image: ['1', 0], upscale_method: 'area', width: 0, height: 0, crop: 'disabled' } },
      '4': { class_type: 'ResizeImageMaskNode', inputs: { input: ['1', 0], resize_type: 'scale width', 'resize_type.width': 1024, scale_method: 'area' } },
      '5': { class_type: 'ResizeImageMaskNode', inputs: { input: ['1', 0], resize_type: 'scale shorter dimension', 'resize_type.shorter_size': 512 } },
    };
    assert.deepEqual(violations(SIZE, prompt), [
      { node_id: '2', rule: 'max_height', limit: 1024, value: 'unbounded' },
      { node_id: '4', rule: 'max_height', limit: 1024, value: 'unbounded' },
      { node_id: '5', rule: 'max_width', limit: 1024, value: 'unbounded' },
      { node_id: '5', rule: 'max_height', limit: 1024, value: 'unbounded' },
    ]);
    assert.match(reasons(SIZE, prompt)[0]!, /aspect ratio.*give both width and height/);
  });

  test('a model upscaler is refused under max_width or max_height, saying why and what to do', () => {
    const prompt: Graph = {
      ...txt2img(512),
      '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
      '20': { class_type: 'UpscaleModelLoader', inputs: { model_name: '4x-UltraSharp.pth' } },
      '21': { class_type: 'ImageUpscaleWithModel', inputs: { upscale_model: ['20', 0], image: ['8', 0] } },
    };
    assert.deepEqual(violations({ max_height: 2048 }, prompt), [{ node_id: '21', rule: 'max_height', limit: 2048, value: 'model' }]);
    assert.match(reasons({ max_height: 2048 }, prompt)[0]!, /factor comes from the model file.*ImageScaleBy/);
    assert.deepEqual(violations({ max_steps: 30, max_frames: 10 }, prompt), []);
    prompt['22'] = { class_type: 'ImageScaleBy', inputs: { image: ['21', 0], upscale_method: 'area', scale_by: 0.5 } };
    prompt['23'] = { class_type: 'ImageScaleBy', inputs: { image: ['21', 0], upscale_method: 'area', scale_by: 1.5 } };
    assert.deepEqual(violations({ max_height: 2048 }, prompt), [
      { node_id: '21', rule: 'max_height', limit: 2048, value: 'model' },
      { node_id: '23', rule: 'max_height', limit: 2048, value: 'unbounded' },
    ]);
  });

  test('a node ComfyUI replaces is checked, and walked, as it is sent and as ComfyUI runs it', () => {
    const replacements = parseNodeReplacements({
      OldUpscaleBy: [
        {
          new_node_id: 'LatentUpscaleBy',
          input_mapping: [
            { new_id: 'samples', old_id: 'latent' },
            { new_id: 'scale_by', old_id: 'factor' },
          ],
        },
      ],
    });
    const prompt = txt2img(512, { '7': { class_type: 'OldUpscaleBy', inputs: { latent: ['3', 0], factor: 3 } } });
    assert.deepEqual(violations(SIZE, prompt, replacements), [
      { node_id: '7', rule: 'max_width', limit: 1024, value: 1536 },
      { node_id: '7', rule: 'max_height', limit: 1024, value: 1536 },
    ]);
    prompt['8'] = { class_type: 'ImageScaleBy', inputs: { image: ['7', 0], upscale_method: 'area', scale_by: 1.1 } };
    prompt['7']!.inputs.factor = 1.5;
    assert.deepEqual(violations(SIZE, prompt, replacements), [], 'the largest of its forms: 768, × 1.1 = 845');
    prompt['8'].inputs.scale_by = 1.5;
    assert.deepEqual(violations({ max_width: 1024 }, prompt, replacements), [{ node_id: '8', rule: 'max_width', limit: 1024, value: 1152 }]);
  });
});

describe('prompt policy joins', () => {
  const image = (width: number, height: number, batch_size = 1) => ({ class_type: 'EmptyImage', inputs: { width, height, batch_size, color: 0 } });
  const stitch = (inputs: Record<string, unknown>) => ({
    class_type: 'ImageStitch',
    inputs: { image1: ['1', 0], image2: ['2', 0], direction: 'right', match_image_size: false, spacing_width: 0, spacing_color: 'white', ...inputs },
  });

  test('ImageStitch makes the sum of its images along the direction (with the spacing, rounded up to even), the largest across', () => {
    const prompt: Graph = { '1': image(512, 512), '2': image(600, 300), '3': stitch({ spacing_width: 3 }) };
    assert.deepEqual(violations(SIZE, prompt), [{ node_id: '3', rule: 'max_width', limit: 1024, value: 1116 }]);
    assert.match(reasons(SIZE, prompt)[0]!, /joins images side by side.*sum of theirs/);
    assert.deepEqual(violations({ max_width: 1116, max_height: 512 }, prompt), [], 'exactly the limits');
    prompt['3']!.inputs.direction = 'up';
    assert.deepEqual(violations(SIZE, prompt), [], '512 + 4 + 300 high, 600 wide');
    assert.deepEqual(violations({ max_height: 815 }, prompt), [{ node_id: '3', rule: 'max_height', limit: 815, value: 816 }]);
    delete prompt['3']!.inputs.image2;
    prompt['3']!.inputs.spacing_width = 1024;
    assert.deepEqual(violations({ max_width: 600, max_height: 512 }, prompt), [], 'without image2 it returns image1');
  });

  test('a stitched image too wide for the key is refused at the stitch, before it is encoded and sampled', () => {
    const prompt: Graph = {
      ...txt2img(512),
      '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
      '9': {
        class_type: 'ImageStitch',
        inputs: { image1: ['8', 0], image2: ['8', 0], direction: 'left', match_image_size: false, spacing_width: 2, spacing_color: 'black' },
      },
      '10': { class_type: 'VAEEncode', inputs: { pixels: ['9', 0], vae: ['4', 2] } },
      '11': { class_type: 'KSampler', inputs: { model: ['4', 0], positive: ['6', 0], negative: ['6', 0], latent_image: ['10', 0], steps: 20 } },
      '12': { class_type: 'LatentUpscaleBy', inputs: { samples: ['11', 0], upscale_method: 'area', scale_by: 1.5 } },
    };
    assert.deepEqual(violations(SIZE, prompt), [
      { node_id: '9', rule: 'max_width', limit: 1024, value: 1026 },
      { node_id: '12', rule: 'max_width', limit: 1024, value: 1539 },
    ]);
    prompt['9']!.inputs.spacing_width = 0;
    delete prompt['12'];
    assert.deepEqual(violations(SIZE, prompt), [], '512 + 512');
  });

  test('a direction that is not a literal joins both sides; a linked spacing is unbounded', () => {
    const prompt: Graph = { '1': image(512, 512), '2': image(600, 300), '3': stitch({ direction: ['20', 0] }) };
    assert.deepEqual(violations({ max_width: 1024, max_height: 800 }, prompt), [
      { node_id: '3', rule: 'max_width', limit: 1024, value: 1112 },
      { node_id: '3', rule: 'max_height', limit: 800, value: 812 },
    ]);
    prompt['3']!.inputs.direction = { __value__: 'sideways' };
    assert.equal(violations({ max_width: 1024, max_height: 800 }, prompt).length, 2, 'a direction ComfyUI does not know');
    prompt['3']!.inputs.direction = 'down';
    prompt['3']!.inputs.spacing_width = ['21', 0];
    assert.deepEqual(violations(SIZE, prompt), [{ node_id: '3', rule: 'max_height', limit: 1024, value: 'unbounded' }]);
  });

  test('match_image_size resizes image2 by its aspect ratio: the joined side is unbounded unless it is a literal false', () => {
    const prompt: Graph = { '1': image(512, 512), '2': image(1024, 1), '3': stitch({ match_image_size: true }) };
    assert.deepEqual(violations(SIZE, prompt), [{ node_id: '3', rule: 'max_width', limit: 1024, value: 'unbounded' }]);
    assert.match(reasons(SIZE, prompt)[0]!, /match_image_size.*aspect ratio.*set match_image_size to false/);
    for (const match of ['false', 0, ['20', 0]]) {
      prompt['3']!.inputs.match_image_size = match;
      assert.deepEqual(violations(SIZE, prompt), [{ node_id: '3', rule: 'max_width', limit: 1024, value: 'unbounded' }], JSON.stringify(match));
    }
    prompt['3']!.inputs.match_image_size = { __value__: false };
    assert.deepEqual(violations(SIZE, prompt), [{ node_id: '3', rule: 'max_width', limit: 1024, value: 1536 }]);
  });

  test('a stitch of an image of unknown size is refused; custom joins and pass-through nodes are walked alike', () => {
    const loaded: Graph = { ...LOADED, '2': image(64, 64), '3': stitch({ image1: ['10', 0] }) };
    assert.deepEqual(violations({ max_width: 4096 }, loaded), [{ node_id: '3', rule: 'max_width', limit: 4096, value: 'unbounded' }]);
    assert.match(reasons({ max_width: 4096 }, loaded)[0]!, /not fixed by the prompt.*literal width and height/);
    assert.deepEqual(violations({ max_height: 4096 }, loaded), [], 'the other side is not joined');

    const custom: Graph = {
      '1': image(512, 512),
      '2': { class_type: 'SomePackReroute', inputs: { anything: ['1', 0] } },
      '3': { class_type: 'SomePackImageConcatenate', inputs: { image_a: ['2', 0], image_b: ['1', 0], direction: 'right' } },
      '4': { class_type: 'SomePackReroute', inputs: { anything: ['3', 0] } },
      '5': { class_type: 'ImageScaleBy', inputs: { image: ['4', 0], upscale_method: 'area', scale_by: 1.5 } },
    };
    assert.deepEqual(
      violations(SIZE, custom),
      [{ node_id: '5', rule: 'max_width', limit: 1024, value: 1536 }],
      'the join is within the limit, its enlargement is not',
    );
    assert.deepEqual(violations({ max_width: 1000 }, custom), [
      { node_id: '3', rule: 'max_width', limit: 1000, value: 1024 },
      { node_id: '5', rule: 'max_width', limit: 1000, value: 1536 },
    ]);
  });

  test('stitches of stitches add up, and LatentConcat joins latents along x, y or in time', () => {
    const prompt: Graph = {
      '1': image(300, 300),
      '2': image(300, 300),
      '3': stitch({}),
      '4': stitch({ image1: ['3', 0], image2: ['3', 0] }),
    };
    assert.deepEqual(violations(SIZE, prompt), [{ node_id: '4', rule: 'max_width', limit: 1024, value: 1200 }]);

    const latents: Graph = {
      ...txt2img(512),
      '7': { class_type: 'LatentConcat', inputs: { samples1: ['3', 0], samples2: ['5', 0], dim: '-y' } },
      '8': { class_type: 'LatentConcat', inputs: { samples1: ['3', 0], samples2: ['5', 0], dim: 't' } },
    };
    assert.deepEqual(violations({ max_width: 1000, max_height: 1000, max_batch_size: 1 }, latents), [
      { node_id: '7', rule: 'max_height', limit: 1000, value: 1024 },
      { node_id: '8', rule: 'max_batch_size', limit: 1, value: 2 },
    ]);
  });

  test('a batch join makes the sum of its batches: a doubling chain of LatentBatch is refused past max_batch_size', () => {
    const prompt = txt2img(512, {
      '7': { class_type: 'LatentBatch', inputs: { samples1: ['5', 0], samples2: ['5', 0] } },
      '8': { class_type: 'LatentBatch', inputs: { samples1: ['7', 0], samples2: ['7', 0] } },
      '9': { class_type: 'KSampler', inputs: { model: ['4', 0], positive: ['6', 0], negative: ['6', 0], latent_image: ['8', 0], steps: 20 } },
    });
    prompt['5']!.inputs.batch_size = 4;
    assert.deepEqual(violations({ max_batch_size: 4 }, prompt), [
      { node_id: '7', rule: 'max_batch_size', limit: 4, value: 8 },
      { node_id: '8', rule: 'max_batch_size', limit: 4, value: 16 },
    ]);
    assert.match(reasons({ max_batch_size: 4 }, prompt)[0]!, /joins batches.*sum of theirs.*join fewer or smaller batches/);
    assert.deepEqual(violations({ max_batch_size: 16 }, prompt), []);
    assert.deepEqual(violations({ max_width: 512 }, prompt), [], 'no batch limit: joins are only bounded in size');
  });

  test('batch joins of every core kind, their inputs bounded by batch_size, frames and repeats', () => {
    const prompt: Graph = {
      '1': image(64, 64, 2),
      '2': { class_type: 'RepeatImageBatch', inputs: { image: ['1', 0], amount: 3 } },
      '3': { class_type: 'ImageBatch', inputs: { image1: ['1', 0], image2: ['2', 0] } },
      '4': { class_type: 'BatchImagesNode', inputs: { 'images.image0': ['1', 0], 'images.image1': ['1', 0], 'images.image2': { __value__: ['1', -0] } } },
      '5': { class_type: 'EmptyHunyuanLatentVideo', inputs: { width: 64, height: 64, length: 33, batch_size: 1 } },
      '6': { class_type: 'VAEDecode', inputs: { samples: ['5', 0], vae: ['9', 0] } },
      '7': { class_type: 'BatchImagesMasksLatentsNode', inputs: { 'inputs.input0': ['6', 0], 'inputs.input1': ['1', 0] } },
      '8': { class_type: 'SomePackImageBatchMulti', inputs: { image_1: ['1', 0], image_2: ['1', 0], inputcount: 2 } },
      '10': { class_type: 'SomePackBatchStitch', inputs: { image_1: ['1', 0], image_2: ['1', 0], direction: 'down' } },
    };
    assert.deepEqual(violations({ max_batch_size: 6 }, prompt), [
      { node_id: '3', rule: 'max_batch_size', limit: 6, value: 8 },
      { node_id: '7', rule: 'max_batch_size', limit: 6, value: 35 },
    ]);
    assert.deepEqual(violations({ max_batch_size: 35 }, prompt), []);
    assert.deepEqual(
      violations({ max_height: 100 }, prompt),
      [{ node_id: '10', rule: 'max_height', limit: 100, value: 128 }],
      'a Batch node with a direction joins that side too',
    );
  });

  test('a batch join of a batch the prompt does not fix is refused, with the reason', () => {
    const prompt: Graph = {
      ...LOADED,
      '1': image(64, 64),
      '2': { class_type: 'ImageBatch', inputs: { image1: ['1', 0], image2: ['10', 0] } },
      '3': { class_type: 'EmptyQwenImageLayeredLatentImage', inputs: { width: 64, height: 64, layers: 3, batch_size: 1 } },
      '4': { class_type: 'LatentCutToBatch', inputs: { samples: ['3', 0], dim: 't', slice_size: 1 } },
      '5': { class_type: 'LatentBatch', inputs: { samples1: ['4', 0], samples2: ['4', 0] } },
      '6': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: ['7', 0] } },
      '8': { class_type: 'LatentBatch', inputs: { samples1: ['6', 0], samples2: ['99', 0] } },
    };
    assert.deepEqual(violations({ max_batch_size: 64 }, prompt), [
      { node_id: '2', rule: 'max_batch_size', limit: 64, value: 'unbounded' },
      { node_id: '5', rule: 'max_batch_size', limit: 64, value: 'unbounded' },
      { node_id: '6', rule: 'max_batch_size', limit: 64, value: 'linked' },
      { node_id: '8', rule: 'max_batch_size', limit: 64, value: 'unbounded' },
    ]);
    assert.match(reasons({ max_batch_size: 64 }, prompt)[0]!, /batch of one of them is not fixed.*as many images as it has frames.*literal batch_size/);
  });

  test('a repeat of a known batch of more than one is held to the batch it makes; nodes that do not join keep their rules', () => {
    const prompt = txt2img(512, { '7': { class_type: 'RepeatLatentBatch', inputs: { samples: ['5', 0], amount: 4 } } });
    prompt['5']!.inputs.batch_size = 4;
    assert.deepEqual(violations({ max_batch_size: 4 }, prompt), [{ node_id: '7', rule: 'max_batch_size', limit: 4, value: 16 }]);
    assert.match(reasons({ max_batch_size: 4 }, prompt)[0]!, /repeats a batch.*lower amount/);
    prompt['5']!.inputs.batch_size = 1;
    assert.deepEqual(violations({ max_batch_size: 4 }, prompt), [], 'a batch of one repeated 4 times: the amount alone is read');
    prompt['7']!.inputs.amount = 5;
    assert.deepEqual(violations({ max_batch_size: 4 }, prompt), [{ node_id: '7', rule: 'max_batch_size', limit: 4, value: 5 }], 'read once');

    const ordinary: Graph = {
      ...LOADED,
      '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'model.safetensors' } },
      '11': { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } },
      '12': { class_type: 'RepeatLatentBatch', inputs: { samples: ['11', 0], amount: 2 } },
      '13': { class_type: 'ImageStitch', inputs: { image1: ['10', 0], direction: 'right', match_image_size: true, spacing_width: 0, spacing_color: 'white' } },
      '14': { class_type: 'LatentBatchSeedBehavior', inputs: { samples: ['12', 0], seed_behavior: 'fixed' } },
    };
    assert.deepEqual(violations({ ...SIZE, max_batch_size: 4 }, ordinary), []);
  });

  test('each bound is found once: a doubling chain of 60 joins, each given the previous twice, is walked in linear time', () => {
    const prompt: Graph = { '0': { class_type: 'EmptyLatentImage', inputs: { width: 64, height: 64, batch_size: 4 } } };
    for (let id = 1; id <= 60; id++)
      prompt[String(id)] = { class_type: 'LatentBatch', inputs: { samples1: [String(id - 1), 0], samples2: [String(id - 1), 0] } };
    const found = violations({ max_batch_size: 1_000_000_000 }, prompt);
    assert.equal(found.length, 33, 'from 4 × 2^28 on');
    assert.deepEqual(found.at(-1), { node_id: '60', rule: 'max_batch_size', limit: 1_000_000_000, value: 4 * 2 ** 60 });
  });
});

describe('prompt policy: loaded images', () => {
  /** Sizes read for `photo.png` in input (LOADED's file), as the gateway keys them. */
  const photoOf = (width: number, height: number): LoadedSizes => new Map([['input//photo.png', { width, height }]]);
  const encoded: Graph = {
    ...txt2img(512),
    ...LOADED,
    '12': { class_type: 'VAEEncode', inputs: { pixels: ['10', 0], vae: ['4', 2] } },
    '3': { class_type: 'KSampler', inputs: { model: ['4', 0], latent_image: ['12', 0], steps: 20 } },
  };

  test('a loader is held to max_width and max_height by the longer side of the image it loads, with the reason', () => {
    assert.deepEqual(violations(SIZE, encoded, new Map(), photoOf(1024, 1024)), [], 'within both limits');
    assert.deepEqual(violations(SIZE, encoded, new Map(), photoOf(2048, 2048)), [
      { node_id: '10', rule: 'max_width', limit: 1024, value: 2048 },
      { node_id: '10', rule: 'max_height', limit: 1024, value: 2048 },
    ]);
    // ComfyUI turns an image its EXIF says is turned: a 1024 × 600 image may be 600 × 1024.
    assert.deepEqual(violations({ max_width: 1024, max_height: 768 }, encoded, new Map(), photoOf(1024, 600)), [
      { node_id: '10', rule: 'max_height', limit: 768, value: 1024 },
    ]);
    assert.match(reasons({ max_width: 1024 }, encoded, photoOf(4000, 3000))[0]!, /the loaded image is 4000×3000.*longer one/);
    assert.deepEqual(violations({ max_steps: 30 }, encoded, new Map(), new Map()), [], 'no size limit: the loader is not checked');
  });

  test('a loader whose image size is not known is refused under a size limit, whatever follows it', () => {
    const unknown = new Map();
    assert.deepEqual(violations(SIZE, encoded, new Map(), unknown), [{ node_id: '10', rule: 'max_width', limit: 1024, value: 'unbounded' }]);
    assert.match(reasons(SIZE, encoded, unknown)[0]!, /could not be read.*PNG, JPEG, WebP, GIF and BMP/);
    const other = new Map([['input//other.png', { width: 8, height: 8 }]]);
    assert.deepEqual(
      violations({ max_height: 1024 }, LOADED, new Map(), other),
      [{ node_id: '10', rule: 'max_height', limit: 1024, value: 'unbounded' }],
      "another file's size",
    );
    const linked: Graph = { '10': { class_type: 'LoadImage', inputs: { image: ['9', 0] } } };
    assert.deepEqual(violations(SIZE, linked, new Map(), photoOf(8, 8)), [{ node_id: '10', rule: 'max_width', limit: 1024, value: 'unbounded' }], 'a link');
    const webcam: Graph = { '10': { class_type: 'WebcamCapture', inputs: { image: 'photo.png', width: 64, height: 64, capture_on_queue: true } } };
    assert.deepEqual(violations(SIZE, webcam, new Map(), photoOf(4096, 64)), [
      { node_id: '10', rule: 'max_width', limit: 1024, value: 4096 },
      { node_id: '10', rule: 'max_height', limit: 1024, value: 4096 },
    ]);
    const replacements = parseNodeReplacements({ OldLoader: [{ new_node_id: 'LoadImage', input_mapping: [{ new_id: 'image', old_id: 'file' }] }] });
    const replaced: Graph = { '10': { class_type: 'OldLoader', inputs: { file: 'photo.png' } } };
    assert.deepEqual(violations(SIZE, replaced, replacements, photoOf(2048, 16)), [
      { node_id: '10', rule: 'max_width', limit: 1024, value: 2048 },
      { node_id: '10', rule: 'max_height', limit: 1024, value: 2048 },
    ]);
  });

  test("the size walk reads a loaded image's size: an enlargement or a join of it is held to the size it makes", () => {
    const doubled: Graph = { ...LOADED, '11': { class_type: 'ImageScaleBy', inputs: { image: ['10', 0], upscale_method: 'lanczos', scale_by: 2 } } };
    assert.deepEqual(violations(SIZE, doubled, new Map(), photoOf(512, 300)), [], '512 × 2');
    assert.deepEqual(violations(SIZE, doubled, new Map(), photoOf(600, 600)), [
      { node_id: '11', rule: 'max_width', limit: 1024, value: 1200 },
      { node_id: '11', rule: 'max_height', limit: 1024, value: 1200 },
    ]);
    const stitched: Graph = {
      ...LOADED,
      '11': { class_type: 'ImageStitch', inputs: { image1: ['10', 0], image2: ['10', 0], direction: 'right', match_image_size: false, spacing_width: 0 } },
    };
    assert.deepEqual(violations(SIZE, stitched, new Map(), photoOf(512, 512)), []);
    assert.deepEqual(violations(SIZE, stitched, new Map(), photoOf(600, 100)), [{ node_id: '11', rule: 'max_width', limit: 1024, value: 1200 }]);
  });
});

describe('prompt policy: loaded videos, latents and 3D scenes', () => {
  const video: Graph = { '10': { class_type: 'LoadVideo', inputs: { file: 'clip.mp4' } } };
  const latent: Graph = { '10': { class_type: 'LoadLatent', inputs: { latent: 'saved.latent' } } };
  const scene = (recording: string): Graph => ({
    '10': { class_type: 'Load3D', inputs: { model_file: '3d/cube.glb', image: { image: 'scene.png', mask: 'mask.png', recording }, width: 512, height: 512 } },
  });
  const read = new Map();

  test('a loader of a video, a latent or a 3D scene is refused as unbounded under each limit it could break, with the reason', () => {
    assert.deepEqual(violations({ ...SIZE, max_frames: 64, max_batch_size: 4 }, video, new Map(), read), [
      { node_id: '10', rule: 'max_width', limit: 1024, value: 'unbounded' },
      { node_id: '10', rule: 'max_frames', limit: 64, value: 'unbounded' },
    ]);
    assert.match(reasons(SIZE, video, read)[0]!, /size of a loaded video is not read.*LoadImage/);
    assert.match(reasons({ max_frames: 64 }, video, read)[0]!, /number of frames of a loaded video is not read/);
    assert.deepEqual(violations({ max_height: 512, max_frames: 64, max_batch_size: 4 }, latent, new Map(), read), [
      { node_id: '10', rule: 'max_height', limit: 512, value: 'unbounded' },
      { node_id: '10', rule: 'max_batch_size', limit: 4, value: 'unbounded' },
      { node_id: '10', rule: 'max_frames', limit: 64, value: 'unbounded' },
    ]);
    assert.match(reasons({ max_batch_size: 4 }, latent, read)[0]!, /batch of the loaded latent could not be read.*safetensors header/);
    assert.deepEqual(violations({ ...SIZE, max_frames: 64 }, scene(''), new Map(), read), [
      { node_id: '10', rule: 'max_width', limit: 1024, value: 'unbounded' },
    ]);
    assert.deepEqual(violations({ max_frames: 64 }, scene('recording.webm'), new Map(), read), [
      { node_id: '10', rule: 'max_frames', limit: 64, value: 'unbounded' },
    ]);
    assert.deepEqual(violations({ max_batch_size: 4 }, scene(''), new Map(), read), [{ node_id: '10', rule: 'max_batch_size', limit: 4, value: 'unbounded' }]);
    assert.match(reasons({ max_batch_size: 4 }, scene(''), read)[0]!, /images a 3D scene loads are not read.*every frame/);
    for (const loader of [video, latent, scene('recording.webm')]) {
      assert.deepEqual(violations({ max_steps: 30, max_prompt_bytes: 1000 }, loader, new Map(), read), [], 'no limit it could break');
      assert.deepEqual(violations({ ...SIZE, max_frames: 64, max_batch_size: 4 }, loader, new Map(), 'later'), [], 'checked when the prompt is sent');
    }
  });

  test('a node ComfyUI replaces with such a loader is checked as the loader, and the size walk does not pass through one', () => {
    const replacements = parseNodeReplacements({ OldVideo: [{ new_node_id: 'LoadVideo', input_mapping: [{ new_id: 'file', old_id: 'path' }] }] });
    assert.deepEqual(violations({ max_frames: 64 }, { '10': { class_type: 'OldVideo', inputs: { path: 'clip.mp4' } } }, replacements, read), [
      { node_id: '10', rule: 'max_frames', limit: 64, value: 'unbounded' },
    ]);
    // Load3D's width and height are what the scene is shown at, not the size of the image files it loads.
    const enlarged: Graph = { ...scene(''), '11': { class_type: 'ImageScaleBy', inputs: { image: ['10', 0], upscale_method: 'lanczos', scale_by: 2 } } };
    assert.deepEqual(violations(SIZE, enlarged, new Map(), read), [
      { node_id: '10', rule: 'max_width', limit: 1024, value: 'unbounded' },
      { node_id: '11', rule: 'max_width', limit: 1024, value: 'unbounded' },
      { node_id: '11', rule: 'max_height', limit: 1024, value: 'unbounded' },
    ]);
  });
});

describe('prompt policy: loaded latents, by their header', () => {
  const loaded: Graph = {
    '10': { class_type: 'LoadLatent', inputs: { latent: 'saved.latent' } },
    '3': { class_type: 'KSampler', inputs: { model: ['4', 0], latent_image: ['10', 0], steps: 20 } },
  };
  /** The size read for `saved.latent` in input, as the gateway keys it. */
  const latentOf = (size: { width: number; height: number; batch: number; frames?: number }): LoadedSizes => new Map([['latent input//saved.latent', size]]);
  const LIMITS = { ...SIZE, max_batch_size: 4, max_frames: 33 };

  test('a loaded latent is held to each limit by what it may decode to, with the reason', () => {
    assert.deepEqual(violations(LIMITS, loaded, new Map(), latentOf({ width: 1008, height: 672, batch: 4 })), [], 'within each');
    assert.deepEqual(violations(LIMITS, loaded, new Map(), latentOf({ width: 2688, height: 1008, batch: 8, frames: 41 })), [
      { node_id: '10', rule: 'max_width', limit: 1024, value: 2688 },
      { node_id: '10', rule: 'max_batch_size', limit: 4, value: 8 },
      { node_id: '10', rule: 'max_frames', limit: 33, value: 41 },
    ]);
    assert.match(reasons(SIZE, loaded, latentOf({ width: 2688, height: 672, batch: 1 }))[0]!, /latent is 64×16.*42 pixels/);
    assert.deepEqual(violations({ max_frames: 33 }, loaded, new Map(), latentOf({ width: 9999, height: 9999, batch: 99 })), [], 'only the limits set');
  });

  test('a latent of unknown size is refused as before, and an image of the same name does not stand for it', () => {
    const asImage = new Map([['input//saved.latent', { width: 8, height: 8 }]]);
    assert.deepEqual(violations({ max_width: 1024, max_batch_size: 4 }, loaded, new Map(), asImage), [
      { node_id: '10', rule: 'max_width', limit: 1024, value: 'unbounded' },
      { node_id: '10', rule: 'max_batch_size', limit: 4, value: 'unbounded' },
    ]);
    assert.match(reasons({ max_width: 1024 }, loaded, asImage)[0]!, /could not be read.*safetensors header/);
  });

  test('the size walk starts from what a loaded latent may decode to: its sides, and its batch times its frames', () => {
    const upscaled: Graph = {
      ...loaded,
      '11': { class_type: 'LatentUpscaleBy', inputs: { samples: ['10', 0], upscale_method: 'nearest-exact', scale_by: 2 } },
    };
    assert.deepEqual(violations(SIZE, upscaled, new Map(), latentOf({ width: 504, height: 504, batch: 1 })), [], '12 × 42 × 2');
    assert.deepEqual(violations(SIZE, upscaled, new Map(), latentOf({ width: 672, height: 504, batch: 1 })), [
      { node_id: '11', rule: 'max_width', limit: 1024, value: 1344 },
    ]);
    const joined: Graph = { ...loaded, '11': { class_type: 'LatentBatch', inputs: { samples1: ['10', 0], samples2: ['10', 0] } } };
    assert.deepEqual(violations({ max_batch_size: 12 }, joined, new Map(), latentOf({ width: 8, height: 8, batch: 2, frames: 3 })), [], '2 × 3 twice');
    assert.deepEqual(violations({ max_batch_size: 12 }, joined, new Map(), latentOf({ width: 8, height: 8, batch: 2, frames: 4 })), [
      { node_id: '11', rule: 'max_batch_size', limit: 12, value: 16 },
    ]);
  });
});
