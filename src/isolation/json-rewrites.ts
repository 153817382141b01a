// The rewrites of ComfyUI's list answers that may be too large to parse on the request thread, shared by it and the JSON worker thread.

import { asKeyKnowsIt, type KnownAs } from './context.js';
import { promptOutputsOf, type PromptOutputs } from './files.js';
import { redactQueueItem } from './redact.js';

/**
 * A rewrite of a parsed JSON answer in two steps, so that the thread holding the document never needs the
 * gateway's state: `facts` reads what the gateway must look up (small), and `apply` rewrites the document
 * with the gateway's answers to those facts.
 */
export interface JsonRewrite<Facts, Answers> {
  /** What the gateway must look up, or undefined when the document is not the answer this rewrite expects (it is then sent as it is). */
  facts(document: unknown): Facts | undefined;
  /** The document to send, given the gateway's answers (`document` may be changed in place). */
  apply(document: unknown, answers: Answers): unknown;
}

/** A history entry's id as ComfyUI knows it, and its outputs. */
export interface HistoryEntryFacts {
  upstreamId: string;
  outputs: PromptOutputs;
}

type History = Record<string, { prompt?: unknown } | null>;

/**
 * An admin's GET /history: each entry under its job's id, its `prompt` as the job's key knows it
 * (`asKeyKnowsIt`) and without secrets. Answers: the jobs among the entries, by the id ComfyUI knows them by.
 */
const adminHistory: JsonRewrite<HistoryEntryFacts[], Map<string, KnownAs>> = {
  facts(document) {
    if (typeof document !== 'object' || document === null) return undefined;
    return Object.entries(document).map(([upstreamId, entry]) => ({ upstreamId, outputs: promptOutputsOf(entry) }));
  },
  apply(document, jobs) {
    return Object.fromEntries(
      Object.entries(document as History).map(([upstreamId, entry]) => {
        const job = jobs.get(upstreamId);
        asKeyKnowsIt(entry?.prompt, job);
        redactQueueItem(entry?.prompt);
        return [job?.id ?? upstreamId, entry];
      }),
    );
  },
};

interface JobList {
  jobs: Array<{ id?: unknown } | null>;
}

/** An admin's GET …/jobs: each job's id as its key knows it. Facts: the ids ComfyUI lists; answers: job ids by those ids. */
const adminJobs: JsonRewrite<string[], Map<string, string>> = {
  facts(document) {
    const list = document as Partial<JobList> | null;
    if (typeof list !== 'object' || list === null || !Array.isArray(list.jobs)) return undefined;
    return list.jobs.flatMap((item) => (typeof item?.id === 'string' ? [item.id] : []));
  },
  apply(document, ids) {
    for (const item of (document as JobList).jobs) if (item && typeof item.id === 'string') item.id = ids.get(item.id) ?? item.id;
    return document;
  },
};

/** Every rewrite, by the name the worker thread is told. */
export const JSON_REWRITES = { 'admin-history': adminHistory, 'admin-jobs': adminJobs };

export type RewriteName = keyof typeof JSON_REWRITES;
/** What a rewrite asks the gateway to look up. */
export type FactsOf<Name extends RewriteName> = NonNullable<ReturnType<(typeof JSON_REWRITES)[Name]['facts']>>;
/** The gateway's answers to a rewrite's facts. */
export type AnswersOf<Name extends RewriteName> = Parameters<(typeof JSON_REWRITES)[Name]['apply']>[1];
