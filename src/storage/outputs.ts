import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import express, { Router } from 'express';
import { outputPath } from './urls';

/** Opens a provider's output URL for reading (the Replicate client's openOutput). */
export type OutputOpener = (
  url: string,
  opts?: { signal?: AbortSignal },
) => Promise<{
  contentType: string | null;
  body: AsyncIterable<Uint8Array>;
}>;

/**
 * Where pyre keeps its copies of task outputs: the provider's URLs expire after about an hour, so
 * each file is copied on completion and served from /files/<task_id>/<name>. Names carry a random
 * part: a file URL is a capability, as the provider's own are, so <img src> works without a header.
 */
export interface OutputStore {
  /** Copy each URL; returns pyre's paths (`/files/…`, relative to the gateway), in order. */
  copy(taskId: string, urls: string[], open: OutputOpener, signal?: AbortSignal): Promise<string[]>;
  /** Deletes every stored file of these tasks (retention); tasks with none are fine. */
  remove(taskIds: string[]): Promise<void>;
  /** Serves stored files at /files. */
  router(): Router;
}

const EXT_BY_TYPE: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'image/gif': 'gif',
  'video/mp4': 'mp4',
  'video/webm': 'webm',
  'text/plain': 'txt',
};
export const MAX_FILE_BYTES = 512 * 1024 * 1024;

/** The stored name of the i-th output: its index, a random part, and an extension from its type or URL. */
export function outputName(i: number, url: string, contentType: string | null): string {
  const fromUrl = /\.([a-z0-9]{2,5})(?:$|\?)/i.exec(new URL(url).pathname)?.[1]?.toLowerCase();
  const ext = EXT_BY_TYPE[(contentType ?? '').split(';')[0]!.trim()] ?? fromUrl ?? 'bin';
  return `${i}-${randomBytes(8).toString('hex')}.${ext}`;
}

/** A task id and stored name as they appear in /files URLs (anything else is not ours). */
export const FILE_PATH = /^\/([0-9a-f-]{36})\/(\d+-[0-9a-f]{16}\.[a-z0-9]{2,5})$/;

/** The body, refused past MAX_FILE_BYTES. */
export function limited(body: AsyncIterable<Uint8Array>): Readable {
  let bytes = 0;
  return Readable.from(
    (async function* () {
      for await (const chunk of body) {
        bytes += chunk.length;
        if (bytes > MAX_FILE_BYTES) throw new Error(`output file larger than ${MAX_FILE_BYTES} bytes`);
        yield chunk;
      }
    })(),
  );
}

/** The default: files under DATA_DIR/outputs/<task_id>/, one machine's disk (or a shared volume). */
export class LocalOutputStore implements OutputStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, 'outputs');
  }

  async copy(taskId: string, urls: string[], open: OutputOpener, signal?: AbortSignal): Promise<string[]> {
    const taskDir = path.join(this.dir, taskId);
    await fs.promises.mkdir(taskDir, { recursive: true });
    const out: string[] = [];
    for (const [i, url] of urls.entries()) {
      const file = await open(url, { signal });
      const name = outputName(i, url, file.contentType);
      const tmp = path.join(taskDir, `.${name}.part`);
      await pipeline(limited(file.body), fs.createWriteStream(tmp), { signal });
      await fs.promises.rename(tmp, path.join(taskDir, name));
      out.push(outputPath(taskId, name));
    }
    return out;
  }

  async remove(taskIds: string[]): Promise<void> {
    for (const id of taskIds) {
      // Only a task id names a directory here (never a path from elsewhere).
      if (!/^[0-9a-f-]{36}$/.test(id)) throw new Error(`not a task id: ${JSON.stringify(id)}`);
      await fs.promises.rm(path.join(this.dir, id), { recursive: true, force: true });
    }
  }

  router(): Router {
    const r = Router();
    r.use(
      '/files',
      express.static(this.dir, {
        dotfiles: 'ignore',
        index: false,
        fallthrough: true,
        immutable: true,
        maxAge: '365d',
        // The type comes from the file's extension; a browser must not guess another (a stored
        // output is the provider's bytes, not ours).
        setHeaders: (res) => res.setHeader('X-Content-Type-Options', 'nosniff'),
      }),
    );
    r.use('/files', (_req, res) => {
      res.status(404).json({ errors: { detail: 'Not Found' } });
    });
    return r;
  }
}
