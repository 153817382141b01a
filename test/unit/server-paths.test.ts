// Unit tests of withoutServerPaths and its uses: a failed job's exception message and traceback without the server's directories, in any spelling of a path.

import assert from 'node:assert/strict';
import fc from 'fast-check';
import { describe, test } from 'node:test';
import { eventTextShown, executionErrorShown, jobErrorShown, showJobErrors, withoutServerPaths } from '../../src/isolation/server-paths.js';

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
  test('executionErrorShown cuts the message and each traceback line, and leaves every other field', () => {
    const shown = executionErrorShown(ERROR);
    assert.deepEqual(shown, { ...ERROR, exception_message: "No such file: 'x.png'\n", traceback: ['  File "execution.py", line 1, in execute\n', 7] });
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

  test("showJobErrors cuts a jobs API job's execution_error and the execution_error of its execution_status", () => {
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
    showJobErrors(job);
    assert.ok(!JSON.stringify(job).replaceAll('"/home/bob/x"', '').includes('/home/bob'), JSON.stringify(job));
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
});
