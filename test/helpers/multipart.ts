// multipart/form-data bodies for upload tests, each part written exactly as given.

export interface FormPart {
  name: string;
  filename?: string;
  /** The part's content: text, or a file's bytes. */
  value: string | Buffer;
  headers?: string[];
}

/** A multipart/form-data body of `parts`, in order, with its Content-Type header. */
export function multipart(parts: FormPart[]): { body: Buffer; headers: Record<string, string> } {
  const boundary = 'test-form-boundary';
  const written = parts.map((part) => {
    const disposition = `Content-Disposition: form-data; name="${part.name}"${part.filename === undefined ? '' : `; filename="${part.filename}"`}`;
    const headers = [disposition, ...(part.filename === undefined ? [] : ['Content-Type: image/png']), ...(part.headers ?? [])];
    return Buffer.concat([Buffer.from(`--${boundary}\r\n${headers.join('\r\n')}\r\n\r\n`), Buffer.from(part.value), Buffer.from('\r\n')]);
  });
  return { body: Buffer.concat([...written, Buffer.from(`--${boundary}--\r\n`)]), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}
