// Rewrites ComfyUI's JSON answers and reads large request bodies; a large one is parsed (and an answer rewritten and stringified) in a worker thread, so it never holds up other requests.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { UpstreamAnswer } from '../proxy/http.js';
import { parseComfyJson, withJsonText } from './json-body.js';
import { JSON_REWRITES, type AnswersOf, type FactsOf, type JsonRewrite, type RewriteName } from './json-rewrites.js';
import { mayHoldInexactNumber, parseExactJson, stringifyExactJson } from '../json/exact-json.js';
import { fromExactJsonMessage, type ExactJsonMessage } from './exact-json-message.js';

/** Answers of at least this many bytes are parsed in a worker thread; smaller ones parse in a few milliseconds on the request thread. */
export const LARGE_JSON_BYTES = 1024 * 1024;

/** How many times longer a text whose numbers need the exact reader (see parseExactJson) takes to parse: such answers and bodies go to a worker from a size this many times smaller. */
const EXACT_READ_COST = 8;

/** Messages to the worker: an answer to parse with a rewrite, the gateway's answers to its facts, the end of a task given up, or a request body to parse. */
export type ToWorker =
  | { task: number; rewrite: RewriteName; body: ArrayBuffer }
  | { task: number; answers: unknown }
  | { task: number; drop: true }
  | { task: number; parse: string };

/**
 * Messages from the worker: a parsed answer's facts, the answer back when it is not the one expected, the rewritten answer, a failure, a
 * parsed request body, the message of the SyntaxError of one that is not JSON, or word that one is too deep to send (see MAX_MESSAGE_DEPTH).
 */
export type FromWorker =
  | { task: number; facts: unknown }
  | { task: number; unchanged: ArrayBuffer }
  | { task: number; text: ArrayBuffer }
  | { task: number; error: string }
  | { task: number; parsed: ExactJsonMessage }
  | { task: number; invalid: string }
  | { task: number; tooDeep: true };

/** The bytes of `view` as an ArrayBuffer of their own, which can be transferred: the view's own buffer when it spans all of it, else a copy. */
export function ownArrayBuffer(view: Uint8Array): ArrayBuffer {
  const buffer = view.buffer;
  if (buffer instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === buffer.byteLength) return buffer;
  return new Uint8Array(view).buffer;
}

/** What parses a request body as parseExactJson does, a large one off the request thread: a JsonRewriter. */
export type JsonBodyParser = Pick<JsonRewriter, 'parseBody'>;

/** Looks up a rewrite's facts in the gateway's state (on the request thread). */
export type FactsLookup<Name extends RewriteName> = (facts: FactsOf<Name>) => Promise<AnswersOf<Name>>;

interface Thread {
  worker: Worker;
  /** Tasks in flight on it. */
  load: number;
  /** Tasks waiting for its next message, by task number. */
  waiting: Map<number, { resolve: (reply: FromWorker) => void; reject: (error: Error) => void }>;
  /** Why it stopped, once it has. */
  failure?: Error;
}

export interface JsonRewriterOptions {
  /** Answers of at least this many bytes go to a worker thread, and those and bodies needing the exact reader from EXACT_READ_COST times less (default LARGE_JSON_BYTES). */
  fromBytes?: number;
  /** Most worker threads (default: 1, or 2 with more than 2 CPUs). */
  threads?: number;
}

/**
 * Applies the rewrites of json-rewrites.ts to ComfyUI's answers. A small answer is rewritten on the
 * request thread; a large one is handed (its buffer transferred, not copied) to one of a few worker
 * threads, started when first needed, which parses it and sends back only the facts to look up, then
 * rewrites and stringifies it with the answers. Both ways give the same bytes. Large request bodies are
 * parsed by the same threads (see parseBody).
 */
export class JsonRewriter {
  private readonly fromBytes: number;
  private readonly maxThreads: number;
  private readonly threads: Thread[] = [];
  private nextTask = 0;
  private closed = false;

  constructor(options: JsonRewriterOptions = {}) {
    this.fromBytes = options.fromBytes ?? LARGE_JSON_BYTES;
    this.maxThreads = options.threads ?? (availableParallelism() > 2 ? 2 : 1);
  }

  /** Worker threads running now. */
  get threadCount(): number {
    return this.threads.length;
  }

  /**
   * The answer to send for ComfyUI's `answer`: a 200 whose body is the JSON the rewrite expects comes
   * back rewritten (with `relayJson`'s headers); any other answer comes back as it is. `lookup` is
   * called on the request thread with the rewrite's facts.
   * @throws Error when the worker thread fails or stops (the caller's request gets a 500).
   */
  async rewrite<Name extends RewriteName>(answer: UpstreamAnswer, name: Name, lookup: FactsLookup<Name>): Promise<UpstreamAnswer> {
    if (answer.status !== 200) return answer;
    if (this.closed || answer.body.length < this.fromBytes / EXACT_READ_COST) return this.rewriteHere(answer, name, lookup);
    if (answer.body.length < this.fromBytes && !mayHoldInexactNumber(answer.body.toString('latin1'))) return this.rewriteHere(answer, name, lookup);
    return this.rewriteInWorker(answer, name, lookup);
  }

