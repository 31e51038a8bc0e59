import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Router } from 'express';
import type { Logger } from '../log';
import { FILE_PATH, limited, outputName, type OutputOpener, type OutputStore } from './outputs';
import { outputPath } from './urls';
import type { S3Settings } from './s3-settings';

/** A presigned URL lives this long; the redirect to it is cached for less. */
const PRESIGN_SECONDS = 3600;

/**
 * Output files in an S3-compatible object store, so that every gateway process on every machine
 * serves every file with no shared disk. Credentials come from the SDK's standard chain
 * (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role). A file is spooled to
 * a temporary file first (a provider's download has no length up front, and S3 wants one).
 */

export class S3OutputStore implements OutputStore {
  readonly client: S3Client;

  constructor(
    readonly settings: S3Settings,
    private readonly logger: Logger,
  ) {
    this.client = new S3Client({
      region: settings.region,
      ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
      forcePathStyle: settings.pathStyle,
      // Checksums only where S3 requires them: the SDK's default streams uploads as aws-chunked
      // with a checksum trailer, which several S3-compatible stores do not decode (they store the
      // chunk framing as the file's bytes).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  }

  private key(taskId: string, name: string): string {
    return `${this.settings.prefix ? `${this.settings.prefix}/` : ''}${taskId}/${name}`;
  }

  async copy(taskId: string, urls: string[], open: OutputOpener, signal?: AbortSignal): Promise<string[]> {
    const out: string[] = [];
    const spool = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'pyre-output-'));
    try {
      for (const [i, url] of urls.entries()) {
        const file = await open(url, { signal });
        const name = outputName(i, url, file.contentType);
        const tmp = path.join(spool, name);
        await pipeline(limited(file.body), fs.createWriteStream(tmp), { signal });
        const { size } = await fs.promises.stat(tmp);
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.settings.bucket,
            Key: this.key(taskId, name),
            Body: fs.createReadStream(tmp),
            ContentLength: size,
            ContentType: file.contentType ?? 'application/octet-stream',
            CacheControl: 'public, max-age=31536000, immutable',
          }),
          { abortSignal: signal },
        );
        out.push(outputPath(taskId, name));
      }
    } finally {
      await fs.promises.rm(spool, { recursive: true, force: true });
    }
    return out;
  }

  /** Every object under each task's prefix, listed and deleted (up to 1000 a request). */
  async remove(taskIds: string[]): Promise<void> {
    for (const id of taskIds) {
      if (!/^[0-9a-f-]{36}$/.test(id)) throw new Error(`not a task id: ${JSON.stringify(id)}`);
      for (;;) {
        const listed = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.settings.bucket, Prefix: this.key(id, ''), MaxKeys: 1000 }),
        );
        const keys = (listed.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
        if (keys.length === 0) break;
        const deleted = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.settings.bucket, Delete: { Objects: keys, Quiet: true } }),
        );
        if (deleted.Errors?.length)
          throw new Error(`the object store did not delete ${deleted.Errors.length} file(s) of task ${id}`);
        if (!listed.IsTruncated) break;
      }
    }
  }

  router(): Router {
    const r = Router();
    r.get('/files/*path', async (req, res) => {
      const m = FILE_PATH.exec(req.path.slice('/files'.length));
      if (!m) return void res.status(404).json({ errors: { detail: 'Not Found' } });
      const get = new GetObjectCommand({ Bucket: this.settings.bucket, Key: this.key(m[1]!, m[2]!) });
      if (this.settings.serve === 'redirect') {
        // The store serves the bytes (ranges, caching); the redirect is cached for less than it is valid.
        const url = await getSignedUrl(this.client, get, { expiresIn: PRESIGN_SECONDS });
        res.setHeader('Cache-Control', `private, max-age=${PRESIGN_SECONDS / 2}`);
        return void res.redirect(302, url);
      }
      const range = req.get('range');
      try {
        const obj = await this.client.send(new GetObjectCommand({ ...get.input, ...(range ? { Range: range } : {}) }));
        res.status(obj.ContentRange ? 206 : 200);
        if (obj.ContentType) res.setHeader('Content-Type', obj.ContentType);
        if (obj.ContentLength !== undefined) res.setHeader('Content-Length', String(obj.ContentLength));
        if (obj.ContentRange) res.setHeader('Content-Range', obj.ContentRange);
        res.setHeader('Accept-Ranges', 'bytes');
        res.setHeader('Cache-Control', 'public, max-age=31536000, immutable');
        await pipeline(obj.Body as Readable, res);
      } catch (err) {
        if (res.headersSent) return void res.destroy();
        const status = err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined;
        if (status === 404 || (err as { name?: string }).name === 'NoSuchKey')
          return void res.status(404).json({ errors: { detail: 'Not Found' } });
        if (status === 416) return void res.status(416).json({ errors: { detail: 'Range Not Satisfiable' } });
        this.logger.error({ err }, 'reading an output file from the object store failed');
        res.status(502).json({ errors: { detail: 'the object store did not answer' } });
      }
    });
    r.use('/files', (_req, res) => {
      res.status(404).json({ errors: { detail: 'Not Found' } });
    });
    return r;
  }
}
