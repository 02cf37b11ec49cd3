// The audit log (issue 18): a read's AuditEvent is durable (a committed row of audit_log) before its answer
// leaves, and becomes an AuditEvent resource later, in bulk; yet every read that could return or count
// AuditEvents sees it at once, whichever server process on the store recorded it. Two apps on one store (two
// connection pools of one schema on PostgreSQL), as two processes or WORKERS > 1 have. An event appended while
// its record was being erased, sealed under a key destroyed since, is drained without content instead of
// blocking the log; rows a stopped process left are drained as the next one starts.
import type { AuditEvent, Bundle, Resource } from 'fhir/r4';
import type { FastifyInstance } from 'fastify';
import { randomUUID } from 'node:crypto';
import t from 'tap';
import { buildApp } from '../src/app.ts';
import { createProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { auditEventIndexRows } from '../src/security/audit-index-rows.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { AuditLog, drainAuditLog, type StoreLog } from '../src/store/audit-log.ts';
import type { Database } from '../src/store/database.ts';
import type { NewResource } from '../src/store/repository.ts';
import { StoredResource } from '../src/store/resource-store.ts';
import { openingDatabase } from '../src/store/encryption.ts';
import { SearchIndexWriter } from '../src/store/index-writer.ts';
import { openDatabase } from '../src/store/open-database.ts';
import { SqlResourceStore } from '../src/store/sql-resource-store.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { FHIR_JSON, json, onPostgres, openTestDatabase, TEST_DATABASE_URL, testDataKeys } from './helpers/app.ts';

const database = await openTestDatabase();
// The second process's own connections to the same store (PGlite: one instance, shared).
const secondDb: Database = onPostgres ? await openDatabase(TEST_DATABASE_URL, { schema: database.schema! }) : database.db;
const validator = createProfileValidator({ defaultProfiles: 'none' });

// The background drain runs 250 ms after an append: held back here, so that what a barrier read finds is
// what it drained itself. The test of the background drain lets it run.
const drainSoon = (AuditLog.prototype as unknown as { drainSoon(): void }).drainSoon;
const holdBackgroundDrains = (held: boolean) => {
  (AuditLog.prototype as unknown as { drainSoon(): void }).drainSoon = held ? () => {} : drainSoon;
};
holdBackgroundDrains(true);

async function serverOver(db: Database): Promise<FastifyInstance> {
  return buildApp({
    config: { logLevel: 'silent', bodyLimit: 1024 * 1024, audit: 'on', auth: 'off', authAudience: 'http://localhost/fhir', rateLimit: 0 },
    storage: { ...sqlStorage(db), close: async () => {} },
    validator,
  });
}

const a = await serverOver(database.db);
const b = await serverOver(secondDb);
t.teardown(async () => {
  holdBackgroundDrains(false);
  await a.close();
  await b.close();
  if (secondDb !== database.db) await secondDb.close();
  await database.drop();
});

const send = (app: FastifyInstance, method: 'GET' | 'POST', url: string, body?: Record<string, unknown>) =>
  app.inject({ method, url: `/fhir/${url}`, ...(body ? { payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } } : {}) });

const created = await send(a, 'POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Journal' }] });
if (created.statusCode !== 201) throw new Error(created.body);
const patientId = json<Resource>(created).id!;

/**
 * Reads the patient on `app` and returns its AuditEvent's id, having checked that the event was in the audit
 * log, committed, when the answer came, and not yet an AuditEvent resource.
 */
async function readOnRecord(app: FastifyInstance): Promise<string> {
  // The events of the reads before (a search of AuditEvents has its own, about the patient) out of the way.
  await drainAuditLog(database.db);
  const read = await send(app, 'GET', `Patient/${patientId}`);
  if (read.statusCode !== 200) throw new Error(read.body);
  const { rows } = await database.db.query<{ id: string; stored: boolean }>(
    `SELECT l.id, EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = 'AuditEvent' AND r.id = l.id) AS stored
       FROM audit_log l WHERE strpos(l.content, $1) > 0`,
    [`Patient/${patientId}`],
  );
  if (rows.length !== 1 || rows[0]!.stored) throw new Error(`the read's event is not alone in the log and unstored: ${JSON.stringify(rows)}`);
  return rows[0]!.id;
}

const idsIn = (bundle: Bundle) => (bundle.entry ?? []).map((entry) => `${entry.resource?.resourceType}/${entry.resource?.id}`);

