// Patient/$everything (issue 19, item 5; R4 patient-operation-everything.html): a patient's compartment and
// what it references, each once across pages, with _type, _since, start/end, _count; another patient's
// record, deleted resources, Binaries and hidden compartments never in it.
import t, { type Test as Tap } from 'tap';
import type { FastifyRequest } from 'fastify';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { DEFAULT_BINARY_INLINE_LIMIT } from '../src/store/binary-store.ts';
import type { Database } from '../src/store/database.ts';
import { DEFAULT_MAX_INDEX_ROWS } from '../src/store/index-writer.ts';
import { ALL_ACCESS, type AccessContext } from '../src/store/resource-store.ts';
import { sqlStorage } from '../src/store/storage.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const HIDE = 'x-test-hidden-patient';
/** The test's stand-in for authorisation: a header names the patient whose compartment the caller may not see. */
const accessOf = (request: FastifyRequest): AccessContext => {
  const hidden = request.headers[HIDE];
  return typeof hidden === 'string' ? { ...ALL_ACCESS, hiddenCompartments: [{ type: 'Patient', id: hidden }] } : ALL_ACCESS;
};

// Referential integrity off: one case needs what a store written before integrity was on can hold, a deleted
// patient whose resources remain (with it on, that delete is a 409).
const server = await startTestServer(t, { accessOf, referentialIntegrity: 'off', ...(process.env.EVERYTHING_LOG ? { logStream: process.stderr } : {}) });

