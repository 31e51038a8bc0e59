/**
 * Runs the Replicate stand-in on its own:
 *   tsx src/providers/replicate/standin/main.ts [--port 8788] [--host 127.0.0.1] [--preset demo|realistic] [--speed 1] [--virtual]
 * Env: STANDIN_PORT, STANDIN_HOST, STANDIN_TOKEN, STANDIN_WEBHOOK_SECRET, STANDIN_PRESET, STANDIN_SPEED.
 * Point pyre at it with REPLICATE_BASE_URL=<printed url> REPLICATE_API_TOKEN=<printed token>.
 * Drive it from elsewhere through /__admin (clock/advance, faults, faults/inject, requests, webhooks).
 */
import { startStandin, type StandinPreset } from './server';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0) return process.argv[i + 1];
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

async function main(): Promise<void> {
  const port = Number(arg('port') ?? process.env.STANDIN_PORT ?? 8788);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`Bad port ${port}`);
  const preset = (arg('preset') ?? process.env.STANDIN_PRESET ?? 'demo') as StandinPreset;
  if (preset !== 'demo' && preset !== 'realistic') throw new Error(`Unknown preset ${preset} (demo or realistic)`);
  const speed = Number(arg('speed') ?? process.env.STANDIN_SPEED ?? 1);
  const virtual = process.argv.includes('--virtual');
  const standin = await startStandin({
    port,
    host: arg('host') ?? process.env.STANDIN_HOST ?? '127.0.0.1',
    token: process.env.STANDIN_TOKEN,
    webhookSecret: process.env.STANDIN_WEBHOOK_SECRET,
    preset,
    clock: virtual ? 'virtual' : { speed },
  });
  process.stdout.write(
    `Replicate stand-in listening (${preset} preset, ${virtual ? 'virtual clock: POST /__admin/clock/advance' : `real time x${speed}`})\n` +
      `  REPLICATE_BASE_URL=${standin.url}\n  REPLICATE_API_TOKEN=${standin.token}\n  webhook secret: ${standin.webhookSecret}\n` +
      `  admin: ${standin.origin}/__admin/requests\n`,
  );
  const stop = () => {
    void standin.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
});
