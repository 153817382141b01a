// A workflow run's image inputs: an upload of the key's, base64 bytes or a fetched URL, stored on every backend and recorded as the key's.

import { randomUUID } from 'node:crypto';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import type { Agent } from 'undici';
import { request } from 'undici';
import { forbidden, GatewayError, imageFetchesBusy, invalidRequest } from '../errors.js';
import type { IsolatedCaller, IsolationContext } from '../isolation/context.js';
import { fileIdOf, fileReferenceProblem, uploadedFileId } from '../isolation/files.js';
import { isBoundedId } from '../isolation/ids.js';
import { storedFileOf, uploadToEach } from '../isolation/upload-fanout.js';
import { checkOutboundUrl, OutboundUrlError, reachedBackend } from '../net/outbound.js';
import type { UpstreamAnswer } from '../proxy/http.js';
import type { FetchPlaces } from './fetch-places.js';
import type { ImageSource } from './run-inputs.js';

/** Largest image a run may give as base64 or a URL, in bytes once decoded or downloaded. */
export const MAX_IMAGE_INPUT_BYTES = 32 * 1024 * 1024;
/** How long fetching one image URL may take, redirects included. */
export const IMAGE_FETCH_TIMEOUT_MS = 30_000;
/** Most redirects followed for one image URL; each hop is checked as the first URL is. */
export const MAX_IMAGE_REDIRECTS = 3;
/** The serve flag that lets image URLs reach private addresses (shared with webhooks). */
const PRIVATE_FLAG = '--webhook-allow-private';

/**
 * How image URLs are fetched: the connection pool for user-given URLs, whether private addresses are
 * allowed, and the gateway-wide places for fetches in flight (`--max-image-fetches`, each key holding at most its share).
 */
export interface ImageFetching {
  agent: Agent;
  allowPrivate: boolean;
  places: FetchPlaces;
}

/** The bytes of an image and the content type they came with (null when unknown). */
interface ImageBytes {
  bytes: Buffer;
  contentType: string | null;
}

/** An image media type, one token as RFC 6838 spells it (it becomes a header of the upload's form, so nothing else may be in it). */
const IMAGE_TYPE = /^image\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;
const EXTENSIONS: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'image/bmp': 'bmp',
  'image/tiff': 'tiff',
};

/**
 * The file name each image input is set to, once its image is the key's: an upload's name as given
 * (after checking that the key owns it, for a user key), or the name a new upload of its bytes was
 * stored under on every backend that is not down, recorded as the key's. The run's fetches end together:
 * once one fails for a reason that ends the run (any but an image's own problem, which is gathered to
 * report them all), or `clientGone` aborts, the others stop waiting for a place or are cut, giving theirs back.
 * @throws GatewayError 400 INVALID_REQUEST listing each image that cannot be read or fetched; 403 for a file the key does not own;
 * the error that ended the run (`clientGone`'s reason when it aborted)
 */
export async function resolveImages(
  ctx: IsolationContext,
  caller: IsolatedCaller,
  images: Record<string, ImageSource>,
  fetching: ImageFetching,
  clientGone: AbortSignal,
): Promise<Record<string, string>> {
  const foreign = Object.entries(images).flatMap(([name, source]) =>
    source.kind === 'upload' && !ownsUpload(ctx, caller, source.name) ? [`inputs.${name} (${source.name.slice(0, 200)})`] : [],
  );
  if (foreign.length > 0) throw forbidden(`These inputs name files this key did not upload or produce: ${foreign.join(', ')}.`);
  const problems: Array<{ field: string; problem: string }> = [];
  const failed = new AbortController();
  const runEnded = AbortSignal.any([clientGone, failed.signal]);
  const loaded = await Promise.all(
    Object.entries(images).map(async ([name, source]): Promise<[string, ImageBytes | string] | null> => {
      if (source.kind === 'upload') return [name, source.name];
      try {
        return [
          name,
          source.kind === 'base64' ? decodeBase64(source.data, source.contentType) : await fetchImage(source.url, caller.key.key_id, fetching, runEnded),
        ];
      } catch (error) {
        if (!(error instanceof ImageInputError)) {
          failed.abort(error);
          throw error;
        }
        problems.push({ field: `inputs.${name}`, problem: error.message });
        return null;
      }
    }),
  );
  if (problems.length > 0) throw invalidRequest('An image input could not be read.', problems);
  const names: Record<string, string> = {};
  for (const entry of loaded) {
    if (!entry) continue;
    const [name, image] = entry;
    names[name] = typeof image === 'string' ? image : await storeImage(ctx, caller, image);
  }
  return names;
}

/** Why an image input cannot be used; the message says what to fix. */
class ImageInputError extends Error {}