async function put(resource: Record<string, unknown>): Promise<void> {
  const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': FHIR_JSON }, payload: resource });
  if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body}`);
}
async function remove(key: string): Promise<void> {
  const res = await server.inject({ method: 'DELETE', url: `/fhir/${key}` });
  if (res.statusCode !== 204) throw new Error(`DELETE ${key}: ${res.statusCode} ${res.body}`);
}
const get = (url: string, headers: Record<string, string> = {}) => server.inject({ method: 'GET', url, headers: { accept: FHIR_JSON, ...headers } });

const ref = (reference: string) => ({ reference });
const code = (c: string) => ({ coding: [{ system: 'http://loinc.org', code: c }] });

/**
 * A record for patient `p` (ids prefixed by `p`): its members and the shared resources they reference,
 * `extraObservations` more Observations for paging. Returns what $everything must give, by mode.
 */
async function seedRecord(p: string, extraObservations = 0): Promise<{ members: string[]; referenced: string[] }> {
  const referenced = [`Organization/${p}-org`, `Practitioner/${p}-gp`, `Practitioner/${p}-perf`, `Practitioner/${p}-old-perf`, `Location/${p}-loc`, `Medication/${p}-med`, `PractitionerRole/${p}-role`];
  await put({ resourceType: 'Organization', id: `${p}-org`, name: 'Cabinet' });
  for (const id of [`${p}-gp`, `${p}-perf`, `${p}-old-perf`]) await put({ resourceType: 'Practitioner', id, name: [{ family: id }] });
  await put({ resourceType: 'Location', id: `${p}-loc`, name: 'Salle 1' });
  await put({ resourceType: 'Medication', id: `${p}-med`, code: { text: 'paracétamol' } });
  await put({ resourceType: 'PractitionerRole', id: `${p}-role`, practitioner: ref(`Practitioner/${p}-gp`), organization: ref(`Organization/${p}-org`) });
  // Referenced by nothing of the record: never part of it.
  await put({ resourceType: 'Practitioner', id: `${p}-stranger`, name: [{ family: 'Stranger' }] });

  await put({ resourceType: 'Patient', id: p, name: [{ family: p }], generalPractitioner: [ref(`Practitioner/${p}-gp`)], managingOrganization: ref(`Organization/${p}-org`) });
  await put({
    resourceType: 'Encounter', id: `${p}-enc`, status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
    subject: ref(`Patient/${p}`), period: { start: '2024-03-01T09:00:00Z', end: '2024-03-01T10:00:00Z' }, serviceProvider: ref(`Organization/${p}-org`),
    location: [{ location: ref(`Location/${p}-loc`) }], participant: [{ individual: ref(`Practitioner/${p}-gp`) }],
  });
  const observation = (id: string, date: string, performer: string) => ({
    resourceType: 'Observation', id, status: 'final', code: code('8867-4'), subject: ref(`Patient/${p}`), encounter: ref(`Encounter/${p}-enc`),
    effectiveDateTime: date, performer: [ref(performer)], valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });
  await put(observation(`${p}-obs-2024`, '2024-03-01T09:30:00Z', `Practitioner/${p}-perf`));
  await put(observation(`${p}-obs-2019`, '2019-06-01', `Practitioner/${p}-old-perf`));
  await put({ resourceType: 'Condition', id: `${p}-cond`, subject: ref(`Patient/${p}`), code: { text: 'HTA' }, onsetDateTime: '2020-02-01' });
  await put({
    resourceType: 'MedicationRequest', id: `${p}-mr`, status: 'active', intent: 'order', subject: ref(`Patient/${p}`), medicationReference: ref(`Medication/${p}-med`),
    authoredOn: '2024-05-02', requester: ref(`PractitionerRole/${p}-role`),
  });
  await put({
    resourceType: 'Immunization', id: `${p}-imm`, status: 'completed', patient: ref(`Patient/${p}`), occurrenceDateTime: '2023-10-10',
    vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: '140' }] }, performer: [{ actor: ref(`Practitioner/${p}-gp`) }], location: ref(`Location/${p}-loc`),
  });
  await put({
    resourceType: 'AllergyIntolerance', id: `${p}-alg`, patient: ref(`Patient/${p}`), code: { text: 'arachide' },
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
  });
  await put({ resourceType: 'Binary', id: `${p}-bin`, contentType: 'text/plain', securityContext: ref(`Patient/${p}`), data: Buffer.from('compte rendu').toString('base64') });
  await put({
    resourceType: 'DocumentReference', id: `${p}-doc`, status: 'current', subject: ref(`Patient/${p}`), author: [ref(`Practitioner/${p}-gp`)],
    content: [{ attachment: { contentType: 'text/plain', url: `Binary/${p}-bin` } }],
  });
  const members = [`Patient/${p}`, `Encounter/${p}-enc`, `Observation/${p}-obs-2024`, `Observation/${p}-obs-2019`, `Condition/${p}-cond`, `MedicationRequest/${p}-mr`, `Immunization/${p}-imm`, `AllergyIntolerance/${p}-alg`, `DocumentReference/${p}-doc`];
  for (let n = 0; n < extraObservations; n++) {
    await put(observation(`${p}-obs-x${String(n).padStart(3, '0')}`, '2024-04-01', `Practitioner/${p}-perf`));
    members.push(`Observation/${p}-obs-x${String(n).padStart(3, '0')}`);
  }
  // Deleted: neither it nor what only it referenced is part of the record.
  await put({ resourceType: 'Practitioner', id: `${p}-gone-perf`, name: [{ family: 'Gone' }] });
  await put(observation(`${p}-obs-deleted`, '2024-03-02', `Practitioner/${p}-gone-perf`));
  await remove(`Observation/${p}-obs-deleted`);
  return { members: members.sort(), referenced: referenced.sort() };
}

type Entry = { fullUrl: string; resource: { resourceType: string; id: string }; search: { mode: string } };
const keyOf = (e: Entry) => `${e.resource.resourceType}/${e.resource.id}`;
const keys = (bundle: { entry?: Entry[] }, mode?: string) => (bundle.entry ?? []).filter((e) => !mode || e.search.mode === mode).map(keyOf).sort();

/** Every page from `url` following `next` to the end: the entries in order and the pages read. */
async function walk(t: Tap, url: string, headers: Record<string, string> = {}, between?: (page: number) => Promise<void>): Promise<{ entries: Entry[]; pages: number }> {
  const entries: Entry[] = [];
  let next: string | undefined = url;
  let pages = 0;
  while (next) {
    const res = await get(next.replace(/^http:\/\/localhost(:80)?/, ''), headers);
    t.equal(res.statusCode, 200, `page ${pages + 1}`);
    const bundle = json(res);
    t.equal(bundle.type, 'searchset');
    entries.push(...((bundle.entry ?? []) as Entry[]));
    next = (bundle.link as Array<{ relation: string; url: string }>).find((l) => l.relation === 'next')?.url;
    pages++;
    if (pages > 100) throw new Error('more than 100 pages');
    if (between) await between(pages);
  }
  return { entries, pages };
}

const p1 = await seedRecord('p1', 20);
const p2 = await seedRecord('p2');
// p1's record names p2 (a link between two records): p2 is another patient's, not brought in by it.
await put({ resourceType: 'Patient', id: 'p1', name: [{ family: 'p1' }], generalPractitioner: [ref('Practitioner/p1-gp')], managingOrganization: ref('Organization/p1-org'), link: [{ other: ref('Patient/p2'), type: 'seealso' }] });

t.test('one page: every member of the compartment as match, what they reference as include, each once; nothing else', async (t) => {
  const res = await get('/fhir/Patient/p1/$everything?_count=1000');
  t.equal(res.statusCode, 200);
  const bundle = json(res);
  t.equal(bundle.resourceType, 'Bundle');
  t.equal(bundle.type, 'searchset');
  t.same(keys(bundle, 'match'), p1.members);
  t.same(keys(bundle, 'include'), p1.referenced, 'practitioners, organisation, location, medication, role; not the stranger nor what only a deleted observation named');
  t.equal(bundle.entry.length, p1.members.length + p1.referenced.length, 'each once');
  t.equal(bundle.total, p1.members.length);
  t.notOk(keys(bundle).includes('Patient/p2'), 'the linked patient is not in p1\'s record');
  t.notOk(keys(bundle).includes('Binary/p1-bin'), 'Binaries are left to the attachment url');
  t.notOk(keys(bundle).some((k) => k.includes('p2')), 'nothing of p2');
  t.notOk(keys(bundle).includes('Observation/p1-obs-deleted'), 'a deleted member is absent');
  const obs = bundle.entry.find((e: Entry) => keyOf(e) === 'Observation/p1-obs-2024');
  t.equal(obs.fullUrl, 'http://localhost/fhir/Observation/p1-obs-2024');
  t.equal(obs.resource.status, 'final', 'whole resources');
  t.notOk(bundle.link.some((l: { relation: string }) => l.relation === 'next'), 'no next page');
  // The other way round, the official Patient CompartmentDefinition puts a patient linking to p2 in p2's compartment.
  const p2Record = json(await get('/fhir/Patient/p2/$everything?_count=1000'));
  t.same(keys(p2Record, 'match'), [...p2.members, 'Patient/p1'].sort(), 'p2\'s record: its own, and Patient/p1 by its link');
});

t.test('_count pages: walking next to the end gives each resource exactly once, members first', async (t) => {
  for (const count of [1, 7, 29, 30]) {
    const { entries, pages } = await walk(t, `/fhir/Patient/p1/$everything?_count=${count}`);
    const all = entries.map(keyOf);
    t.equal(new Set(all).size, all.length, `_count=${count}: none repeated`);
    t.same([...all].sort(), [...p1.members, ...p1.referenced].sort(), `_count=${count}: none missing`);
    t.equal(pages, Math.ceil(all.length / count), `_count=${count}: full pages, no empty last one`);
    const lastMatch = entries.map((e) => e.search.mode).lastIndexOf('match');
    const firstInclude = entries.map((e) => e.search.mode).indexOf('include');
    t.ok(lastMatch < firstInclude, 'the members, then what they reference');
  }
  const first = json(await get('/fhir/Patient/p1/$everything?_count=5&_type=Observation'));
  const relations = Object.fromEntries(first.link.map((l: { relation: string; url: string }) => [l.relation, l.url]));
  t.equal(relations.self, 'http://localhost/fhir/Patient/p1/$everything?_type=Observation&_count=5');
  t.equal(relations.first, relations.self);
  t.match(relations.next, /^http:\/\/localhost\/fhir\/Patient\/p1\/\$everything\?_type=Observation&_count=5&_cursor=/);
  t.equal(first.total, undefined, 'no total on a page that is not the whole answer');
});

t.test('a walk is stable while the record changes: nothing read is repeated, nothing there at the start is missed', async (t) => {
  const before = [...p1.members, ...p1.referenced];
  const added: string[] = [];
  const { entries } = await walk(t, '/fhir/Patient/p1/$everything?_count=6', {}, async (page) => {
    // After each page, one Observation sorting before everything read so far and one after the rest.
    const early = `p1-obs-a-${page}`;
    const late = `p1-zz-${page}`;
    for (const id of [early, late]) {
      await put({ resourceType: 'Observation', id, status: 'final', code: code('8867-4'), subject: ref('Patient/p1'), effectiveDateTime: '2024-04-02' });
      added.push(`Observation/${id}`);
    }
  });
  const all = entries.map(keyOf);
  t.equal(new Set(all).size, all.length, 'none repeated');
  for (const key of before) t.ok(all.includes(key), `${key} read`);
  for (const key of all) t.ok(before.includes(key) || added.includes(key), `${key} is the record's`);
  // Leave p1 as seeded for the tests after this one.
  for (const key of added) await remove(key);
});

