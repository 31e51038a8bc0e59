import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, ConfigError } from '../../src/config';
import { migrate } from '../../src/db';
import { startStandin, type Standin } from '../../src/providers/replicate/standin';
import { freshDb, TEST_PG_URL, type TestDb } from '../helpers/db';
import { S3RVER_CREDENTIALS, startS3rver } from '../helpers/s3';
import { spawnGateway, type GatewayProcess } from '../helpers/gateway-process';
import { call, waitFor } from '../runner/helpers';

/**
 * Issue 12, acceptance 5 (second half): with STORAGE_URL (an S3-compatible store; here s3rver,
 * started by the test), a file written by one gateway process is served by another, each with
 * its own empty DATA_DIR: no shared disk.
 */
describe('STORAGE_URL is checked at start', () => {
  const bad: Array<[string, RegExp]> = [
    ['http://bucket/x', /must start with s3:\/\//],
    ['s3://Bad_Bucket/x', /bucket name "bad_bucket" is not valid|bucket name/],
    ['s3://bucket/x?endpoint=ftp://x', /endpoint must be an http\(s\) origin/],
    ['s3://bucket/x?serve=sometimes', /serve must be redirect or stream/],
    ['s3://bucket/x?regoin=eu-west-1', /unknown parameter "regoin"/],
    ['s3://key:secret@bucket/x', /must not carry credentials/],
  ];
  it.each(bad)('%s is refused', (url, message) => {
    let err: unknown;
    try {
      loadConfig({ STORAGE_URL: url });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/STORAGE_URL: /);
    expect((err as Error).message).toMatch(message);
  });
  it('a good one is read with its defaults', () => {
    expect(loadConfig({ STORAGE_URL: 's3://pyre-out/a/b/?endpoint=http://minio:9000/' }).storage).toEqual({
      bucket: 'pyre-out',
      prefix: 'a/b',
      endpoint: 'http://minio:9000',
      region: 'us-east-1',
      pathStyle: true,
      serve: 'redirect',
    });
    expect(loadConfig({ STORAGE_URL: 's3://pyre-out', AWS_REGION: 'eu-west-3' }).storage).toMatchObject({
      prefix: '',
      endpoint: undefined,
      region: 'eu-west-3',
      pathStyle: false,
    });
  });
});

(TEST_PG_URL ? describe : describe.skip)('an S3-compatible store shared by processes with no shared disk', () => {
  let s3: Awaited<ReturnType<typeof startS3rver>>;
  let endpoint: string;
  let standin: Standin;
  let tdb: TestDb;
  const dirs: string[] = [];
  const procs: GatewayProcess[] = [];
  beforeAll(async () => {
    s3 = await startS3rver();
    endpoint = s3.endpoint;
    standin = await startStandin({ clock: { speed: 20 } });
    tdb = await freshDb('postgres');
    await migrate(tdb.db);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await standin?.close();
    await tdb?.drop();
    await s3?.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const gateway = (runner: boolean, serve: string) => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pyre-s3-gw-'));
    dirs.push(dataDir);
    return spawnGateway({
      REPLICATE_API_TOKEN: standin.token,
      REPLICATE_BASE_URL: standin.url,
      RUNNER_ENABLED: String(runner),
      DATA_DIR: dataDir,
      STORAGE_URL: `s3://pyre-outputs/tasks?endpoint=${endpoint}&serve=${serve}`,
      ...S3RVER_CREDENTIALS,
      PYRE_FIXTURE_PG_URL: TEST_PG_URL!,
      PYRE_FIXTURE_PG_SCHEMA: tdb.schema!,
      PYRE_FIXTURE_RUNNER: JSON.stringify({ pollIntervalMs: 100, claimIntervalMs: 100 }),
    }).then((p) => (procs.push(p), { ...p, dataDir }));
  };

  it('a file written by one process is served by another (redirect to a presigned URL, and streamed)', async () => {
    const writer = await gateway(true, 'redirect');
    const redirecting = await gateway(false, 'redirect');
    const streaming = await gateway(false, 'stream');

    const created = await call(`${redirecting.url}/api/tasks`, {
      body: { input_data: { type: 'image', prompt: 'stored in s3' } },
    });
    expect(created.status).toBe(202);
    const id = created.body.task_id as string;
    const task = await waitFor(
      'the task to succeed',
      async () => {
        const t = (await call(`${redirecting.url}/api/tasks/${id}`)).body.data;
        if (t.status === 'failed') throw new Error(JSON.stringify(t.error));
        return t.status === 'succeeded' ? t : null;
      },
      60_000,
      100,
    );
    const url: string = task.output.urls[0];
    expect(url).toMatch(new RegExp(`^${redirecting.url}/files/${id}/0-[0-9a-f]{16}\\.jpg$`));

    // Nothing on any process's disk; the object is in the store under the prefix.
    for (const p of [writer, redirecting, streaming])
      expect(fs.existsSync(path.join(p.dataDir, 'outputs'))).toBe(false);

    // Served by a process that did not write it: a redirect to a presigned URL of the store...
    const redirect = await fetch(url, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    const location = redirect.headers.get('location')!;
    expect(location.startsWith(`${endpoint}/pyre-outputs/tasks/${id}/`)).toBe(true);
    expect(location).toContain('X-Amz-Signature=');
    const viaStore = await fetch(url);
    expect(viaStore.status).toBe(200);
    expect(viaStore.headers.get('content-type')).toBe('image/jpeg');
    const bytes = Buffer.from(await viaStore.arrayBuffer());
    expect([...bytes.subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);

    // ...or streamed by pyre, ranges included.
    const streamedUrl = url.replace(redirecting.url, streaming.url);
    const streamed = await fetch(streamedUrl);
    expect(streamed.status).toBe(200);
    expect(Buffer.from(await streamed.arrayBuffer()).equals(bytes)).toBe(true);
    const part = await fetch(streamedUrl, { headers: { range: 'bytes=0-9' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 0-9/${bytes.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(bytes.subarray(0, 10))).toBe(true);

    // Unknown files: 404 from pyre, never the store's XML.
    const missing = await call(`${streaming.url}/files/${id}/0-0000000000000000.jpg`);
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ errors: { detail: 'Not Found' } });
    expect((await call(`${redirecting.url}/files/../../etc/passwd`)).status).toBe(404);
    expect((await call(`${redirecting.url}/files/${id}/not-ours.jpg`)).status).toBe(404);
  }, 120_000);
});
