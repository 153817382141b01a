// One ComfyUI user per key when ComfyUI runs with --multi-user, so settings and saved workflows stay apart.

import type { PoolBackend } from '../backends/backend-pool.js';
import type { KeyRecord } from '../store/types.js';
import type { IsolationContext, UpstreamUserHeaders } from './context.js';
import { parseComfyJson } from './json-body.js';

/** How long the answer to "does ComfyUI run with --multi-user?" is trusted. */
const MODE_TTL_MS = 60_000;

/** An admin key's requests go as sent, with any `Comfy-User` of its own. */
const AS_SENT: UpstreamUserHeaders = Object.freeze({});
/** Without `--multi-user`, a user key's requests go as ComfyUI's one user. */
const WITHOUT_USER: UpstreamUserHeaders = Object.freeze({ 'comfy-user': null });

const asUser = (userId: string): UpstreamUserHeaders => ({ 'comfy-user': userId });

/**
 * Maps keys to ComfyUI users. Whether ComfyUI runs with `--multi-user` is read from its `GET /users`
 * (which lists `users` only then). A key's user is created on its first request (`POST /users`) and
 * remembered in the ownership store. Both are asked on the gateway's own behalf, without the headers of
 * the request that needed them: ComfyUI's answer is kept for every key, and a header it refuses (aiohttp
 * answers 400 to a value over 8190 bytes) would otherwise make every key read-only for a minute.
 */
export class ComfyUsers {
  private readonly ctx: IsolationContext;
  /** The last answer, the backend that gave it, and when. */
  private multiUser: { value: boolean; at: number; backend: PoolBackend } | null = null;
  /**
   * The user ids ComfyUI listed with its last yes, and those created since: a remembered id not among
   * them belongs to a users.json ComfyUI no longer has (restored or started afresh), and is made again.
   */
  private listedUsers: Set<string> | null = null;
  /** The question to ComfyUI under way, shared by every request that needs its answer. */
  private askingMode: Promise<boolean> | null = null;
  /** Counts `forgetMode` calls, so that an answer asked for before one is not kept. */
  private modeGeneration = 0;
  private readonly creating = new Map<string, Promise<string>>();

  constructor(ctx: IsolationContext) {
    this.ctx = ctx;
  }

  /**
   * Whether ComfyUI keeps settings and userdata per user: known at once while the last answer is
   * fresh, and, when it is yes, while the event socket to the backend that gave it has stayed open
   * since (a closed socket may be a ComfyUI restarting without `--multi-user`, where the key's
   * `Comfy-User` would be ignored and its requests land in the operator's user; a no is safe to keep,
   * user keys then being read-only); else asked, with requests that arrive meanwhile sharing one question.
   */
  isMultiUser(): boolean | Promise<boolean> {
    const known = this.multiUser;
    if (known && Date.now() - known.at < MODE_TTL_MS && (!known.value || known.backend.events.connected)) return known.value;
    if (this.askingMode) return this.askingMode;
    const asking = this.askMode().finally(() => {
      if (this.askingMode === asking) this.askingMode = null;
    });
    this.askingMode = asking;
    return asking;
  }

  /**
   * Asks again at the next request: a backend (re)connected, and a restarted ComfyUI may have been
   * started with `--multi-user` (until asked, keys would share its `default` user) or without it.
   */
  forgetMode(): void {
    this.multiUser = null;
    this.askingMode = null;
    this.modeGeneration += 1;
  }

  private async askMode(): Promise<boolean> {
    const generation = this.modeGeneration;
    const backend = this.ctx.pool.any();
    const answer = await backend.proxy.fetch(null, { method: 'GET', path: '/api/users', body: '', headers: { 'comfy-user': null, 'content-type': null } });
    const body = parseComfyJson(answer.body) as { users?: unknown } | undefined;
    const users = answer.status === 200 && typeof body?.users === 'object' && body.users !== null ? body.users : null;
    const value = users !== null;
    if (generation === this.modeGeneration) {
      this.multiUser = { value, at: Date.now(), backend };
      this.listedUsers = users === null ? null : new Set(Object.keys(users));
    }
    return value;
  }

  /**
   * The `Comfy-User` header for a user key's forwarded requests (a client's own value is always
   * dropped); admin keys keep whatever they send.
   */
  headersFor(key: KeyRecord): UpstreamUserHeaders | Promise<UpstreamUserHeaders> {
    if (key.role === 'admin') return AS_SENT;
    const multiUser = this.isMultiUser();
    if (multiUser instanceof Promise) return multiUser.then((known) => this.userHeaders(key, known));
    return this.userHeaders(key, multiUser);
  }

  /** The `Comfy-User` header of a user key, once whether ComfyUI runs with `--multi-user` is known. */
  private userHeaders(key: KeyRecord, multiUser: boolean): UpstreamUserHeaders | Promise<UpstreamUserHeaders> {
    if (!multiUser) return WITHOUT_USER;
    const userId = this.userOf(key);
    return userId instanceof Promise ? userId.then(asUser) : asUser(userId);
  }

  /** The display name of a key's ComfyUI user: its name, made unique by the start of its key_id. */
  static userName(key: KeyRecord): string {
    // ComfyUI refuses a name that starts with `__` once trimmed (the prefix of its system users).
    return `${key.name.trim().replace(/^__+/, '_')} (${key.key_id.slice(0, 8)})`;
  }

  /** The key's ComfyUI user id, created on first use, and again when ComfyUI no longer lists it (known at once after that). */
  userOf(key: KeyRecord): string | Promise<string> {
    const known = this.ctx.ownership.comfyUserOf(key.key_id);
    if (known && (this.listedUsers === null || this.listedUsers.has(known))) return known;
    let pending = this.creating.get(key.key_id);
    if (!pending) {
      pending = this.create(key).finally(() => this.creating.delete(key.key_id));
      this.creating.set(key.key_id, pending);
    }
    return pending;
  }

  private async create(key: KeyRecord): Promise<string> {
    const username = ComfyUsers.userName(key);
    const base = { path: '/api/users', headers: { 'comfy-user': null, 'content-type': 'application/json' } };
    const created = await this.ctx.pool.any().proxy.fetch(null, { ...base, method: 'POST', body: JSON.stringify({ username }) });
    let userId = created.status === 200 ? parseComfyJson(created.body) : undefined;
    if (typeof userId !== 'string') {
      // Created before but not remembered (e.g. the gateway's files were restored): find it by name.
      const listed = await this.ctx.pool.any().proxy.fetch(null, { ...base, method: 'GET', body: '' });
      const users = (parseComfyJson(listed.body) as { users?: Record<string, string> } | undefined)?.users ?? {};
      userId = Object.entries(users).find(([, name]) => name === username)?.[0];
    }
    if (typeof userId !== 'string') throw new Error(`ComfyUI did not create a user for key ${key.key_id} (status ${created.status})`);
    this.listedUsers?.add(userId);
    await this.ctx.ownership.setComfyUser(key.key_id, userId);
    return userId;
  }
}