t.test('_type: only those types, members and referenced alike', async (t) => {
  const bundle = json(await get('/fhir/Patient/p1/$everything?_type=Observation,Practitioner&_count=1000'));
  t.same(keys(bundle, 'match'), p1.members.filter((k) => k.startsWith('Observation/')));
  t.same(keys(bundle, 'include'), p1.referenced.filter((k) => k.startsWith('Practitioner/')));
  const repeated = json(await get('/fhir/Patient/p1/$everything?_type=Condition&_type=Medication&_count=1000'));
  t.same(keys(repeated), ['Condition/p1-cond', 'Medication/p1-med'], '_type repeated: the union');
  const bad = await get('/fhir/Patient/p1/$everything?_type=NoSuchType');
  t.equal(bad.statusCode, 400);
  t.equal(json(bad).resourceType, 'OperationOutcome');
});

t.test('start/end: members whose clinical date meets the period, or that have none, and what those reference', async (t) => {
  const bundle = json(await get('/fhir/Patient/p1/$everything?start=2024-01-01&end=2024-12-31&_count=1000'));
  const outOfPeriod = ['Observation/p1-obs-2019', 'Condition/p1-cond', 'Immunization/p1-imm'];
  t.same(keys(bundle, 'match'), p1.members.filter((k) => !outOfPeriod.includes(k)), 'the 2019 observation, the 2020 condition and the 2023 immunization are out; the patient, the allergy and the document have no clinical date');
  t.same(keys(bundle, 'include'), p1.referenced.filter((k) => k !== 'Practitioner/p1-old-perf'), 'the performer only the 2019 observation names is out');
  const onlyEnd = json(await get('/fhir/Patient/p1/$everything?end=2020-12-31&_type=Observation,Condition,Immunization&_count=1000'));
  t.same(keys(onlyEnd), ['Condition/p1-cond', 'Observation/p1-obs-2019'], 'end alone: everything before it');
  const onlyStart = json(await get('/fhir/Patient/p1/$everything?start=2023-10-10&_type=Condition,Immunization,MedicationRequest&_count=1000'));
  t.same(keys(onlyStart), ['Immunization/p1-imm', 'MedicationRequest/p1-mr'], 'start alone: everything from it on (the day itself included)');
  t.equal((await get('/fhir/Patient/p1/$everything?start=yesterday')).statusCode, 400);
});

