/**
 * Summarises a V8 .cpuprofile (from `--cpu-prof`): top functions by self time and by total time.
 *   npx tsx bench/profile-summary.ts bench/results/prof/<file>.cpuprofile [--top=30]
 */
import { readFileSync } from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

const file = process.argv[2];
if (!file) {
  console.error('usage: profile-summary.ts <file.cpuprofile> [--top=N]');
  process.exit(1);
}
const topArg = process.argv.find((a) => a.startsWith('--top='));
const top = topArg ? Number(topArg.slice(6)) : 30;
const prof = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[] };
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfCount = new Map<number, number>();
for (const s of prof.samples) selfCount.set(s, (selfCount.get(s) ?? 0) + 1);
const total = prof.samples.length;
const name = (n: Node): string => {
  const url = n.callFrame.url.replace(/^.*\/work\/main\//, '').replace(/^file:\/\//, '');
  return `${n.callFrame.functionName || '(anon)'} ${url ? `${url}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
};
const self = new Map<string, number>();
const incl = new Map<string, number>();
for (const [id, c] of selfCount) {
  const n = byId.get(id)!;
  self.set(name(n), (self.get(name(n)) ?? 0) + c);
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = name(byId.get(cur)!);
    if (seen.has(k)) continue;
    seen.add(k);
    incl.set(k, (incl.get(k) ?? 0) + c);
  }
}
const show = (title: string, m: Map<string, number>): void => {
  console.log(`\n${title} (${total} samples)`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${((100 * v) / total).toFixed(1).padStart(6)}%  ${k}`);
};
show('self time', self);
show('total time', incl);
