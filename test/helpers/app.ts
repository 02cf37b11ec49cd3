import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import type { DestinationStream } from 'pino';
import { buildApp, type AppOptions } from '../../src/app.ts';
import type { InteractionHook } from '../../src/router/router.ts';
import { createProfileValidator } from '../../src/fhir/validation/profile-validator.ts';
import type { ResourceValidator } from '../../src/fhir/validation/validator.ts';
import { type Database } from '../../src/store/database.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { loadMigrations, migrate } from '../../src/store/migrate.ts';
import { pgliteDatabase } from '../../src/store/pglite.ts';
import { sqlStorage } from '../../src/store/storage.ts';
import { DataKeys, LocalKeyWrapper, openingDatabase } from '../../src/store/encryption.ts';
import { embeddedToken, type EmbeddedTokenRequest } from '../../scripts/lib/embedded-token.ts';

/**
 * Where the suite's data lives: `DATABASE_URL=postgres://…` runs it on that PostgreSQL server, each test
 * file in a schema of its own (dropped at the end); otherwise each file gets a fresh in-memory PGlite.
 */
export const TEST_DATABASE_URL = process.env.DATABASE_URL?.startsWith('postgres') ? process.env.DATABASE_URL : 'memory://';

export const onPostgres = TEST_DATABASE_URL.startsWith('postgres');

/** The master key test servers encrypt with (FHIR_MASTER_KEY), fixed so that a test can reopen what it wrote. */
export const TEST_MASTER_KEY = Buffer.alloc(32, 7).toString('base64');

/** The data keys of a test store, under TEST_MASTER_KEY. */
export function testDataKeys(): DataKeys {
  return new DataKeys(new LocalKeyWrapper(Buffer.from(TEST_MASTER_KEY, 'base64')));
}

export interface TestDatabase {
  db: Database;
  url: string;
  schema?: string;
  drop(): Promise<void>;
}

/**
 * A fresh store. On PGlite it starts with the migrations applied (on PostgreSQL the schema starts empty,
 * and the server applies them at start), unless `unmigrated`, for tests of the migrations themselves.
 */