t.test('_since: what was updated since, members and referenced', async (t) => {
  await new Promise((resolve) => setTimeout(resolve, 20));
  const since = new Date().toISOString();
  await new Promise((resolve) => setTimeout(resolve, 20));
  await put({ resourceType: 'Condition', id: 'p1-cond', subject: ref('Patient/p1'), code: { text: 'HTA essentielle' }, onsetDateTime: '2020-02-01' });
  await put({ resourceType: 'Location', id: 'p1-loc', name: 'Salle 2' });
  await put({ resourceType: 'Condition', id: 'p2-cond', subject: ref('Patient/p2'), code: { text: 'autre' } });
  const bundle = json(await get(`/fhir/Patient/p1/$everything?_since=${encodeURIComponent(since)}`));
  t.same(keys(bundle, 'match'), ['Condition/p1-cond']);
  t.same(keys(bundle, 'include'), ['Location/p1-loc']);
  t.equal((await get('/fhir/Patient/p1/$everything?_since=soon')).statusCode, 400);
});

t.test('POST with Parameters: the same answer, links as GET', async (t) => {
  const res = await server.inject({
    method: 'POST', url: '/fhir/Patient/p1/$everything', headers: { 'content-type': FHIR_JSON, accept: FHIR_JSON },
    payload: { resourceType: 'Parameters', parameter: [{ name: '_type', valueString: 'Encounter,Location' }, { name: '_count', valueInteger: 50 }] },
  });
  t.equal(res.statusCode, 200);
  t.same(keys(json(res)), ['Encounter/p1-enc', 'Location/p1-loc']);
  t.equal(json(res).link[0].url, 'http://localhost/fhir/Patient/p1/$everything?_type=Encounter%2CLocation&_count=50');
});

