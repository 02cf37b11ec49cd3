import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadMigrations, migrate } from '../src/store/migrate.ts';
import { onPostgres, openTestDatabase, startTestServer } from './helpers/app.ts';
import { authHeaders, startServerProcess, waitForLogLines } from './helpers/server-process.ts';

t.test('migrations apply once; running them again changes nothing', async (t) => {
  const store = await openTestDatabase({ unmigrated: true });
  t.teardown(() => store.drop());
  const first = await migrate(store.db);
  t.same(first, loadMigrations().map((m) => m.name));
  t.same(await migrate(store.db), [], 'second run applies nothing');
  const { rows } = await store.db.query<{ n: number }>('SELECT count(*)::int AS n FROM schema_migration');
  t.equal(rows[0]?.n, first.length);
});

t.test('a long resource is stored compressed (deflated before it is sealed), and reads back whole', async (t) => {
  const server = await startTestServer(t);
  const alias = Array.from({ length: 400 }, (_, i) => `Centre hospitalier universitaire, site ${i}`);
  const created = await server.inject({ method: 'POST', url: '/fhir/Organization', payload: { resourceType: 'Organization', name: 'CHU', alias } });
  t.equal(created.statusCode, 201);
  const id = created.json().id;
  const { rows: settings } = await server.db.query<{ lz4: boolean }>(
    `SELECT 'lz4' = ANY (enumvals) AS lz4 FROM pg_settings WHERE name = 'default_toast_compression'`,
  );
  // Debian's PostgreSQL 15 is built with lz4; PGlite is not.
  t.equal(settings[0]!.lz4, onPostgres);
  // Content is sealed (encryption at rest), and ciphertext does not compress: large JSON is deflated before it is sealed.
  const json = JSON.stringify({ resourceType: 'Organization', name: 'CHU', alias });
  const { rows } = await server.rawDb.query<{ current: string; history: string }>(
    `SELECT r.content AS current,
            (SELECT h.content FROM resource_history h WHERE h.resource_type = r.resource_type AND h.id = r.id) AS history
       FROM resource r WHERE r.resource_type = 'Organization' AND r.id = $1`,
    [id],
  );
  for (const stored of [rows[0]!.current, rows[0]!.history]) {
    t.ok(stored.startsWith('$z1$'), 'deflated, then sealed');
    t.ok(stored.length < json.length / 3, `${stored.length} characters stored for ${json.length} of JSON`);
  }
  const read = await server.inject({ method: 'GET', url: `/fhir/Organization/${id}` });
  t.same(read.json().alias, alias, 'read back as written');
  const version = await server.inject({ method: 'GET', url: `/fhir/Organization/${id}/_history/1` });
  t.same(version.json().alias, alias, 'and its version');
});

const createPatient = async (base: string, family: string) =>
  fetch(`${base}/fhir/Patient`, {
    method: 'POST',
    headers: { 'content-type': 'application/fhir+json', ...(await authHeaders(base)) },
    body: JSON.stringify({ resourceType: 'Patient', name: [{ family }] }),
  });

t.test('npm start path: SIGTERM finishes in-flight requests, closes PGlite cleanly, data survives restart', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'dossier-lifecycle-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));

  // info: the test reads the request log lines.
  const first = await startServerProcess(dataDir, { env: { LOG_LEVEL: 'info' } });
  const kept = await (await createPatient(first.base, 'Avant')).json();

  // A burst of writes; SIGTERM once the server has received them all, while some are still in flight.
  const burst = Array.from({ length: 20 }, (_, i) =>
    createPatient(first.base, `Rafale${i}`).then(async (r) => ({ status: r.status, body: (await r.json()) as { id: string } })),
  );
  await waitForLogLines(first, (line) => line.includes('"msg":"incoming request"') && line.includes('"method":"POST"'), 21);
  first.child.kill('SIGTERM');
  const answered = await Promise.all(burst);
  t.equal((await first.exited).code, 0, 'exits 0 after SIGTERM');
  t.same(answered.map((r) => r.status), Array(20).fill(201), 'every request received before SIGTERM completed');
  t.ok(first.logs.some((line) => line.includes('"msg":"stopped"')), 'logs a clean stop');

  const requestLog = first.logs.map((line) => { try { return JSON.parse(line); } catch { return undefined; } }).find((l) => l?.req?.url === '/fhir/Patient');
  t.ok(requestLog?.reqId, 'pino JSON log lines carry the request id');

  const second = await startServerProcess(dataDir);
  t.teardown(() => second.stop());
  const read = await fetch(`${second.base}/fhir/Patient/${kept.id}`, { headers: await authHeaders(second.base) });
  t.equal(read.status, 200, 'data written before the stop is there after restart');
  t.equal((await read.json()).name[0].family, 'Avant');
  for (const { body } of answered) {
    t.equal((await fetch(`${second.base}/fhir/Patient/${body.id}`, { headers: await authHeaders(second.base) })).status, 200, `acknowledged ${body.id} kept`);
  }
});

t.test('configuration from the environment: defaults, and bad values refused at start', async (t) => {
  const { configFromEnv } = await import('../src/config.ts');
  const defaults = configFromEnv({});
  t.equal(defaults.port, 8080);
  t.equal(defaults.databaseUrl, './data/pglite');
  t.equal(defaults.unknownProfiles, 'warning');
  t.equal(configFromEnv({ FHIR_UNKNOWN_PROFILES: 'error', PORT: '9000' }).unknownProfiles, 'error');
  t.throws(() => configFromEnv({ FHIR_UNKNOWN_PROFILES: 'ignore' }), /FHIR_UNKNOWN_PROFILES/);
  t.throws(() => configFromEnv({ PORT: 'eighty' }), /PORT/);
  t.throws(() => configFromEnv({ LOG_LEVEL: 'loud' }), /LOG_LEVEL/);
  t.equal(defaults.workers, 1, 'one server process unless asked');
  t.equal(configFromEnv({ WORKERS: '3' }).workers, 3);
  t.ok(configFromEnv({ WORKERS: 'auto' }).workers >= 1, 'auto: one per core');
  t.throws(() => configFromEnv({ WORKERS: 'many' }), /WORKERS/);
  t.match(defaults, { requestTimeout: 600_000, headersTimeout: 30_000, idleTimeout: 600_000, keepAliveTimeout: 72_000 }, 'slow clients are cut off by default');
  t.match(configFromEnv({ REQUEST_TIMEOUT: '5000' }), { requestTimeout: 5000, headersTimeout: 5000, idleTimeout: 5000 });
  t.throws(() => configFromEnv({ REQUEST_TIMEOUT: '1000', HEADERS_TIMEOUT: '2000' }), /HEADERS_TIMEOUT/);
  t.throws(() => configFromEnv({ REQUEST_TIMEOUT: '0' }), /REQUEST_TIMEOUT/);
});