export async function openTestDatabase(options: { unmigrated?: boolean } = {}): Promise<TestDatabase> {
  if (!onPostgres) {
    const db = await openDatabase(TEST_DATABASE_URL, options.unmigrated ? {} : { pgliteDataDir: await migratedPgliteDump() });
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

const PGLITE_VERSION: string = JSON.parse(readFileSync(new URL('../../node_modules/@electric-sql/pglite/package.json', import.meta.url), 'utf8')).version;

/**
 * A PGlite data directory with every migration applied, dumped by the first test file that needs it and
 * kept in the temp directory under a name that changes with the migrations and the PGlite version: each
 * file's in-memory store then starts from it instead of running initdb (1.4 s of CPU instead of 4.0 s).
 */
async function migratedPgliteDump(): Promise<Blob> {
  const migrations = loadMigrations();
  const key = createHash('sha256').update(PGLITE_VERSION).update(JSON.stringify(migrations)).digest('hex').slice(0, 16);
  const file = join(tmpdir(), `dossier-test-pglite-${key}.tar`);
  if (existsSync(file)) return new Blob([readFileSync(file)]);
  const pglite = new PGlite();
  await migrate(pgliteDatabase(pglite), migrations);
  const dump = await pglite.dumpDataDir('none');
  await pglite.close();
  // Written aside, then renamed: test files starting together never read a half-written dump.
  const partial = `${file}.${process.pid}`;
  writeFileSync(partial, Buffer.from(await dump.arrayBuffer()));
  renameSync(partial, file);
  return dump;
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
  /** The server's database, its resources' content read in clear (encryption.ts, openingDatabase). */
  db: Database;
  /** The same database as stored: content sealed. */
  rawDb: Database;
  /** The data keys the server encrypts with. */
  dataKeys: DataKeys;
  /**
   * A request as a client with a `system/*.cruds` token sends it, unless it carries its own Authorization
   * header or `anonymous` asks for none.
   */
  inject(options: InjectOptions, as?: { anonymous?: boolean }): Promise<LightMyRequestResponse>;
  /** `Bearer <token>` of that default token, for requests sent over a socket. */
  authorization: string;
  /** The FHIR base URL the server's tokens are for. */
  audience: string;
  /** Another token from the server's embedded issuer (as `npm run token` makes them): `system/*.cruds` unless told. */
  token(request?: Partial<EmbeddedTokenRequest>): Promise<string>;
  close(): Promise<void>;
}

/** The audience of the test servers' tokens: the base `npm run token` would use on port 80. */
export const TEST_AUDIENCE = 'http://localhost/fhir';
export const DEFAULT_TEST_SCOPE = 'system/*.cruds';

/** `Bearer <token>` from the embedded issuer of the store on `db`, for a server built with `authAudience: TEST_AUDIENCE`. */
export async function bearer(db: Database, request: Partial<EmbeddedTokenRequest> = {}): Promise<string> {
  return `Bearer ${await embeddedToken(db, { audience: TEST_AUDIENCE, scope: DEFAULT_TEST_SCOPE, clientId: 'dossier-tests', ...request })}`;
}

interface Tap {
  teardown(fn: () => unknown): void;
}

let baseOnly: ResourceValidator | undefined;

export interface TestServerOptions {
  /** Encryption at rest, on unless `false` (FHIR_ENCRYPTION=off: content and identifiers stored in clear). */
  encryption?: boolean;
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
  /** FHIR_UNKNOWN_PROFILES: what a claimed profile the server does not know is (with frenchProfiles). */
  unknownProfiles?: 'warning' | 'error';
  /** FHIR_PROJECT_RULES: what the project's own rules are where only a default profile applies them (with frenchProfiles). */
  projectRules?: 'warning' | 'error';
  /**
   * FHIR_REFERENTIAL_INTEGRITY: on (the server's default) a write's references to this server must name
   * resources it holds; off for a suite about something else that writes references to nothing.
   */
  referentialIntegrity?: 'on' | 'off';
  /** BINARY_INLINE_LIMIT: the largest Binary whose `data` is put together in memory. */
  binaryInlineLimit?: number;
  /** Connection timeouts in ms (REQUEST_TIMEOUT, HEADERS_TIMEOUT); the server's defaults otherwise. */
  requestTimeout?: number;
  headersTimeout?: number;
  /** Log lines (at info level) go here; without it the server logs nothing. */
  logStream?: DestinationStream;
  /** Interaction hooks (authorisation, checks, audit) the server runs. */
  hooks?: InteractionHook[];
  /** Each request's access context, instead of the one its token gives (a token is still needed). */
  accessOf?: AppOptions['accessOf'];
  /**
   * FHIR_AUDIT: every interaction leaves an AuditEvent (the server's default). Off unless asked: many
   * suites count exactly what system history, type history or a search over every type holds.
   */
  audit?: boolean;
  /** FHIR_AUTH: on (the server's default) every /fhir request but metadata needs a token. */
  auth?: 'on' | 'off';
  /** FHIR_AUTH_ISSUERS: issuers trusted besides the embedded one. */
  authIssuers?: AppOptions['config']['authIssuers'];
  /** PUBLIC_BASE_URL; without it (nor allowedHosts) the base is the tokens' audience, TEST_AUDIENCE. */
  publicBaseUrl?: string;
  /** FHIR_ALLOWED_HOSTS: the Hosts the server answers to, and builds its base URL from. */
  allowedHosts?: string[];
  /** FHIR_CORS_ORIGINS: none, no CORS, by default. */
  corsOrigins?: string[];
  /** FHIR_RATE_LIMIT: requests a minute per client. Off unless asked: suites send thousands of requests. */
  rateLimit?: number;
  /** TRUST_PROXY: the proxies whose X-Forwarded-* are believed. */
  trustProxy?: string[];
}

/** A server on a fresh store for one test file, closed when the file's tests end. */
export async function startTestServer(t: Tap, config: TestServerOptions = {}): Promise<TestServer> {
  const store = await openTestDatabase();
  const dataKeys = testDataKeys();
  const validator = config.frenchProfiles ? undefined : (baseOnly ??= createProfileValidator({ defaultProfiles: 'none' }));
  const app = await buildApp({
    config: {
      logLevel: config.logStream ? 'info' : 'silent',
      bodyLimit: config.bodyLimit ?? 1024 * 1024,
      bundleMaxEntries: config.bundleMaxEntries ?? 1000,
      bundleBodyLimit: config.bundleBodyLimit,
      requestTimeout: config.requestTimeout,
      headersTimeout: config.headersTimeout,
      binaryInlineLimit: config.binaryInlineLimit,
      resourceMaxDepth: config.resourceMaxDepth,
      resourceMaxArrayLength: config.resourceMaxArrayLength,
      resourceMaxIndexRows: config.resourceMaxIndexRows,
      unknownProfiles: config.unknownProfiles,
      projectRules: config.projectRules,
      referentialIntegrity: config.referentialIntegrity,
      audit: config.audit ? 'on' : 'off',
      auth: config.auth ?? 'on',
      authAudience: TEST_AUDIENCE,
      authIssuers: config.authIssuers,
      publicBaseUrl: config.publicBaseUrl,
      allowedHosts: config.allowedHosts,
      corsOrigins: config.corsOrigins,
      rateLimit: config.rateLimit ?? 0,
      trustProxy: config.trustProxy,
    },
    storage: sqlStorage(store.db, config.encryption === false ? undefined : dataKeys),
    validator,
    logStream: config.logStream,
    hooks: config.hooks,
    accessOf: config.accessOf,
  });
  const token = async (request: Partial<EmbeddedTokenRequest> = {}) => (await bearer(store.db, request)).slice('Bearer '.length);
  const authorization = await bearer(store.db);
  const server: TestServer = {
    app,
    db: openingDatabase(store.db, dataKeys),
    rawDb: store.db,
    dataKeys,
    authorization,
    audience: TEST_AUDIENCE,
    token,
    inject: (options, as = {}) => {
      const headers = { ...(options.headers ?? {}) } as Record<string, string | string[] | undefined>;
      if (!as.anonymous && !Object.keys(headers).some((name) => name.toLowerCase() === 'authorization')) headers.authorization = authorization;
      return app.inject({ ...options, headers } as InjectOptions);
    },
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
