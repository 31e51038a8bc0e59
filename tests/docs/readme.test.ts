import fs from 'node:fs';
import path from 'node:path';

/**
 * Issue 23, item 9: the README is a front door (under 200 lines) and every relative link in it and
 * in docs/*.md leads somewhere: to a file that exists and, with `#anchor`, to a heading there.
 */
const ROOT = path.join(__dirname, '..', '..');
const DOCS = path.join(ROOT, 'docs');
const pages = [
  path.join(ROOT, 'README.md'),
  ...fs
    .readdirSync(DOCS)
    .filter((f) => f.endsWith('.md'))
    .map((f) => path.join(DOCS, f)),
];

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, '')
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchorsOf(file: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (/^```/.test(line)) fenced = !fenced;
    const m = !fenced && /^#{1,6} (.*)$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative links of a markdown page (outside code), as [text](target). */
function linksOf(file: string): string[] {
  const text = fs
    .readFileSync(file, 'utf8')
    .replace(/```[\s\S]*?```/g, '')
    .replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((t) => !/^[a-z]+:/i.test(t));
}

test('the README is under 200 lines', () => {
  const lines = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8').split('\n').length;
  expect(lines).toBeLessThan(200);
});

test('every relative link in README.md and docs/*.md resolves to a file (and a heading, for #anchors)', () => {
  const broken: string[] = [];
  let checked = 0;
  for (const page of pages) {
    for (const link of linksOf(page)) {
      checked++;
      const [target, anchor] = link.split('#') as [string, string | undefined];
      const file = target === '' ? page : path.resolve(path.dirname(page), decodeURIComponent(target));
      const where = `${path.relative(ROOT, page)} → ${link}`;
      if (!fs.existsSync(file)) broken.push(`${where}: no such file`);
      else if (anchor !== undefined && file.endsWith('.md') && !anchorsOf(file).has(anchor))
        broken.push(`${where}: no heading #${anchor} in ${path.relative(ROOT, file)}`);
    }
  }
  expect(broken).toEqual([]);
  expect(checked).toBeGreaterThan(15);
});

test('the README links the docs a newcomer looks for', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const doc of [
    'configuration',
    'deployment',
    'cluster',
    'tokens',
    'cli',
    'dashboard',
    'performance',
    'phoenix-protocol',
    'replicate',
    'providers',
  ])
    expect(readme).toContain(`](docs/${doc}.md`);
  expect(readme).toMatch(/\[\[fail\]\]/);
  expect(readme).toMatch(/\[\[unsafe\]\]/);
  expect(readme).toMatch(/after_seq=/);
  expect(readme).toMatch(/curl -i /);
});

test('the slug follows GitHub: `## When PostgreSQL goes away` → when-postgresql-goes-away', () => {
  expect(slug('When PostgreSQL goes away')).toBe('when-postgresql-goes-away');
  expect(slug('Configuration, stopping, PostgreSQL, Docker')).toBe('configuration-stopping-postgresql-docker');
  expect(slug('The `pyre` command')).toBe('the-pyre-command');
});