  /**
   * Parses a request body as parseExactJson does. A body of LARGE_JSON_BYTES / EXACT_READ_COST characters or
   * more whose numbers need the exact reader (1.4 s for 15 MiB of `7.0`, against 0.27 s with JSON.parse) is
   * parsed by a worker thread; the request thread only receives the document and makes its ExactNumbers
   * again, in turns of the event loop (see fromExactJsonMessage). Every other body, and one nested deeper than
   * MAX_MESSAGE_DEPTH, is parsed here, as before.
   * @throws SyntaxError, with JSON.parse's message, when the text is not JSON; Error when the worker thread fails or stops.
   */
  async parseBody(text: string): Promise<unknown> {
    if (this.closed || text.length < this.fromBytes / EXACT_READ_COST) return parseExactJson(text);
    // parseExactJson reads a text without such numbers with JSON.parse: read it so here, without looking for them again.
    if (!mayHoldInexactNumber(text)) return JSON.parse(text);
    const thread = this.leastBusyThread();
    const task = this.nextTask++;
    thread.load += 1;
    try {
      const reply = await this.ask(thread, { task, parse: text });
      if ('invalid' in reply) throw new SyntaxError(reply.invalid);
      if ('tooDeep' in reply) return parseExactJson(text);
      if (!('parsed' in reply)) throw workerError(reply);
      return await fromExactJsonMessage(reply.parsed);
    } finally {
      thread.load -= 1;
    }
  }

  private async rewriteHere<Name extends RewriteName>(answer: UpstreamAnswer, name: Name, lookup: FactsLookup<Name>): Promise<UpstreamAnswer> {
    const rewrite = JSON_REWRITES[name] as JsonRewrite<FactsOf<Name>, AnswersOf<Name>>;
    const document = parseComfyJson(answer.body);
    const facts = document === undefined ? undefined : rewrite.facts(document);
    if (facts === undefined) return answer;
    const answers = await lookup(facts);
    return withJsonText(answer, Buffer.from(stringifyExactJson(rewrite.apply(document, answers))));
  }

  private async rewriteInWorker<Name extends RewriteName>(answer: UpstreamAnswer, name: Name, lookup: FactsLookup<Name>): Promise<UpstreamAnswer> {
    const thread = this.leastBusyThread();
    const task = this.nextTask++;
    thread.load += 1;
    try {
      const body = ownArrayBuffer(answer.body);
      const parsed = await this.ask(thread, { task, rewrite: name, body }, [body]);
      if ('unchanged' in parsed) return { ...answer, body: Buffer.from(parsed.unchanged) };
      if (!('facts' in parsed)) throw workerError(parsed);
      let answers: AnswersOf<Name>;
      try {
        answers = await lookup(parsed.facts as FactsOf<Name>);
      } catch (error) {
        if (!thread.failure) thread.worker.postMessage({ task, drop: true } satisfies ToWorker);
        throw error;
      }
      const rewritten = await this.ask(thread, { task, answers });
      if (!('text' in rewritten)) throw workerError(rewritten);
      return withJsonText(answer, Buffer.from(rewritten.text));
    } finally {
      thread.load -= 1;
    }
  }

  /** Posts a message about a task and resolves the worker's reply to it. */
  private ask(thread: Thread, message: ToWorker, transfer: ArrayBuffer[] = []): Promise<FromWorker> {
    if (thread.failure) return Promise.reject(thread.failure);
    return new Promise((resolve, reject) => {
      thread.waiting.set(message.task, { resolve, reject });
      thread.worker.postMessage(message, transfer);
    });
  }

  /** An idle thread, a new one while there are fewer than the most, or else the one with the fewest tasks. */
  private leastBusyThread(): Thread {
    const least = this.threads.reduce<Thread | undefined>((best, thread) => (best && best.load <= thread.load ? best : thread), undefined);
    if (least && (least.load === 0 || this.threads.length >= this.maxThreads)) return least;
    return this.startThread();
  }

  private startThread(): Thread {
    const worker = new Worker(new URL('./large-json-worker.js', import.meta.url));
    worker.unref();
    const thread: Thread = { worker, load: 0, waiting: new Map() };
    worker.on('message', (reply: FromWorker) => {
      const waiting = thread.waiting.get(reply.task);
      thread.waiting.delete(reply.task);
      waiting?.resolve(reply);
    });
    const stopped = (failure: Error): void => {
      thread.failure ??= failure;
      const index = this.threads.indexOf(thread);
      if (index >= 0) this.threads.splice(index, 1);
      for (const { reject } of thread.waiting.values()) reject(thread.failure);
      thread.waiting.clear();
    };
    worker.on('error', stopped);
    // A reply that could not be read would leave its task waiting for ever: the thread is given up, its tasks fail.
    worker.on('messageerror', (error) => {
      stopped(error);
      void worker.terminate();
    });
    worker.on('exit', (code) => stopped(new Error(`the JSON worker thread stopped (exit code ${code})`)));
    this.threads.push(thread);
    return thread;
  }

  /** Stops the worker threads; answers rewritten after this are rewritten on the request thread. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.threads.map((thread) => thread.worker.terminate()));
  }
}

function workerError(reply: FromWorker): Error {
  return new Error(`the JSON worker thread failed: ${'error' in reply ? reply.error : 'an unexpected reply'}`);
}