t.test('unknown patient 404, deleted patient 410, made-up cursor 400', async (t) => {
  const unknown = await get('/fhir/Patient/nobody/$everything');
  t.equal(unknown.statusCode, 404);
  t.equal(json(unknown).resourceType, 'OperationOutcome');
  await put({ resourceType: 'Patient', id: 'gone', name: [{ family: 'Gone' }] });
  t.equal((await server.inject({ method: 'DELETE', url: '/fhir/Patient/gone' })).statusCode, 204);
  t.equal((await get('/fhir/Patient/gone/$everything')).statusCode, 410);
  t.equal((await get('/fhir/Patient/p1/$everything?_cursor=bm90LWEtY3Vyc29y')).statusCode, 400);
  t.equal((await get('/fhir/Patient/p1/$everything?_count=many')).statusCode, 400);
  t.equal((await get('/fhir/Observation/p1-obs-2024/$everything')).statusCode, 404, 'not an operation of Observation');
});

t.test('type level: with _id, those patients\' records; without, every patient\'s the caller sees', async (t) => {
  const one = json(await get('/fhir/Patient/$everything?_id=p1&_count=1000'));
  t.same(keys(one, 'match'), p1.members);
  t.same(keys(one, 'include'), p1.referenced);
  const both = await walk(t, '/fhir/Patient/$everything?_id=p1,p2,nobody&_count=9');
  const all = both.entries.map(keyOf);
  t.equal(new Set(all).size, all.length, 'none repeated');
  t.same(all.sort(), [...p1.members, ...p1.referenced, ...p2.members, ...p2.referenced].sort());
  // A deleted patient's record: what stays of it (a resource naming the patient is not deleted with it) is no one's.
  await put({ resourceType: 'Patient', id: 'gone2', name: [{ family: 'Gone' }] });
  await put({ resourceType: 'Practitioner', id: 'gone2-perf', name: [{ family: 'Gone' }] });
  await put({ resourceType: 'Observation', id: 'gone2-obs', status: 'final', code: code('8867-4'), subject: ref('Patient/gone2'), performer: [ref('Practitioner/gone2-perf')] });
  await remove('Patient/gone2');
  const everyone = await walk(t, '/fhir/Patient/$everything?_count=500');
  const everyKey = everyone.entries.map(keyOf);
  t.equal(new Set(everyKey).size, everyKey.length, 'none repeated');
  for (const key of [...p1.members, ...p2.members, ...p1.referenced, ...p2.referenced]) t.ok(everyKey.includes(key), `${key} in every patient's`);
  t.notOk(everyKey.includes('Practitioner/p1-stranger'), 'what no record references is not');
  t.notOk(everyKey.includes('Patient/gone'), 'a deleted patient is not');
  t.notOk(everyKey.includes('Observation/gone2-obs'), 'nor what stays of its record');
  t.notOk(everyKey.includes('Practitioner/gone2-perf'), 'nor what only that referenced');
  t.same(keys(json(await get('/fhir/Patient/$everything?_id=gone2'))), [], 'an _id naming a deleted patient adds nothing');
});

t.test('a hidden compartment does not leak: 404 for its patient, absent from the type level, from another record', async (t) => {
  const hidden = { [HIDE]: 'p2' };
  // p1 no longer links to p2: its link put it in p2's compartment, hidden with it.
  await put({ resourceType: 'Patient', id: 'p1', name: [{ family: 'p1' }], generalPractitioner: [ref('Practitioner/p1-gp')], managingOrganization: ref('Organization/p1-org') });
  const res = await get('/fhir/Patient/p2/$everything', hidden);
  t.equal(res.statusCode, 404, 'the hidden patient reads as unknown');
  t.equal((await get('/fhir/Patient/p2/$everything')).statusCode, 200, 'with all access it is there');
  const typeLevel = await walk(t, '/fhir/Patient/$everything?_count=500', hidden);
  const seen = typeLevel.entries.map(keyOf);
  for (const key of p2.members) t.notOk(seen.includes(key), `${key} hidden`);
  for (const key of p1.members) t.ok(seen.includes(key), `${key} visible`);
  const byId = json(await get('/fhir/Patient/$everything?_id=p1,p2&_count=1000', hidden));
  t.same(keys(byId, 'match'), p1.members, 'an _id naming a hidden patient adds nothing');
  // A record referencing a hidden patient's resource: the reference does not bring it in.
  await put({ resourceType: 'Observation', id: 'p1-obs-focus', status: 'final', code: code('8867-4'), subject: ref('Patient/p1'), focus: [ref('Condition/p2-cond')] });
  const p1Record = json(await get('/fhir/Patient/p1/$everything?_count=1000', hidden));
  t.notOk(keys(p1Record).some((k) => k.includes('p2')), 'nothing of p2');
  await remove('Observation/p1-obs-focus');
});

