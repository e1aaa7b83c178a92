// The documentation as a reader follows it: the README is one screenful that leads to the rest, every link
// between the Markdown files reaches a file and a heading that exist, and every `apache/X.md, "Section"` that
// the code, tests and units name is a section of that file.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { REFUSAL_REASONS, STATUS_REASONS } from '../../src/apache/render/refusals.js';
import { REPO_ROOT } from '../helpers/plexer.js';

const SKIP_DIRS = new Set(['node_modules', 'dist', 'dist-bench', '.state', '.git']);

function files(dir: string, keep: (name: string) => boolean): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (!SKIP_DIRS.has(name)) found.push(...files(path, keep));
    } else if (keep(name)) found.push(path);
  }
  return found;
}

const markdown = files(REPO_ROOT, (name) => name.endsWith('.md'));

// Text outside fenced code blocks.
const prose = (text: string) => text.replace(/^```[\s\S]*?^```$/gm, '');

// GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, blanks, - and _ kept), each
// blank a hyphen.
const slug = (heading: string) =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

const headings = (file: string) => [...prose(readFileSync(file, 'utf8')).matchAll(/^#{1,6} (.+)$/gm)].map((m) => m[1]!.trim());

describe('the README', () => {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');

  it('is one screenful: what plexer is, the two commands, the install block, the first request, where to read on', () => {
    expect(readme.split('\n').length).toBeLessThanOrEqual(100);
    expect(headings(join(REPO_ROOT, 'README.md'))).toEqual(['plexer', 'The two commands', 'Installing on a server', 'Read on']);
    expect(readme).toMatch(/^npm start /m);
    expect(readme).toMatch(/^npm test /m);
    expect(readme).toMatch(/^Then ask as alice: `curl -u alice http:\/\/\S+` .* answers\n`\{"group": "tenant1"/m);
  });

  it('leads to every reference file', () => {
    const linked = new Set([...readme.matchAll(/\]\(([^)#]+\.md)\)/g)].map((m) => resolve(REPO_ROOT, m[1]!)));
    const reference = markdown.filter((file) => !/\/(RESULTS|map-results|fronts-results)\.md$/.test(file) && !file.endsWith('/README.md'));
    expect(reference.length).toBeGreaterThan(5);
    for (const file of reference) expect([...linked], relative(REPO_ROOT, file)).toContain(file);
  });
});

describe('links between the Markdown files', () => {
  it.each(markdown.map((file) => [relative(REPO_ROOT, file)]))('%s: every relative link reaches a file, and its heading', (name) => {
    const file = join(REPO_ROOT, name);
    for (const [, target] of prose(readFileSync(file, 'utf8')).matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      const [path, anchor] = target!.split('#') as [string, string | undefined];
      const to = path === '' ? file : resolve(dirname(file), path);
      expect(() => statSync(to), `${name}: ${target}`).not.toThrow();
      if (anchor !== undefined) expect(headings(to).map(slug), `${name}: ${target}`).toContain(anchor);
    }
  });
});

describe('sections named outside the docs', () => {
  it('every `apache/X.md, "Section"` in the code, tests, units and setup is a heading or a paragraph title there', () => {
    const sources = [
      ...files(join(REPO_ROOT, 'src'), (name) => name.endsWith('.ts')),
      // (Not this file, whose comments show the form.)
      ...files(join(REPO_ROOT, 'test'), (name) => name.endsWith('.ts') && name !== 'docs.test.ts'),
      ...files(join(REPO_ROOT, 'bench/src'), (name) => name.endsWith('.ts')),
      ...files(join(REPO_ROOT, 'apache'), (name) => name.endsWith('.service')),
      join(REPO_ROOT, 'bin/setup'),
    ];
    let named = 0;
    for (const source of sources) {
      // A reference may run over a comment's or a help text's line break.
      const text = readFileSync(source, 'utf8').replace(/\s*\n\s*(?:\/\/|#)?\s*/g, ' ');
      for (const [, doc, section] of text.matchAll(/\b((?:apache|bench|test|src|bin)\/[A-Za-z]+\.md)[,:]? \(?"([^"]+)"/g)) {
        named++;
        const target = join(REPO_ROOT, doc!);
        const where = `${relative(REPO_ROOT, source)}: ${doc} "${section}"`;
        expect(() => statSync(target), where).not.toThrow();
        const titles = [...headings(target), ...[...readFileSync(target, 'utf8').matchAll(/\*\*([^*]+)\*\*/g)].map((m) => m[1]!)];
        expect(
          titles.some((title) => title.startsWith(section!)),
          where,
        ).toBe(true);
      }
    }
    expect(named).toBeGreaterThan(10);
  });

  it('nothing points at a README section any more: the README keeps only its four', () => {
    const sources = [
      ...files(join(REPO_ROOT, 'src'), (name) => name.endsWith('.ts')),
      ...files(join(REPO_ROOT, 'test'), (name) => name.endsWith('.ts') && name !== 'docs.test.ts'),
      ...files(join(REPO_ROOT, 'bench/src'), (name) => name.endsWith('.ts')),
      ...files(join(REPO_ROOT, 'apache'), (name) => /\.(service|md|conf)$/.test(name)),
    ];
    for (const source of sources) {
      const text = readFileSync(source, 'utf8').replace(/\s*\n\s*(?:\/\/|#)?\s*/g, ' ');
      for (const [reference] of text.matchAll(/README[,:]? \(?"[^"]+"/g)) {
        expect(reference, relative(REPO_ROOT, source)).toMatch(/"(The two commands|Installing on a server)"/);
      }
    }
  });
});

// The reasons an operator can meet in the access log (apache/INSTALL.md, "Logs"): every one the config's rules
// or its error pages give, and no other.
describe('apache/INSTALL.md, "Logs"', () => {
  it('lists every reason= of the access log and no other', () => {
    const doc = readFileSync(new URL('../../apache/INSTALL.md', import.meta.url), 'utf8');
    const listed = [...doc.matchAll(/^\| `([a-z-]+)` \| (\d{3}) \|/gm)].map((m) => `${m[1]} ${m[2]}`).sort();
    const given = [
      ...Object.entries(REFUSAL_REASONS).map(([reason, text]) => `${reason} ${/\((\d{3})/.exec(text)![1]}`),
      ...Object.entries(STATUS_REASONS).map(([status, reason]) => `${reason} ${status}`),
    ].sort();
    expect(listed).toEqual(given);
  });

  it('each reason of a rule is given by some generated config', () => {
    const golden = fileURLToPath(new URL('./golden/', import.meta.url));
    const configs = readdirSync(golden).map((file) => readFileSync(join(golden, file), 'utf8'));
    for (const reason of Object.keys(REFUSAL_REASONS)) {
      expect(
        configs.some((text) => text.includes(`E=PLEXER_REASON:${reason}]`)),
        reason,
      ).toBe(true);
    }
  });
});