t.test("a read's event is in the log, not a resource, once answered; a search of AuditEvents on the other server finds it", async (t) => {
  const read = await send(a, 'GET', `Patient/${patientId}`);
  t.equal(read.statusCode, 200);
  const { rows } = await database.db.query<{ logged: number; stored: number }>(
    `SELECT (SELECT count(*)::int FROM audit_log WHERE strpos(content, $1) > 0) AS logged,
            (SELECT count(*)::int FROM resource WHERE resource_type = 'AuditEvent' AND strpos(content, $1) > 0 AND strpos(content, '"read"') > 0) AS stored`,
    [`Patient/${patientId}`],
  );
  t.same(rows[0], { logged: 1, stored: 0 }, 'durable in the log, not yet searchable by itself');
  const { rows: logged } = await database.db.query<{ id: string }>(`SELECT id FROM audit_log WHERE strpos(content, $1) > 0`, [`Patient/${patientId}`]);

  const search = await send(b, 'GET', `AuditEvent?patient=${patientId}&_count=100`);
  t.equal(search.statusCode, 200);
  t.ok(idsIn(json(search)).includes(`AuditEvent/${logged[0]!.id}`), 'the other server answers it at once');
  const { rows: left } = await database.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE id = $1`, [logged[0]!.id]);
  t.equal(left[0]!.n, 0, 'drained by the search');
});

t.test('read, vread, _revinclude, _has, history and $everything naming AuditEvents see an event appended just before', async (t) => {
  const checks: Array<[name: string, app: FastifyInstance, check: (id: string) => Promise<boolean>]> = [
    ['read by id', b, async (id) => (await send(b, 'GET', `AuditEvent/${id}`)).statusCode === 200],
    ['vread', a, async (id) => (await send(a, 'GET', `AuditEvent/${id}/_history/1`)).statusCode === 200],
    ['_revinclude', b, async (id) => idsIn(json(await send(b, 'GET', `Patient?_id=${patientId}&_revinclude=AuditEvent:patient&_count=500`))).includes(`AuditEvent/${id}`)],
    ['_has', a, async (id) => idsIn(json(await send(a, 'GET', `Patient?_has:AuditEvent:patient:_id=${id}`))).includes(`Patient/${patientId}`)],
    ['_type', b, async (id) => idsIn(json(await send(b, 'GET', `?_type=AuditEvent&_id=${id}`))).includes(`AuditEvent/${id}`)],
    ['history of the system', a, async (id) => idsIn(json(await send(a, 'GET', `_history?_count=5`))).includes(`AuditEvent/${id}`)],
    ['history of AuditEvents', b, async (id) => idsIn(json(await send(b, 'GET', `AuditEvent/_history?_count=5`))).includes(`AuditEvent/${id}`)],
    ['$everything with _type=AuditEvent', a, async (id) => idsIn(json(await send(a, 'GET', `Patient/${patientId}/$everything?_type=AuditEvent&_count=500`))).includes(`AuditEvent/${id}`)],
  ];
  for (const [name, app, check] of checks) {
    // Recorded by the other server, read on this one.
    const id = await readOnRecord(app === a ? b : a);
    t.ok(await check(id), `${name}: the event is there`);
  }
});

t.test('the change feed lists an event appended just before', async (t) => {
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const store = SqlResourceStore.over(secondDb, { registry, indexWriter: new SearchIndexWriter(registry) });
  let page = await store.readChanges(undefined, 10_000);
  for (let next = await store.readChanges(page.next, 10_000); next.changes.length > 0; next = await store.readChanges(page.next, 10_000)) page = next;
  const id = await readOnRecord(a);
  const changes = await store.readChanges(page.next, 10_000);
  t.ok(changes.changes.some((change) => change.resourceType === 'AuditEvent' && change.id === id), 'in the feed after the cursor');
  await store.close();
});

t.test('without reads of AuditEvents the background drain makes the log searchable within a moment', async (t) => {
  holdBackgroundDrains(false);
  t.teardown(() => holdBackgroundDrains(true));
  const read = await send(a, 'GET', `Patient/${patientId}`);
  t.equal(read.statusCode, 200);
  const deadline = Date.now() + 10_000;
  let left = 1;
  while (left > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = (await database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]!.n;
  }
  t.equal(left, 0, 'the log emptied by itself');
});

t.test('background drains never overlap: what is appended during one is drained by the next, after it', async (t) => {
  holdBackgroundDrains(false);
  t.teardown(() => holdBackgroundDrains(true));
  await drainAuditLog(database.db);
  const log = new AuditLog(database.db, { warn: () => {}, error: () => {} });
  t.teardown(() => log.close());
  // Each background drain made slower than the delay between appends and drains, as under load.
  const drain = log.drain.bind(log);
  let running = 0;
  let most = 0;
  log.drain = async () => {
    running++;
    most = Math.max(most, running);
    await new Promise((resolve) => setTimeout(resolve, 800));
    try {
      return await drain();
    } finally {
      running--;
    }
  };
  const event = (): NewResource => {
    const resource: AuditEvent = { resourceType: 'AuditEvent', id: randomUUID(), type: { code: 'rest' }, recorded: new Date().toISOString(), agent: [], source: { observer: { display: 'dossier' } } };
    return { stored: new StoredResource('AuditEvent', resource.id!, 1, resource.recorded, JSON.stringify(resource)), rows: auditEventIndexRows(resource) };
  };
  await log.append([event()]);
  // The first drain starts 250 ms after the append and runs for 800: this append's timer fires during it.
  await new Promise((resolve) => setTimeout(resolve, 400));
  await log.append([event()]);
  const deadline = Date.now() + 15_000;
  let left = 1;
  while ((left > 0 || running > 0) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = (await database.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]!.n;
  }
  t.equal(left, 0, 'the log emptied by itself');
  t.equal(most, 1, 'one drain at a time');
});

t.test('rows a stopped process left in the log are drained as the next one starts', async (t) => {
  const id = await readOnRecord(a);
  // A new server on the store: its start (migrations) drains what it finds.
  const next = await serverOver(database.db);
  t.teardown(() => next.close());
  const { rows } = await database.db.query<{ logged: number; stored: number }>(
    `SELECT (SELECT count(*)::int FROM audit_log) AS logged, (SELECT count(*)::int FROM resource WHERE resource_type = 'AuditEvent' AND id = $1) AS stored`,
    [id],
  );
  t.same(rows[0], { logged: 0, stored: 1 });
});

t.test('an event sealed under a key destroyed after it was appended is stored without content, and the log drains on', async (t) => {
  const registry = new SearchParameterRegistry(loadSearchParameters());
  const keys = testDataKeys();
  const warnings: string[] = [];
  const log: StoreLog = { warn: (_details, message) => warnings.push(message), error: () => {} };
  const store = SqlResourceStore.over(database.db, { registry, indexWriter: new SearchIndexWriter(registry, Infinity, keys.hashIdentifier), dataKeys: keys, log });
  await store.migrate();
  const event = (patient: string): AuditEvent => ({
    resourceType: 'AuditEvent',
    type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
    action: 'R',
    recorded: new Date().toISOString(),
    outcome: '0',
    agent: [{ requestor: true, who: { display: 'test' } }],
    source: { observer: { display: 'dossier' } },
    entity: [{ what: { reference: `Patient/${patient}` }, role: { system: 'http://terminology.hl7.org/CodeSystem/object-role', code: '1' } }],
  });
  await store.recordAuditEvents([{ resource: event('erased-meanwhile'), indexRows: auditEventIndexRows(event('erased-meanwhile')) }]);
  await store.recordAuditEvents([{ resource: event('still-here'), indexRows: auditEventIndexRows(event('still-here')) }]);
  const { rows: logged } = await database.db.query<{ id: string; content: string }>(`SELECT id, content FROM audit_log`);
  t.equal(logged.length, 2, 'both appended');
  t.ok(logged.every((row) => row.content.startsWith('$')), 'sealed under their patients\' keys');
  // The erasure's transaction, without its drain: as one that destroyed the key while the append was in flight.
  await database.db.query(`DELETE FROM data_key WHERE owner = 'Patient/erased-meanwhile'`);
  keys.forget('Patient/erased-meanwhile');

  t.equal(await drainAuditLog(database.db, log), 2, 'both drained in one go');
  const { rows } = await openingDatabase(database.db, keys).query<{ id: string; content: string | null; indexed: number }>(
    `SELECT r.id, r.content, (SELECT count(*)::int FROM search_reference s WHERE s.resource_type = 'AuditEvent' AND s.resource_id = r.id) AS indexed
       FROM resource r WHERE r.resource_type = 'AuditEvent' AND r.id = ANY($1::text[]) ORDER BY r.content IS NOT NULL`,
    [logged.map((row) => row.id)],
  );
  t.equal(rows.length, 2);
  const [erased, kept] = rows as [(typeof rows)[0], (typeof rows)[0]];
  t.equal(erased.content, null, 'the erased record\'s event is stored without content');
  t.equal(erased.indexed, 0, '... and without index rows');
  t.match(kept.content, /still-here/, 'the other one is stored as written, readable');
  t.ok(kept.indexed > 0, '... and indexed');
  t.match(warnings, [/stored without content/]);
  const refusal = await store.read('AuditEvent', erased.id).then(() => ({ status: 200 }), (error: unknown) => error as { status?: number });
  t.equal(refusal.status, 410, 'reads as an erased record\'s');
  await store.close();
});