t.test('bounded: no statement of a page reads more rows than the page holds, plus one', async (t) => {
  let most = 0;
  const db: Database = {
    ...server.db,
    async query<Row>(sql: string, params?: unknown[], name?: string) {
      const result = await server.db.query<Row>(sql, params, name);
      most = Math.max(most, result.rows.length);
      return result;
    },
  };
  const store = await sqlStorage(db).open({ registry: new SearchParameterRegistry(loadSearchParameters()), maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });
  const read: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await store.readRecord({ patients: ['p1'], count: 3, ...(cursor ? { cursor } : {}) });
    read.push(...page.entries.map((e) => `${e.resource.resourceType}/${e.resource.id}`));
    cursor = page.next;
    pages++;
  } while (cursor);
  t.same(read.sort(), [...p1.members, ...p1.referenced].sort(), `${p1.members.length} members and ${p1.referenced.length} referenced in ${pages} pages`);
  t.ok(most <= 4, `at most 4 rows from any statement (${most})`);
});

t.test('the audit trail is not part of the record: its AuditEvents only with _type asking for them', async (t) => {
  const audited = await startTestServer(t, { audit: true });
  const send = (method: string, url: string, payload?: unknown) =>
    audited.inject({ method: method as 'GET', url, headers: { accept: FHIR_JSON, ...(payload ? { 'content-type': FHIR_JSON } : {}) }, ...(payload ? { payload: payload as object } : {}) });
  t.equal((await send('PUT', '/fhir/Patient/trail', { resourceType: 'Patient', id: 'trail' })).statusCode, 201);
  t.equal((await send('PUT', '/fhir/Observation/trail-obs', { resourceType: 'Observation', id: 'trail-obs', status: 'final', code: code('8867-4'), subject: ref('Patient/trail') })).statusCode, 201);
  for (let i = 0; i < 3; i++) t.equal((await send('GET', '/fhir/Patient/trail')).statusCode, 200);
  const trail = json(await send('GET', '/fhir/AuditEvent?patient=Patient/trail&_count=100'));
  t.ok((trail.entry?.length ?? 0) >= 5, `the trail holds the patient's events (${trail.entry?.length})`);
  const record = json(await send('GET', '/fhir/Patient/trail/$everything?_count=1000'));
  t.same(keys(record), ['Observation/trail-obs', 'Patient/trail'], 'the record without its trail');
  const asked = json(await send('GET', '/fhir/Patient/trail/$everything?_type=AuditEvent&_count=1000'));
  t.ok(keys(asked).length >= 5 && keys(asked).every((key) => key.startsWith('AuditEvent/')), `_type=AuditEvent gives the trail (${keys(asked).length})`);

  // Members sorted before and after AuditEvent (the store skips the trail by index range, below and above it),
  // and what they reference, walked one entry a page: each once, in order, none of the trail.
  t.equal((await send('PUT', '/fhir/Practitioner/trail-gp', { resourceType: 'Practitioner', id: 'trail-gp' })).statusCode, 201);
  t.equal((await send('PUT', '/fhir/AllergyIntolerance/trail-allergy', { resourceType: 'AllergyIntolerance', id: 'trail-allergy', clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] }, patient: ref('Patient/trail'), code: { text: 'arachide' }, recorder: ref('Practitioner/trail-gp') })).statusCode, 201);
  t.equal((await send('PUT', '/fhir/Condition/trail-cond', { resourceType: 'Condition', id: 'trail-cond', subject: ref('Patient/trail') })).statusCode, 201);
  for (let i = 0; i < 3; i++) t.equal((await send('GET', '/fhir/Patient/trail')).statusCode, 200);
  const walked: string[] = [];
  let next: string | undefined = '/fhir/Patient/trail/$everything?_count=1';
  while (next) {
    const page: { entry?: Entry[]; link: Array<{ relation: string; url: string }> } = json(await send('GET', next.replace(/^http:\/\/localhost(:80)?/, '')));
    walked.push(...((page.entry ?? []) as Entry[]).map(keyOf));
    next = (page.link as Array<{ relation: string; url: string }>).find((l) => l.relation === 'next')?.url;
    if (walked.length > 50) throw new Error('the walk does not end');
  }
  t.same(
    walked,
    ['AllergyIntolerance/trail-allergy', 'Condition/trail-cond', 'Observation/trail-obs', 'Patient/trail', 'Practitioner/trail-gp'],
    'one entry a page: the members in order on both sides of the trail, then what they reference',
  );
});