/** Whether the caller may load this file (a user key: only a file it uploaded or produced), as LoadImage inputs are checked. */
function ownsUpload(ctx: IsolationContext, caller: IsolatedCaller, name: string): boolean {
  if (!isBoundedId(name) || fileReferenceProblem(name) !== null) return false;
  return caller.seesAll || ctx.ownership.ownerOf('file', fileIdOf(posix.basename(name), posix.dirname(name), 'input')) === caller.key.key_id;
}

/** The bytes of base64 text (standard or URL-safe alphabet), at most MAX_IMAGE_INPUT_BYTES; `contentType` is a data: URL's. */
function decodeBase64(data: string, contentType: string | null): ImageBytes {
  if (contentType !== null && !IMAGE_TYPE.test(contentType)) throw new ImageInputError(`the data: URL is ${contentType.slice(0, 100)}, not an image/* type`);
  const text = data.replace(/\s+/g, '');
  if (text.length === 0) throw new ImageInputError('the base64 image is empty');
  if (Math.floor((text.length * 3) / 4) > MAX_IMAGE_INPUT_BYTES + 2) throw new ImageInputError(`the image is larger than ${MAX_IMAGE_INPUT_BYTES} bytes`);
  if (!BASE64.test(text) && !BASE64URL.test(text)) throw new ImageInputError('not valid base64');
  const bytes = Buffer.from(text, BASE64.test(text) ? 'base64' : 'base64url');
  if (bytes.length > MAX_IMAGE_INPUT_BYTES) throw new ImageInputError(`the image is larger than ${MAX_IMAGE_INPUT_BYTES} bytes`);
  return { bytes, contentType };
}

/**
 * Downloads an image: each URL (the first, and each redirect's, up to MAX_IMAGE_REDIRECTS) checked by
 * checkOutboundUrl and connected to through the outbound pool; a 200 answer of an image/* type of at
 * most MAX_IMAGE_INPUT_BYTES. Once its first URL is checked, it waits up to IMAGE_FETCH_TIMEOUT_MS for
 * one of the gateway's fetch places (`--max-image-fetches`) that `keyId` may take (within its share, see
 * FetchPlaces), then holds it for the download, which has IMAGE_FETCH_TIMEOUT_MS in all. Once `runEnded`
 * aborts, it stops waiting, or its download is cut and its place given back.
 * @throws ImageInputError saying what went wrong; GatewayError 503 IMAGE_FETCHES_BUSY when no place was free in time; `runEnded`'s reason
 */
async function fetchImage(text: string, keyId: string, fetching: ImageFetching, runEnded: AbortSignal): Promise<ImageBytes> {
  const first = await checkedUrl(text, fetching, 0);
  const wait = fetchDeadline(runEnded);
  const placed = await fetching.places.take(keyId, wait.signal);
  wait.stop();
  if (!placed) {
    runEnded.throwIfAborted();
    throw imageFetchesBusy(IMAGE_FETCH_TIMEOUT_MS / 1000);
  }
  const download = fetchDeadline(runEnded);
  try {
    let url = first;
    for (let hop = 0; ; hop++) {
      const response = await request(url, { method: 'GET', dispatcher: fetching.agent, signal: download.signal, headers: { accept: 'image/*' } }).catch(
        (error: unknown) => {
          runEnded.throwIfAborted();
          if (reachedBackend(error)) throw new ImageInputError('the URL points to a ComfyUI backend of the gateway, which a URL may never reach');
          throw new ImageInputError(
            download.signal.aborted
              ? `the URL did not answer within ${IMAGE_FETCH_TIMEOUT_MS / 1000} s`
              : `the URL could not be fetched (${fetchFailure(error)})`,
          );
        },
      );
      const { statusCode, headers, body } = response;
      if (statusCode >= 300 && statusCode < 400 && typeof headers.location === 'string') {
        await body.dump().catch(() => undefined);
        if (hop >= MAX_IMAGE_REDIRECTS) throw new ImageInputError(`the URL redirected more than ${MAX_IMAGE_REDIRECTS} times`);
        url = await checkedUrl(new URL(headers.location, url).toString(), fetching, hop + 1);
        continue;
      }
      if (statusCode !== 200) {
        await body.dump().catch(() => undefined);
        throw new ImageInputError(`the URL answered ${statusCode}, not 200`);
      }
      const type = String(headers['content-type'] ?? '')
        .split(';')[0]!
        .trim()
        .toLowerCase();
      if (!IMAGE_TYPE.test(type)) {
        await body.dump().catch(() => undefined);
        throw new ImageInputError(`the URL answered ${type || 'no content type'}, not an image/* type`);
      }
      return { bytes: await readCapped(body, download.signal, runEnded), contentType: type };
    }
  } finally {
    download.stop();
    fetching.places.release(keyId);
  }
}

