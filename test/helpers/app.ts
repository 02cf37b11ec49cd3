import { randomBytes } from 'node:crypto';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp } from '../../src/app.ts';
import { SERVED_RESOURCE_TYPES } from '../../src/fhir/resource-types.ts';
import { createProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import type { ResourceValidator } from '../../src/fhir/validation/validator.ts';
import { openDatabase, type Database } from '../../src/store/database.ts';

/**
 * Where the suite's data lives: `DATABASE_URL=postgres://…` runs it on that PostgreSQL server, each test
 * file in a schema of its own (dropped at the end); otherwise each file gets a fresh in-memory PGlite.
 */
export const TEST_DATABASE_URL = process.env.DATABASE_URL?.startsWith('postgres') ? process.env.DATABASE_URL : 'memory://';

export const onPostgres = TEST_DATABASE_URL.startsWith('postgres');

export interface TestDatabase {
  db: Database;
  url: string;
  schema?: string;
  drop(): Promise<void>;
}

export async function openTestDatabase(): Promise<TestDatabase> {
  if (!onPostgres) {
    const db = await openDatabase(TEST_DATABASE_URL);
    return { db, url: TEST_DATABASE_URL, drop: () => db.close() };
  }
  const schema = `test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const db = await openDatabase(TEST_DATABASE_URL, { schema });
  return {
    db,
    url: TEST_DATABASE_URL,
    schema,
    async drop() {
      await db.exec(`DROP SCHEMA ${schema} CASCADE`);
      await db.close();
    },
  };
}

/** `db`, counting the statements it runs whose text matches `pattern`. */
export function countingStatements(db: Database, pattern: RegExp): { db: Database; count(): number } {
  let count = 0;
  return {
    db: {
      ...db,
      query<Row>(sql: string, params?: unknown[], name?: string) {
        if (pattern.test(sql)) count++;
        return db.query<Row>(sql, params, name);
      },
    },
    count: () => count,
  };
}

export interface TestServer {
  app: FastifyInstance;
  db: Database;
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

interface Tap {
  teardown(fn: () => unknown): void;
}

let baseOnly: ResourceValidator | undefined;

export interface TestServerOptions {
  bodyLimit?: number;
  bundleMaxEntries?: number;
  bundleBodyLimit?: number;
  resourceMaxDepth?: number;
  resourceMaxArrayLength?: number;
  resourceMaxIndexRows?: number;
  /**
   * Validate against the French default profiles, as the server does by default. Off unless asked:
   * most suites test REST behaviour with minimal resources that no French profile would accept.
   */
  frenchProfiles?: boolean;
}

/** A server on a fresh store for one test file, closed when the file's tests end. */
export async function startTestServer(t: Tap, config: TestServerOptions = {}): Promise<TestServer> {
  const store = await openTestDatabase();
  const validator = config.frenchProfiles ? undefined : (baseOnly ??= createProfileValidator({ resourceTypes: SERVED_RESOURCE_TYPES, defaultProfiles: 'none' }));
  const app = await buildApp({
    config: {
      logLevel: 'silent',
      bodyLimit: config.bodyLimit ?? 1024 * 1024,
      bundleMaxEntries: config.bundleMaxEntries ?? 1000,
      bundleBodyLimit: config.bundleBodyLimit,
      resourceMaxDepth: config.resourceMaxDepth,
      resourceMaxArrayLength: config.resourceMaxArrayLength,
      resourceMaxIndexRows: config.resourceMaxIndexRows,
    },
    db: store.db,
    validator,
  });
  const server: TestServer = {
    app,
    db: store.db,
    inject: (options) => app.inject(options),
    async close() {
      await app.close();
      await store.drop();
    },
  };
  t.teardown(() => server.close());
  return server;
}

export const FHIR_JSON = 'application/fhir+json';

export function json<T = any>(response: LightMyRequestResponse): T {
  return JSON.parse(response.body) as T;
}
