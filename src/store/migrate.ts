import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Database, SqlExecutor } from './database.ts';
import { MIGRATION_STEPS } from './migration-steps.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// Arbitrary constant: servers starting together on one PostgreSQL take turns to migrate.
const MIGRATION_LOCK = 7_341_204_001;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /** Run after the SQL, in the same transaction (migration-steps.ts). */
  after?: (tx: SqlExecutor) => Promise<void>;
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d{4}_[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => {
      const version = Number(file.slice(0, 4));
      const after = MIGRATION_STEPS[version];
      return { version, name: file.replace(/\.sql$/, ''), sql: readFileSync(dir + file, 'utf8'), ...(after ? { after } : {}) };
    });
}

/** Applies, in order and in one transaction (all or none), the migrations this database has not seen yet. */
export async function migrate(db: Database, migrations = loadMigrations()): Promise<string[]> {
  const applied: string[] = [];
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migration (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await tx.query<{ version: number }>('SELECT version FROM schema_migration')).rows.map((r) => r.version),
    );
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      // One statement per query: PGlite's and pg's extended protocol both reject multi-statement strings.
      for (const statement of splitStatements(migration.sql)) await tx.query(statement);
      await migration.after?.(tx);
      await tx.query('INSERT INTO schema_migration (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
      applied.push(migration.name);
    }
  });
  return applied;
}

/**
 * Splits a migration file on `;` at line ends. A dollar-quoted body (`DO $$ … $$`) is kept whole: the
 * semicolons inside it end none of the file's statements.
 */
export function splitStatements(sql: string): string[] {
  const bodies: string[] = [];
  const masked = sql.replace(/\$\$[\s\S]*?\$\$/g, (body) => `\u0000${bodies.push(body) - 1}\u0000`);
  return masked
    .split(/;\s*(?:--[^\n]*)?\n/)
    .map((s) => s.replace(/^\s*--[^\n]*$/gm, '').trim())
    .filter((s) => s.length > 0)
    .map((s) => s.replace(/;\s*$/, '').replace(/\u0000(\d+)\u0000/g, (_, index: string) => bodies[Number(index)]!));
}
