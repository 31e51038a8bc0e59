import { ReplicateClient, type ReplicateClientOptions } from '../../src/providers/replicate/client';
import { startStandin, type Standin, type StandinOptions } from '../../src/providers/replicate/standin';
import type { Prediction } from '../../src/providers/types';
import { isTerminal } from '../../src/providers/types';

/** A stand-in on a free port with a virtual clock, and a client pointed at it with short backoffs. */
export async function setup(
  opts: StandinOptions = {},
  client: Partial<ReplicateClientOptions> = {},
): Promise<{ standin: Standin; client: ReplicateClient; close(): Promise<void> }> {
  const standin = await startStandin({ clock: 'virtual', ...opts });
  const c = new ReplicateClient({
    token: standin.token,
    baseUrl: standin.url,
    retry: { attempts: 6, baseMs: 5, maxMs: 40 },
    rateLimit: { retries: 3, maxWaitMs: 5000 },
    ...client,
  });
  return {
    standin,
    client: c,
    close: async () => {
      await c.close();
      await standin.close();
    },
  };
}

/** Polls through the client, advancing the virtual clock between polls, until terminal. */
export async function runToEnd(
  standin: Standin,
  client: ReplicateClient,
  id: string,
  stepMs = 500,
  maxSteps = 400,
): Promise<Prediction[]> {
  const seen: Prediction[] = [];
  for (let i = 0; i < maxSteps; i++) {
    const p = await client.get(id);
    seen.push(p);
    if (isTerminal(p.status)) return seen;
    await standin.advance(stepMs);
  }
  throw new Error(`prediction ${id} did not finish`);
}
