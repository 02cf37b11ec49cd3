import type { Patient } from 'fhir/r4';
import t from 'tap';
import { CreateCoalescer } from '../src/store/create-coalescer.ts';
import { migrate } from '../src/store/migrate.ts';
import { StoredResource, type NewResource } from '../src/store/repository.ts';
import { countingStatements, openTestDatabase, startTestServer } from './helpers/app.ts';

function newPatient(id: string, family: string): NewResource {
  const lastUpdated = new Date().toISOString();
  const resource: Patient = { resourceType: 'Patient', id, meta: { versionId: '1', lastUpdated }, name: [{ family }] };
  return { stored: new StoredResource('Patient', id, 1, lastUpdated, JSON.stringify(resource), resource) };
}

t.test('creates sharing a statement: a failing one fails alone, the others are stored once', async (t) => {
  const store = await openTestDatabase();
  t.teardown(() => store.drop());
  await migrate(store.db);
  await store.db.query(`INSERT INTO resource (resource_type, id, version_id, last_updated, content) VALUES ('Patient', 'taken', 1, now(), '{}')`);

  // Made in one turn of the event loop, the six creates go out as one statement; the duplicate id fails
  // it, and each is then written alone.
  const { db: counting, count: statements } = countingStatements(store.db, /^WITH new AS/);
  const coalescer = new CreateCoalescer(counting, 1);
  const batch = ['p0', 'p1', 'p2', 'taken', 'p3', 'p4'].map((id) => coalescer.write(newPatient(id, `Famille ${id}`)));
  const results = await Promise.allSettled(batch);
  t.same(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'], 'only the duplicate id fails');
  t.equal(statements(), 7, 'one shared statement, then one per create');

  // Creates of one turn share a statement; a create of a later turn goes in its own.
  const before = statements();
  await Promise.all(['q1', 'q2', 'q3'].map((id) => coalescer.write(newPatient(id, 'Ensemble'))));
  await coalescer.write(newPatient('q4', 'Seul'));
  t.equal(statements() - before, 2, 'three creates in one statement, the fourth in another');

  const { rows } = await store.db.query<{ id: string; n: number }>(
    `SELECT r.id, (SELECT count(*)::int FROM resource_history h WHERE h.resource_type = r.resource_type AND h.id = r.id) AS n
       FROM resource r WHERE resource_type = 'Patient' ORDER BY id`,
  );
  t.same(rows, [
    { id: 'p0', n: 1 },
    { id: 'p1', n: 1 },
    { id: 'p2', n: 1 },
    { id: 'p3', n: 1 },
    { id: 'p4', n: 1 },
    { id: 'q1', n: 1 },
    { id: 'q2', n: 1 },
    { id: 'q3', n: 1 },
    { id: 'q4', n: 1 },
    { id: 'taken', n: 0 },
  ], 'each good create stored once, with one history row; the existing row untouched');
});

t.test('many concurrent POSTs: every one answered 201 with its own resource, all searchable', async (t) => {
  const server = await startTestServer(t);
  const families = Array.from({ length: 60 }, (_, i) => `Concurrent${String(i).padStart(2, '0')}`);
  const responses = await Promise.all(
    families.map((family) => server.inject({ method: 'POST', url: '/fhir/Patient', payload: { resourceType: 'Patient', name: [{ family }] } })),
  );
  t.same(responses.map((r) => r.statusCode), families.map(() => 201));
  t.same(responses.map((r) => r.json().name[0].family), families, 'each answer carries its own resource');
  const ids = new Set(responses.map((r) => r.json().id));
  t.equal(ids.size, families.length, 'distinct ids');
  for (const response of responses.slice(0, 5)) {
    const read = await server.inject({ method: 'GET', url: `/fhir/Patient/${response.json().id}` });
    t.equal(read.json().name[0].family, response.json().name[0].family);
  }
  const search = await server.inject({ method: 'GET', url: '/fhir/Patient?family=Concurrent&_count=100&_total=accurate' });
  t.equal(search.json().total, families.length, 'all indexed');
});
