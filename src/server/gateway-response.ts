// The gateway's HTTP response: the headers it adds itself (request id, rate limits) go out with whatever answer is written, on node's fast path.

import { ServerResponse, type OutgoingHttpHeader, type OutgoingHttpHeaders } from 'node:http';

/**
 * A response that keeps the gateway's own headers aside and adds them to the headers given to
 * `writeHead`, or to the implicit head of `write`/`end`. Set with `setHeader` instead, they would make
 * node re-validate every header of every forwarded answer one by one.
 */
export class GatewayResponse extends ServerResponse {
  /** The gateway's headers; a header of the same name given to `writeHead` wins, as it would over `setHeader`. */
  private readonly gatewayHeaders: Record<string, string> = {};

  addHeaders(headers: Readonly<Record<string, string>>): void {
    Object.assign(this.gatewayHeaders, headers);
  }

  override writeHead(statusCode: number, statusMessage?: string, headers?: OutgoingHttpHeaders | OutgoingHttpHeader[]): this;
  override writeHead(statusCode: number, headers?: OutgoingHttpHeaders | OutgoingHttpHeader[]): this;
  override writeHead(
    statusCode: number,
    messageOrHeaders?: string | OutgoingHttpHeaders | OutgoingHttpHeader[],
    headers?: OutgoingHttpHeaders | OutgoingHttpHeader[],
  ): this {
    const message = typeof messageOrHeaders === 'string' ? messageOrHeaders : undefined;
    const given = typeof messageOrHeaders === 'string' ? headers : messageOrHeaders;
    let head: OutgoingHttpHeaders | OutgoingHttpHeader[];
    if (Array.isArray(given)) {
      for (const name in this.gatewayHeaders) this.setHeader(name, this.gatewayHeaders[name]!);
      head = given;
    } else {
      // Node's flat list of names and values, the given object left as it is: adding the gateway's headers to an answer's
      // object (one grown key by key, as a buffered answer's is) took V8's slowest path for each, about 2,500 instructions.
      head = [];
      for (const name in given) head.push(name, given[name] as OutgoingHttpHeader);
      for (const name in this.gatewayHeaders) if (given === undefined || !Object.hasOwn(given, name)) head.push(name, this.gatewayHeaders[name]!);
    }
    return message === undefined ? super.writeHead(statusCode, head) : super.writeHead(statusCode, message, head);
  }
}

/** Adds the gateway's own headers to a response's answer. */
export function addResponseHeaders(res: ServerResponse, headers: Readonly<Record<string, string>>): void {
  if (res instanceof GatewayResponse) res.addHeaders(headers);
  else for (const name in headers) res.setHeader(name, headers[name]!);
}
