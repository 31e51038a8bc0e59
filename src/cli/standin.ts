import { startStandin, type StandinPreset } from '../providers/replicate/standin';
import { CliError, EXIT } from './client';

export interface StandinCliOptions {
  port: number;
  host: string;
  preset: string;
  speed: number;
  virtual?: boolean;
}

/**
 * `pyre standin`: the Replicate stand-in on its own, for a gateway started with REPLICATE_BASE_URL
 * and REPLICATE_API_TOKEN pointing at it. Drive it from elsewhere through /__admin. Runs until
 * SIGINT or SIGTERM.
 */
export async function runStandin(opts: StandinCliOptions): Promise<void> {
  if (!['demo', 'realistic', 'minutes'].includes(opts.preset)) {
    throw new CliError(`--preset must be demo, realistic or minutes (got ${opts.preset})`, EXIT.usage);
  }
  if (!(opts.speed > 0)) throw new CliError('--speed must be a positive number', EXIT.usage);
  const standin = await startStandin({
    port: opts.port,
    host: opts.host,
    token: process.env.STANDIN_TOKEN,
    webhookSecret: process.env.STANDIN_WEBHOOK_SECRET,
    preset: opts.preset as StandinPreset,
    clock: opts.virtual ? 'virtual' : { speed: opts.speed },
  }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EADDRINUSE')
      throw new CliError(`port ${opts.port} is in use (choose another with --port)`, EXIT.unavailable);
    throw err;
  });
  process.stdout.write(
    `Replicate stand-in listening (${opts.preset} preset, ${opts.virtual ? 'virtual clock: POST /__admin/clock/advance' : `real time x${opts.speed}`})\n` +
      `  REPLICATE_BASE_URL=${standin.url}\n  REPLICATE_API_TOKEN=${standin.token}\n  REPLICATE_WEBHOOK_SECRET=${standin.webhookSecret}\n` +
      `  admin: ${standin.origin}/__admin/requests\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      void standin.close().then(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