/**
 * A signal that aborts after IMAGE_FETCH_TIMEOUT_MS, or with `runEnded`'s reason once it aborts, until `stop`. Its timer is its
 * own: a timeout signal given to AbortSignal.any is only weakly held, and may be collected before it fires.
 */
function fetchDeadline(runEnded: AbortSignal): { signal: AbortSignal; stop(): void } {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), IMAGE_FETCH_TIMEOUT_MS);
  const cut = (): void => deadline.abort(runEnded.reason);
  runEnded.addEventListener('abort', cut, { once: true });
  if (runEnded.aborted) cut();
  return {
    signal: deadline.signal,
    stop: () => {
      clearTimeout(timer);
      runEnded.removeEventListener('abort', cut);
    },
  };
}

/** An image URL (the given one, or the one hop `hop` redirected to) as checkOutboundUrl reads it. @throws ImageInputError */
function checkedUrl(text: string, fetching: ImageFetching, hop: number): Promise<URL> {
  return checkOutboundUrl(text, fetching.allowPrivate, PRIVATE_FLAG).catch((error: unknown) => {
    throw error instanceof OutboundUrlError ? new ImageInputError(`the URL ${hop > 0 ? `it redirected to ` : ''}${error.message}`) : error;
  });
}

/** A download's body, refused once it passes MAX_IMAGE_INPUT_BYTES; `signal` cuts it, for its time or (`runEnded`) its run. */
async function readCapped(body: Readable, signal: AbortSignal, runEnded: AbortSignal): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_IMAGE_INPUT_BYTES) {
        body.destroy();
        throw new ImageInputError(`the image is larger than ${MAX_IMAGE_INPUT_BYTES} bytes`);
      }
      chunks.push(chunk);
    }
  } catch (error) {
    if (error instanceof ImageInputError) throw error;
    runEnded.throwIfAborted();
    throw new ImageInputError(signal.aborted ? `the URL did not answer within ${IMAGE_FETCH_TIMEOUT_MS / 1000} s` : 'the download was cut off');
  }
  return Buffer.concat(chunks);
}

/** A short reason a fetch failed, without anything the client did not send. */
function fetchFailure(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown } }).cause;
  const code = (error as { code?: unknown }).code ?? cause?.code;
  return typeof code === 'string' ? code : 'no connection';
}

/**
 * Uploads an image as POST /upload/image does, under a new name, to every backend that is not down
 * (see uploadToEach), and records the stored file as the key's. Resolves the name a LoadImage input takes.
 * @throws GatewayError 502 when a backend did not store it (UPLOAD_INCOMPLETE with several backends)
 */
async function storeImage(ctx: IsolationContext, caller: IsolatedCaller, image: ImageBytes): Promise<string> {
  const extension = EXTENSIONS[image.contentType ?? sniffType(image.bytes) ?? ''] ?? 'png';
  const boundary = `comfy-gate-${randomUUID()}`;
  const filename = `input-${randomUUID()}.${extension}`;
  const form = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${filename}"\r\n` +
        `Content-Type: ${image.contentType ?? 'application/octet-stream'}\r\n\r\n`,
    ),
    image.bytes,
    Buffer.from(`\r\n--${boundary}\r\nContent-Disposition: form-data; name="type"\r\n\r\ninput\r\n--${boundary}--\r\n`),
  ]);
  const headers = { ...caller.upstreamHeaders, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': String(form.length) };
  const target = { method: 'POST', path: '/api/upload/image' };
  const backends = ctx.pool.all.filter((backend) => !backend.isDown());
  const answer: UpstreamAnswer =
    backends.length > 1
      ? await uploadToEach(backends, null, Readable.from([form]), headers, target)
      : await ctx.pool.any().proxy.fetch(null, { ...target, headers, body: form });
  const stored = storedFileOf(answer);
  if (!stored) throw new GatewayError(502, 'UPSTREAM_UNAVAILABLE', `ComfyUI did not store the image input (it answered ${answer.status}).`);
  await ctx.ownership.claim('file', uploadedFileId(stored.type, stored.subfolder, stored.name), caller.key.key_id);
  return stored.subfolder ? `${stored.subfolder}/${stored.name}` : stored.name;
}

/** The image type bytes start with, for the stored file's extension; null when not recognised. */
function sniffType(bytes: Buffer): string | null {
  if (bytes.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return 'image/jpeg';
  if (bytes.subarray(0, 4).toString('latin1') === 'RIFF' && bytes.subarray(8, 12).toString('latin1') === 'WEBP') return 'image/webp';
  if (bytes.subarray(0, 3).toString('latin1') === 'GIF') return 'image/gif';
  return null;
}
