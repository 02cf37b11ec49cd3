import { randomBytes } from 'node:crypto';
import t from 'tap';
import { buildApp } from '../src/app.ts';
import { loadMigrations, migrate } from '../src/store/migrate.ts';
import { bearer, FHIR_JSON, json, openTestDatabase, startTestServer, TEST_AUDIENCE } from './helpers/app.ts';
import { sqlStorage } from '../src/store/storage.ts';

// Searchable values longer than a btree index entry holds (about 2.7 KB) are stored and searched exactly:
// before migration 0011 such a write failed with PostgreSQL's 54000 "index row size exceeds btree maximum".
// Without encryption at rest: with it, identifiers are indexed as keyed hashes (identifier-hashes.test.ts), so
// `_sort=identifier` orders by hash, and the sorts below on whole 10 KB identifier values could not hold.
const server = await startTestServer(t, { encryption: false });

/** About 10 KB of incompressible text (PostgreSQL compresses index entries). */
const randomText = (length = 10_000) => randomBytes(Math.ceil((length * 3) / 4)).toString('base64').slice(0, length);

const shared = randomText(300);
const longA = `${shared}a${randomText()}`;
const longB = `${shared}b${randomText()}`;
const system = 'http://example.org/long-identifiers';
const profileA = `http://example.org/StructureDefinition/${randomText().replace(/[+/=]/g, 'x')}`;
// Differs at character 5,000 whatever the random text holds there.
const profileB = `${profileA.slice(0, 5_000)}${profileA[5_000] === 'y' ? 'z' : 'y'}${profileA.slice(5_001)}`;

const create = async (family: string, profile: string) => {
  const res = await server.inject({
    method: 'POST',
    url: '/fhir/Patient',
    headers: { 'content-type': FHIR_JSON },
    payload: JSON.stringify({ resourceType: 'Patient', meta: { profile: [profile] }, identifier: [{ system, value: family }], name: [{ family }] }),
  });
  return { status: res.statusCode, id: json(res).id as string };
};
const [createdA, createdB] = [await create(longA, profileA), await create(longB, profileB)];
const [a, b] = [createdA.id, createdB.id];

t.test('resources with 10 KB searchable values are stored', async (t) => {
  t.equal(createdA.status, 201);
  t.equal(createdB.status, 201);
});

async function idsOf(query: string): Promise<string[]> {
  const res = await server.inject({ method: 'POST', url: '/fhir/Patient/_search', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: query });
  if (res.statusCode !== 200) throw new Error(`${res.statusCode} ${res.body.slice(0, 300)}`);
  return (json(res).entry ?? []).map((e: any) => e.resource.id);
}
const form = (params: Record<string, string>) => new URLSearchParams(params).toString();
const changedLast = (text: string) => text.slice(0, -1) + (text.endsWith('Q') ? 'R' : 'Q');

t.test('string: default prefix match, :exact and :contains on 10 KB values', async (t) => {
  t.same(await idsOf(form({ family: longA })), [a], 'the whole value');
  t.same(await idsOf(form({ family: longA.slice(0, 5_000) })), [a], 'a prefix longer than the indexed one');
  t.same((await idsOf(form({ family: shared }))).sort(), [a, b].sort(), 'a prefix both share');
  t.same(await idsOf(form({ family: changedLast(longA) })), [], 'the whole value but its last character');
  t.same(await idsOf(form({ 'family:exact': longB })), [b]);
  t.same(await idsOf(form({ 'family:exact': longB.slice(0, -1) })), [], ':exact is not a prefix match');
  t.same(await idsOf(form({ 'family:contains': longA.slice(6_000, 6_500) })), [a], ':contains past the indexed prefix');
});

t.test('token: exact match on a 10 KB identifier, with and without system', async (t) => {
  t.same(await idsOf(form({ identifier: `${system}|${longA}` })), [a]);
  t.same(await idsOf(form({ identifier: longB })), [b]);
  t.same(await idsOf(form({ identifier: `${system}|${changedLast(longA)}` })), [], 'equal on the indexed prefix, not on the whole');
  t.same(await idsOf(form({ identifier: `${system}|${longA.slice(0, 256)}` })), [], 'the indexed prefix alone is not the value');
  t.same((await idsOf(form({ identifier: `${system}|${longA},${system}|${longB}` }))).sort(), [a, b].sort(), 'one of several');
});

