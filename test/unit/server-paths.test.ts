// Unit tests of withoutServerPaths and its uses: a job's errors, refusals and outputs without the server's directories, in any spelling of a path.

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import {
  eventTextShown,
  executionErrorShown,
  jobErrorShown,
  mayHoldServerPath,
  outputsShown,
  promptAnswerShown,
  showJobWithoutServerPaths,
  withoutServerPaths,
  withoutServerPathsIn,
} from '../../src/isolation/server-paths.js';

/** Every directory the properties make holds this, so that what is shown can be searched for any of them. */
const MARK = 'S3cr3t';

/** A folder or file name: letters (some not ASCII), digits, spaces, dots, dashes, parentheses and quotes; no separator. */
const nameText = fc.stringMatching(/^[A-Za-z0-9 ._()'"`é名-]{1,12}$/);

/** The ways a path is written: POSIX, Windows (with either separator, and doubled as a Python repr writes it), UNC, a file URL, a home. */
const SPELLINGS: Record<string, (parts: string[]) => string> = {
  posix: (parts) => `/${parts.join('/')}`,
  windows: (parts) => `C:\\${parts.join('\\')}`,
  windowsForward: (parts) => `d:/${parts.join('/')}`,
  repr: (parts) => `C:\\\\${parts.join('\\\\')}`,
  unc: (parts) => `\\\\${parts.join('\\')}`,
  longWindows: (parts) => `\\\\?\\C:\\${parts.join('\\')}`,
  fileUrl: (parts) => `file:///${parts.join('/')}`,
  home: (parts) => `~/${parts.join('/')}`,
};

/** A path of one to five marked directories and a file, in some spelling, quoted (then holding no such quote) or not. */
const serverPath = fc
  .record({
    dirs: fc.array(
      nameText.map((name) => `${name}${MARK}`),
      { minLength: 1, maxLength: 5 },
    ),
    file: nameText,
    spelling: fc.constantFrom(...Object.keys(SPELLINGS)),
    quote: fc.constantFrom('"', "'", '`', ''),
  })
  .map(({ dirs, file, spelling, quote }) => {
    const unquote = (name: string): string => (quote === '' ? name : name.replaceAll(quote, ''));
    const parts = [...dirs.map(unquote), unquote(file) || 'f'];
    return { path: SPELLINGS[spelling]!(parts), file: parts.at(-1)!, quote };
  });

/** Text around a path: before it, some words ending where a path may start; after it, its closing quote, or the end of its line. */
const around = fc.record({ before: fc.stringMatching(/^[A-Za-z ,:=([{]{0,20}[ :=([{]$|^$/), after: fc.string({ maxLength: 20 }) });

describe('withoutServerPaths', () => {
  test('no directory of an absolute path is shown, in any spelling, quoted or not, with spaces and quotes in its names', () => {
    fc.assert(
      fc.property(serverPath, around, fc.string({ maxLength: 20 }), ({ path, file, quote }, { before, after }, nextLine) => {
        fc.pre(!`${before}${after}${nextLine}`.includes(MARK));
        // Unquoted, the path runs to the end of its line: what follows it there names no folder, or it would be cut too.
        const text = quote === '' ? `${before}${path}${after.replace(/[\r\n\\/]/g, '')}\n${nextLine}` : `${before}${quote}${path}${quote}${after}`;
        const shown = withoutServerPaths(text);
        assert.ok(!shown.includes(MARK), `${JSON.stringify(text)} shown as ${JSON.stringify(shown)}`);
        assert.ok(shown.includes(file), `the file name stays: ${JSON.stringify(shown)}`);
      }),
      { numRuns: 2000 },
    );
  });

  test('text without an absolute path is left as it is: relative paths, fractions, web URLs', () => {
    fc.assert(fc.property(fc.stringMatching(/^[A-Za-z0-9 .,:_()-]{0,40}$/), (text) => assert.equal(withoutServerPaths(text), text)));
    for (const text of [
      'The safetensors file is corrupt/incomplete',
      'see ./models/x.pt and ../up/y and a/b/c.py',
      'mat1 and mat2 shapes cannot be multiplied (77x768 and 1024x320)',
      'ratio 3/4',
      'failed to fetch https://api.comfy.org/nodes/x?y=1',
    ]) {
      assert.equal(withoutServerPaths(text), text);
    }
  });

  test("a traceback line keeps the file's name, line and function; a custom node's file from custom_nodes on; a package's from after site-packages", () => {
    const cases: Array<[string, string]> = [
      [
        '  File "/home/comfy/ComfyUI/execution.py", line 345, in execute\n    output_data = await get_output_data(x)\n',
        '  File "execution.py", line 345, in execute\n    output_data = await get_output_data(x)\n',
      ],
      ['  File "/home/bob/ComfyUI/custom_nodes/my-pack/nodes.py", line 12, in run\n', '  File "custom_nodes/my-pack/nodes.py", line 12, in run\n'],
      ['  File "C:\\Users\\Bob Smith\\ComfyUI\\Custom_Nodes\\pack\\n.py", line 3, in f', '  File "Custom_Nodes\\pack\\n.py", line 3, in f'],
      ['  File "/venv/lib/python3.11/site-packages/torch/nn/modules/module.py", line 1', '  File "torch/nn/modules/module.py", line 1'],
    ];
    for (const [line, shown] of cases) assert.equal(withoutServerPaths(line), shown);
  });

  test('an exception message keeps its words: a quoted path is cut to its file, an unquoted one to the rest of its line', () => {
    const cases: Array<[string, string]> = [
      ["[Errno 2] No such file or directory: '/home/John Smith/ComfyUI/input/x y.png'", "[Errno 2] No such file or directory: 'x y.png'"],
      [
        'Could not detect model type of: /data/models/checkpoints/my model.safetensors\nTIPS: check it',
        'Could not detect model type of: my model.safetensors\nTIPS: check it',
      ],
      ["PosixPath('/srv/o\"neil/x.pt') and b'/srv/y/z.bin'", "PosixPath('x.pt') and b'z.bin'"],
      ['"/home/o\'brien/x.py"', '"x.py"'],
      ["'/home/a\"b\\'c/x.py' tail", "'x.py' tail"],
      ['copy file:///home/bob/a.txt to \\\\server\\share\\bob\\b.txt', 'copy b.txt'],
      ['in /home/bob/ComfyUI/custom_nodes/pack/x.py: cannot open /home/bob/secret/y', 'in custom_nodes/pack/x.py: cannot open y'],
      ['key=/etc/bob/k (path:/home/bob/x)', 'key=x)'],
    ];
    for (const [message, shown] of cases) assert.equal(withoutServerPaths(message), shown);
  });
});

/** An `execution_error` as ComfyUI sends it, with a big seed among the inputs that a double cannot hold. */
const ERROR = {
  prompt_id: 'p1',
  node_id: '8',
  node_type: 'VAEDecode',
  executed: ['3'],
  exception_message: "No such file: '/home/bob/ComfyUI/input/x.png'\n",
  exception_type: 'FileNotFoundError',
  traceback: ['  File "/home/bob/ComfyUI/execution.py", line 1, in execute\n', 7],
  current_inputs: { path: ['/home/bob/x'] },
  current_outputs: [],
};

describe('a failed job as a user key is shown it', () => {
  test("executionErrorShown cuts the message, each traceback line, the inputs' strings and node errors, and leaves every other field", () => {
    const refused = { ...ERROR, node_errors: { '1': { errors: [{ details: 'Invalid file: /srv/in/a.png', extra_info: { n: 1 } }], class_type: 'L' } } };
    const shown = executionErrorShown(refused);
    assert.deepEqual(shown, {
      ...ERROR,
      exception_message: "No such file: 'x.png'\n",
      traceback: ['  File "execution.py", line 1, in execute\n', 7],
      current_inputs: { path: ['x'] },
      node_errors: { '1': { errors: [{ details: 'Invalid file: a.png', extra_info: { n: 1 } }], class_type: 'L' } },
    });
    assert.equal(ERROR.exception_message, "No such file: '/home/bob/ComfyUI/input/x.png'\n", 'the data given is not changed');
  });

  test('eventTextShown rewrites an execution_error, numbers as written, and passes any other message as the same text', () => {
    const text = `{"type": "execution_error", "data": ${JSON.stringify(ERROR).replace('"executed"', '"seed": 18446744073709551615, "executed"')}}`;
    const shown = eventTextShown(text);
    assert.ok(!shown.includes('/home/bob/ComfyUI'), shown);
    assert.ok(shown.includes('"seed":18446744073709551615'), shown);
    const progress = '{"type": "progress", "data": {"text": "\\"execution_error\\" /home/bob/x"}}';
    assert.equal(eventTextShown(progress), progress);
  });

  test("showJobWithoutServerPaths cuts a jobs API job's execution_error and the execution_error of its execution_status", () => {
    const job: Record<string, unknown> = {
      id: 'p1',
      execution_error: ERROR,
      execution_status: {
        messages: [
          ['execution_start', {}],
          ['execution_error', ERROR],
        ],
      },
    };
    showJobWithoutServerPaths(job);
    assert.ok(!JSON.stringify(job).includes('/home/bob'), JSON.stringify(job));
  });

  test("showJobWithoutServerPaths cuts a job's outputs and preview, but the file fields /view takes", () => {
    const video = { filename: 'x (1).mp4', subfolder: 'a (1)/b', type: 'output', format: 'video/h264-mp4', fullpath: '/home/bob/out/x (1).mp4' };
    const job: Record<string, unknown> = { outputs: { '9': { gifs: [video], text: ['saved to /home/bob/out'] } }, preview_output: { ...video, nodeId: '9' } };
    showJobWithoutServerPaths(job);
    assert.deepEqual(job, {
      outputs: { '9': { gifs: [{ ...video, fullpath: 'x (1).mp4' }], text: ['saved to out'] } },
      preview_output: { ...video, fullpath: 'x (1).mp4', nodeId: '9' },
    });
  });

  test("jobErrorShown cuts the registry's message and keeps the node", () => {
    assert.deepEqual(jobErrorShown({ message: 'bad /home/bob/a.pt', node_id: '8', node_type: 'X', exception_type: 'E' }), {
      message: 'bad a.pt',
      node_id: '8',
      node_type: 'X',
      exception_type: 'E',
    });
    assert.equal(jobErrorShown(null), null);
  });

  test("jobErrorShown cuts a refusal's node errors and leaves the record's own as they are", () => {
    const error = { message: 'Prompt outputs failed validation', node_errors: { '2': { errors: [{ details: 'bad C:\\comfy\\in\\a.png' }] } } };
    assert.deepEqual(jobErrorShown(error)?.node_errors, { '2': { errors: [{ details: 'bad a.png' }] } });
    assert.equal((error.node_errors['2'].errors[0] as { details: string }).details, 'bad C:\\comfy\\in\\a.png');
  });
});

describe('outputs and refusals as a user key is shown them', () => {
  test('withoutServerPathsIn returns the same value when nothing changes, and copies only what changed', () => {
    const untouched = { a: ['x', { b: 'relative/c.png' }], n: 1 };
    assert.equal(withoutServerPathsIn(untouched), untouched);
    const mixed = { kept: { b: 'c' }, cut: ['/srv/a.png'] };
    const shown = withoutServerPathsIn(mixed) as typeof mixed;
    assert.deepEqual(shown, { kept: { b: 'c' }, cut: ['a.png'] });
    assert.equal(shown.kept, mixed.kept);
    assert.deepEqual(mixed.cut, ['/srv/a.png']);
  });

  test('outputsShown keeps filename, subfolder and type as /view takes them, and cuts them when they are absolute paths', () => {
    const output = { images: [{ filename: 'a (1).png', subfolder: 'batch (1)/b', type: 'output' }] };
    assert.equal(outputsShown(output), output);
    const absolute = { images: [{ filename: '/srv/comfy/output/a.png', subfolder: 'C:\\ComfyUI\\output\\x', type: 'output' }] };
    assert.deepEqual(outputsShown(absolute), { images: [{ filename: 'a.png', subfolder: 'x', type: 'output' }] });
    const rooted = { images: [{ filename: 'a.png', subfolder: '\\\\host\\share\\out', type: 'temp' }] };
    assert.deepEqual(outputsShown(rooted), { images: [{ filename: 'a.png', subfolder: 'out', type: 'temp' }] });
    const url = { images: [{ filename: 'file:///srv/comfy/output/a.png', subfolder: '', type: 'output' }] };
    assert.deepEqual(outputsShown(url), { images: [{ filename: 'a.png', subfolder: '', type: 'output' }] });
  });

  test('mayHoldServerPath is true of every text with a path in a string, escaped or not, and false of a plain one', () => {
    /** JSON as Python writes it: non-ASCII characters escaped. */
    const pythonJson = (value: unknown): string =>
      JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    for (const value of ['/srv/a', 'x\n/srv/a', 'é /srv/a', 'C:\\a', '~bob/a', 'file:/a']) assert.ok(mayHoldServerPath(pythonJson({ v: value })), value);
    assert.ok(!mayHoldServerPath('{"images": [{"filename": "a.png", "subfolder": "b/c", "type": "output"}]}'));
  });

  test("eventTextShown cuts an executed node's output, numbers as written, and passes one without paths as the same text", () => {
    const text =
      '{"type": "executed", "data": {"node": "9", "output": {"gifs": [{"filename": "x.mp4", "fullpath": "/home/bob/out/x.mp4", "frame_rate": 8.0}]}}}';
    assert.equal(eventTextShown(text), '{"type":"executed","data":{"node":"9","output":{"gifs":[{"filename":"x.mp4","fullpath":"x.mp4","frame_rate":8.0}]}}}');
    const plain = '{"type": "executed", "data": {"node": "9", "output": {"images": [{"filename": "a.png", "subfolder": "b (1)/c", "type": "output"}]}}}';
    assert.equal(eventTextShown(plain), plain);
  });

  test("promptAnswerShown cuts ComfyUI's refusal and keeps an answer without paths as it is", () => {
    const body = {
      error: { type: 'prompt_outputs_failed_validation', message: 'Prompt outputs failed validation', details: 'Invalid file: /srv/in/a.png', extra_info: {} },
      node_errors: { '1': { errors: [{ details: 'Invalid file: /srv/in/a.png', extra_info: { received_value: 18 } }], class_type: 'LoadVideo' } },
    };
    const refusal = { status: 400, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(body)) };
    const shown = promptAnswerShown(refusal);
    assert.equal(shown.status, 400);
    assert.ok(!shown.body.toString().includes('/srv'), shown.body.toString());
    assert.equal(JSON.parse(shown.body.toString()).node_errors['1'].errors[0].details, 'Invalid file: a.png');
    const queued = { status: 200, headers: {}, body: Buffer.from('{"prompt_id": "p", "number": 1, "node_errors": {}}') };
    assert.equal(promptAnswerShown(queued), queued);
  });
});
