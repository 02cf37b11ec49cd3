// The store boundary (issue 15, item 1): nothing outside src/store knows how resources are stored. Only
// src/store (and the search SQL compiler, src/search/sql.ts) may use a database driver, the Database of
// src/store/database.ts, SQL text or a lock; everything else goes through ResourceStore.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

/** Below `src`: the store itself, and the compiler that turns a parsed search into SQL for it. */
const ALLOWED = [/^store\//, /^search\/sql\.ts$/];

const DRIVERS = new Set(['pg', 'pg-pool', 'pg-cursor', '@electric-sql/pglite']);

/** SQL as the store writes it: upper-case keywords, which prose and identifiers do not use. */
const SQL = [/\bSELECT\s/, /\bINSERT INTO\b/, /\bUPDATE\s+\w+\s+SET\b/, /\bDELETE FROM\b/, /\bFOR UPDATE\b/, /\bEXPLAIN\b/, /\bpg_advisory/, /\bWITH\s+\w+\s+AS\s*\(/];

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return /\.(ts|js|mjs|cjs)$/.test(entry.name) ? [path] : [];
  });
}

/** Each file of `src` outside the store that crosses its boundary, with what it does. */
function boundaryViolations(src: string): string[] {
  const database = join(src, 'store', 'database.ts');
  const found: string[] = [];
  for (const file of sourceFiles(src)) {
    const name = relative(src, file).split('\\').join('/');
    if (ALLOWED.some((pattern) => pattern.test(name))) continue;
    const text = readFileSync(file, 'utf8');
    const reasons: string[] = [];
    for (const [, specifier] of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g)) {
      const target = specifier!;
      const root = target.startsWith('@') ? target.split('/').slice(0, 2).join('/') : target.split('/')[0]!;
      if (DRIVERS.has(root)) reasons.push(`imports ${target}`);
      else if (target.startsWith('.') && resolve(dirname(file), target) === database) reasons.push(`imports ${target}`);
    }
    for (const pattern of SQL) {
      const match = text.match(pattern);
      if (match) reasons.push(`contains SQL (${JSON.stringify(match[0].trim())})`);
    }
    if (reasons.length > 0) found.push(`src/${name}: ${reasons.join(', ')}`);
  }
  return found.sort();
}

t.test('no file outside src/store imports a driver or the Database, or contains SQL', async (t) => {
  const violations = boundaryViolations(SRC);
  t.same(violations, [], violations.length ? `crossing the store boundary:\n${violations.join('\n')}` : 'the store boundary holds');
});

t.test('the check finds each kind of crossing, and leaves the store and the SQL compiler alone', async (t) => {
  const src = mkdtempSync(join(tmpdir(), 'dossier-boundary-'));
  t.teardown(() => rmSync(src, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    mkdirSync(dirname(join(src, name)), { recursive: true });
    writeFileSync(join(src, name), text);
  };
  write('store/database.ts', 'export interface Database {}\n');
  write('store/sql-resource-store.ts', "import pg from 'pg';\nconst sql = 'SELECT 1';\n");
  write('search/sql.ts', "const sql = 'SELECT id FROM resource';\n");
  write('router/locks.ts', "await db.query('SELECT pg_advisory_xact_lock($1)', [key]);\n");
  write('router/uses-db.ts', "import type { Database } from '../store/database.ts';\n");
  write('search/estimate.ts', 'const plan = `EXPLAIN (FORMAT JSON) ${sql}`;\n');
  write('app.ts', "import { PGlite } from '@electric-sql/pglite';\nimport { Pool } from 'pg';\n");
  write('router/clean.ts', "// Select the resources, then update them: prose is not SQL.\nimport type { ResourceStore } from '../store/resource-store.ts';\n");
  t.same(boundaryViolations(src), [
    'src/app.ts: imports @electric-sql/pglite, imports pg',
    'src/router/locks.ts: contains SQL ("SELECT"), contains SQL ("pg_advisory")',
    'src/router/uses-db.ts: imports ../store/database.ts',
    'src/search/estimate.ts: contains SQL ("EXPLAIN")',
  ]);
});