t.test('uri: exact match on a 10 KB canonical', async (t) => {
  t.same(await idsOf(form({ _profile: profileA })), [a]);
  t.same(await idsOf(form({ _profile: profileB })), [b]);
  t.same(await idsOf(form({ _profile: profileA.slice(0, 256) })), []);
});

t.test('_sort orders 10 KB values sharing their first 300 characters by the whole value', async (t) => {
  t.same(await idsOf(form({ family: shared, _sort: 'family' })), [a, b]);
  t.same(await idsOf(form({ family: shared, _sort: '-family' })), [b, a]);
  t.same(await idsOf(form({ family: shared, _sort: 'identifier' })), [a, b]);
  t.same(await idsOf(form({ family: shared, _sort: '-identifier' })), [b, a]);
});

t.test('paging a sort on 10 KB token values, one resource a page, both ways', async (t) => {
  for (const [sort, order] of [['identifier', [a, b]], ['-identifier', [b, a]]] as const) {
    const seen: string[] = [];
    let url: string | undefined = `/fhir/Patient?family=${encodeURIComponent(shared)}&_sort=${sort}&_count=1`;
    let last: any;
    while (url) {
      const res = await server.inject({ method: 'GET', url });
      t.equal(res.statusCode, 200);
      last = json(res);
      seen.push(...(last.entry ?? []).map((e: any) => e.resource.id));
      const next = last.link.find((l: any) => l.relation === 'next')?.url as string | undefined;
      url = next ? next.slice(next.indexOf('/fhir/')) : undefined;
    }
    t.same(seen, order, `_sort=${sort} forwards`);
    const previous = last.link.find((l: any) => l.relation === 'previous')?.url as string;
    const back = json(await server.inject({ method: 'GET', url: previous.slice(previous.indexOf('/fhir/')) }));
    t.same(back.entry.map((e: any) => e.resource.id), [order[0]], `_sort=${sort} backwards`);
  }
});

t.test('a store indexed before migration 0011 keeps its rows searchable, and takes long values after it', async (t) => {
  const store = await openTestDatabase();
  t.teardown(() => store.drop());
  await migrate(store.db, loadMigrations().filter((m) => m.version <= 10));
  const stored = JSON.stringify({ resourceType: 'Patient', id: 'ancien', meta: { versionId: '1', lastUpdated: '2026-01-02T03:04:05.000Z' }, name: [{ family: 'Dupont' }] });
  await store.db.query(`INSERT INTO resource (resource_type, id, version_id, last_updated, deleted, content) VALUES ('Patient', 'ancien', 1, '2026-01-02T03:04:05Z', false, $1)`, [stored]);
  await store.db.query(`INSERT INTO search_string (resource_type, resource_id, patient_id, param, value, normalized) VALUES ('Patient', 'ancien', 'ancien', 'family', 'Dupont', 'dupont')`);
  await store.db.query(`INSERT INTO search_token (resource_type, resource_id, patient_id, param, system, code) VALUES ('Patient', 'ancien', 'ancien', 'identifier', 'urn:x', 'A-1')`);
  const app = await buildApp({ config: { logLevel: 'silent', bodyLimit: 1024 * 1024, authAudience: TEST_AUDIENCE }, storage: sqlStorage(store.db), validator: { validate: () => [] } });
  t.teardown(() => app.close());
  const authorization = await bearer(store.db);
  const ids = async (query: string) => (json(await app.inject({ method: 'GET', url: `/fhir/Patient?${query}`, headers: { authorization } })).entry ?? []).map((e: any) => e.resource.id);
  t.same(await ids('family=dup'), ['ancien']);
  t.same(await ids('identifier=urn:x|A-1'), ['ancien']);
  const res = await app.inject({ method: 'POST', url: '/fhir/Patient', headers: { 'content-type': FHIR_JSON, authorization }, payload: JSON.stringify({ resourceType: 'Patient', name: [{ family: longA }] }) });
  t.equal(res.statusCode, 201);
  t.same(await ids(`family:exact=${encodeURIComponent(longA)}`), [json(res).id]);
});
