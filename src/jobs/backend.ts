// A ComfyUI backend as the job machinery sees it: its name, the proxy to it, and the events of its jobs.

import type { HttpProxy } from '../proxy/http.js';
import type { JobRecord } from '../store/types.js';

/** What the job machinery needs of a backend's event hub. */
export interface BackendEvents {
  /** The clientId the gateway's own socket has on this backend: every forwarded prompt carries it. */
  readonly clientId: string;
  /** Whether the gateway's socket to the backend is open (it is down when ComfyUI is). */
  readonly connected: boolean;
  /** Called before a prompt is sent: events of prompts not known yet are held until the returned function is called. */
  expectAnswer(): () => void;
  /** The job ComfyUI knows by `upstreamId` is in the registry now: its held events go out. */
  answered(upstreamId: string): void;
  /** Messages the gateway's socket has received so far: read just before a prompt is sent, and given to `promptAccepted`. */
  readonly messagesReceived: number;
  /** ComfyUI accepted a prompt sent when `messagesReceived` was `receivedBefore`: a socket that then stays silent is reopened. */
  promptAccepted(receivedBefore: number): void;
  /** Call before reading ComfyUI's `GET /queue`, then call the returned function with the prompt_id it lists as running (null: none): the hub takes it unless its socket told otherwise meanwhile. */
  runningFromQueue(): (running: string | null) => void;
  /** Sends the job's client sockets an event of the gateway's own, in ComfyUI's shape. */
  announce(job: Pick<JobRecord, 'id' | 'key_id' | 'client_id'>, type: string, data: Record<string, unknown>): void;
}

/** One ComfyUI server behind the gateway, as the job machinery sees it. */
export interface Backend {
  /** Its name in job records (`default` when there is one). */
  readonly name: string;
  /** Its share of the work (placement divides its jobs in flight by it). */
  readonly weight: number;
  readonly proxy: HttpProxy;
  readonly events: BackendEvents;
  /** Whether new jobs may go to it now: it answers its health checks and the gateway's socket to it is open. */
  accepting(): boolean;
  /** Whether it is confirmed down: requests bound to it are refused at once instead of waiting for a timeout. */
  isDown(): boolean;
}
