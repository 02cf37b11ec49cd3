// One AuditEvent per patient (issue 18 items 2-3, IHE BALP "multiple patients"): an interaction that answers
// several patients' data records one event in each patient's own trail, naming that patient alone, sealed under
// that patient's data key, whether the request named the patient or not (a search by code, an `_include`, a
// type-level `$everything`). The patient reads it with their own token; erasing one patient leaves none of their
// events readable and the other's untouched; break-the-glass is marked on each.
import type { AuditEvent, Bundle } from 'fhir/r4';
import t from 'tap';
import { DataKeys, LocalKeyWrapper } from '../src/store/encryption.ts';
import { FHIR_JSON, json, startTestServer, TEST_MASTER_KEY } from './helpers/app.ts';
import { drainAuditLog } from '../src/store/audit-log.ts';

const server = await startTestServer(t, { audit: true });
const LOINC = 'http://loinc.org';

const admin = await server.token({ scope: 'system/*.cruds' });
const doctor = await server.token({ scope: 'user/*.rs', fhirUser: 'Practitioner/dr-search', clientId: 'gp-app' });
const emergency = await server.token({ scope: 'user/*.rs', fhirUser: 'Practitioner/dr-urgence', clientId: 'er-app', purposeOfUse: ['BTG'] });

const as = (token: string, method: 'GET' | 'POST' | 'PUT', url: string, body?: unknown) =>
  server.inject({ method, url: `/fhir/${url}`, headers: { authorization: `Bearer ${token}`, accept: FHIR_JSON, ...(body ? { 'content-type': FHIR_JSON } : {}) }, ...(body ? { payload: JSON.stringify(body) } : {}) });

async function put(resource: { resourceType: string; id: string } & Record<string, unknown>): Promise<void> {
  const res = await as(admin, 'PUT', `${resource.resourceType}/${resource.id}`, resource);
  if (res.statusCode !== 201) throw new Error(`setup: ${resource.resourceType}/${resource.id} answered ${res.statusCode} ${res.body}`);
}
const observation = (id: string, patient: string, code: string, extra: Record<string, unknown> = {}) =>
  put({ resourceType: 'Observation', id, status: 'final', code: { coding: [{ system: LOINC, code }] }, subject: { reference: `Patient/${patient}` }, ...extra });

// Two patients, each with Observations of a code searched across records; A's panel has B's result as a member.
await put({ resourceType: 'Patient', id: 'pp-a', name: [{ family: 'Alpha' }] });
await put({ resourceType: 'Patient', id: 'pp-b', name: [{ family: 'Bravo' }] });
await observation('pp-a-1', 'pp-a', '2339-0');
await observation('pp-a-2', 'pp-a', '2339-0');
await observation('pp-b-1', 'pp-b', '2339-0');
await observation('pp-b-2', 'pp-b', '718-7');
await observation('pp-a-panel', 'pp-a', '24323-8', { hasMember: [{ reference: 'Observation/pp-b-2' }] });

const patientToken = (id: string) => server.token({ scope: 'patient/*.rs', patient: id, fhirUser: `Patient/${id}`, clientId: 'patient-app' });
const patientRole = (event: AuditEvent) => (event.entity ?? []).filter((e) => e.role?.code === '1').map((e) => e.what?.reference);
const query = (event: AuditEvent) => {
  const encoded = event.entity?.find((e) => e.role?.code === '24')?.query;
  return encoded === undefined ? undefined : Buffer.from(encoded, 'base64').toString('utf8');
};

/** A patient's trail as they read it themselves, with their own token: the events `who` caused. */
async function trailOf(patient: string, who: string): Promise<AuditEvent[]> {
  const res = await as(await patientToken(patient), 'GET', `AuditEvent?patient=Patient/${patient}&_count=100`);
  if (res.statusCode !== 200) throw new Error(`the trail of ${patient}: ${res.statusCode} ${res.body}`);
  return ((json(res) as Bundle).entry ?? []).map((e) => e.resource as AuditEvent).filter((e) => e.agent.some((a) => a.requestor && a.who?.reference === who));
}

/** Every reference an event's entities and agents make: an event names no patient but through these (and its query). */
const references = (event: AuditEvent) => [...(event.entity ?? []).map((e) => e.what?.reference), ...event.agent.map((a) => a.who?.reference)].filter((r): r is string => r !== undefined);

t.test('a search naming no patient gives each patient whose data it answered one event of their own', async (t) => {
  const res = await as(doctor, 'GET', `Observation?code=${encodeURIComponent(`${LOINC}|2339-0`)}`);
  t.equal(res.statusCode, 200);
  t.equal(json(res).entry.length, 3, "A's two Observations and B's one");
  for (const [patient, other] of [['pp-a', 'pp-b'], ['pp-b', 'pp-a']] as const) {
    const events = (await trailOf(patient, 'Practitioner/dr-search')).filter((e) => query(e)?.startsWith('code='));
    t.equal(events.length, 1, `exactly one event in ${patient}'s trail`);
    const event = events[0]!;
    t.same(patientRole(event), [`Patient/${patient}`], 'naming that patient alone');
    t.notOk(references(event).some((r) => r.includes(other)), `nothing of ${other}`);
    t.equal(event.subtype?.[0]?.code, 'search-type');
    t.same(event.meta?.profile, ['https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery']);
    t.equal(query(event), `code=${encodeURIComponent(`${LOINC}|2339-0`)}`, 'with the query as sent');
  }
});

t.test('what an _include adds is on the trail of the patient it belongs to', async (t) => {
  const res = await as(doctor, 'GET', `Observation?code=${encodeURIComponent(`${LOINC}|24323-8`)}&_include=Observation:has-member`);
  t.equal(res.statusCode, 200);
  t.same(json(res).entry.map((e: { resource: { id: string } }) => e.resource.id), ['pp-a-panel', 'pp-b-2'], "A's panel, and B's result it includes");
  for (const patient of ['pp-a', 'pp-b']) {
    const events = (await trailOf(patient, 'Practitioner/dr-search')).filter((e) => query(e)?.includes('_include'));
    t.equal(events.length, 1, `one event in ${patient}'s trail`);
    t.same(patientRole(events[0]!), [`Patient/${patient}`]);
  }
});

t.test('a type-level $everything page: one event per patient whose record it holds', async (t) => {
  const res = await as(doctor, 'GET', 'Patient/$everything?_count=100');
  t.equal(res.statusCode, 200);
  const answered = new Set(json(res).entry.map((e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`));
  t.ok(answered.has('Patient/pp-a') && answered.has('Patient/pp-b'), 'both records are on the page');
  for (const patient of ['pp-a', 'pp-b']) {
    const events = (await trailOf(patient, 'Practitioner/dr-search')).filter((e) => e.entity?.some((x) => x.description === '$everything'));
    t.equal(events.length, 1, `one event in ${patient}'s trail`);
    t.same(patientRole(events[0]!), [`Patient/${patient}`]);
    t.equal(events[0]!.subtype?.[0]?.code, 'operation');
  }
});

t.test("a $summary holding a resource of another patient's record: one event in each trail", async (t) => {
  // A's pulse, taken by B (a Patient as performer: in both records, R4 Patient CompartmentDefinition).
  await observation('pp-a-pulse', 'pp-a', '8867-4', {
    category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
    performer: [{ reference: 'Patient/pp-b' }],
    effectiveDateTime: '2026-01-15',
    valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });
  const res = await as(doctor, 'GET', 'Patient/pp-a/$summary');
  t.equal(res.statusCode, 200);
  t.ok(json(res).entry.some((e: { resource: { id: string } }) => e.resource.id === 'pp-a-pulse'), 'the pulse is in the summary');
  for (const patient of ['pp-a', 'pp-b']) {
    const events = (await trailOf(patient, 'Practitioner/dr-search')).filter((e) => e.entity?.some((x) => x.description === '$summary'));
    t.equal(events.length, 1, `one event in ${patient}'s trail`);
    t.same(patientRole(events[0]!), [`Patient/${patient}`]);
  }
  const summaryOfB = await as(doctor, 'GET', 'Patient/pp-b/$summary');
  t.notOk(json(summaryOfB).entry.some((e: { resource: { id: string } }) => e.resource.id === 'pp-a-pulse'), "B's summary leaves out A's pulse: B took it, it is not about B");
  const ofB = (await trailOf('pp-a', 'Practitioner/dr-search')).filter((e) => e.entity?.some((x) => x.description === '$summary'));
  t.equal(ofB.length, 1, "B's summary, holding nothing of A's record, adds nothing to A's trail");
});

t.test('break the glass is marked on each patient\'s event', async (t) => {
  const res = await as(emergency, 'GET', `Observation?code=${encodeURIComponent(`${LOINC}|2339-0`)}`);
  t.equal(res.statusCode, 200);
  for (const patient of ['pp-a', 'pp-b']) {
    const events = await trailOf(patient, 'Practitioner/dr-urgence');
    t.equal(events.length, 1, `one event in ${patient}'s trail`);
    t.equal(events[0]!.meta?.security?.[0]?.code, 'BTG', 'labelled');
    t.equal(events[0]!.purposeOfEvent?.[0]?.coding?.[0]?.code, 'BTG');
    const marked = json(await as(await patientToken(patient), 'GET', `AuditEvent?patient=Patient/${patient}&_security=http://terminology.hl7.org/CodeSystem/v3-ActReason|BTG`));
    t.equal(marked.entry?.length, 1, 'found by its label in the patient\'s trail');
  }
});

t.test('a refusal keeps one event per patient named', async (t) => {
  const res = await as(doctor, 'GET', 'Observation?patient=Patient/pp-a,Patient/pp-b&date=not-a-date');
  t.equal(res.statusCode, 400);
  for (const patient of ['pp-a', 'pp-b']) {
    const events = (await trailOf(patient, 'Practitioner/dr-search')).filter((e) => e.outcome === '4');
    t.equal(events.length, 1, `one refusal in ${patient}'s trail`);
    t.same(patientRole(events[0]!), [`Patient/${patient}`]);
    t.match(events[0]!.outcomeDesc, /^400 /);
  }
});

t.test("erasing one patient leaves none of their events readable and the other's trail whole", async (t) => {
  await drainAuditLog(server.db);
  const { rows: before } = await server.db.query<{ id: string }>(
    `SELECT resource_id AS id FROM compartment_member WHERE compartment_type = 'Patient' AND compartment_id = 'pp-a' AND resource_type = 'AuditEvent'`,
  );
  t.ok(before.length >= 5, `A's trail holds ${before.length} events`);
  const bTrail = await trailOf('pp-b', 'Practitioner/dr-search');
  const erased = await as(admin, 'POST', 'Patient/pp-a/$erase');
  t.equal(erased.statusCode, 200, erased.body);

  for (const { id } of before) t.equal((await as(admin, 'GET', `AuditEvent/${id}`)).statusCode, 410, `AuditEvent/${id} of A is kept, unreadable`);
  // With the master key and a cold cache, every event written before the erasure that still opens names no A.
  const fresh = new DataKeys(new LocalKeyWrapper(Buffer.from(TEST_MASTER_KEY, 'base64')));
  const { rows } = await server.rawDb.query<{ id: string; content: string }>(`SELECT id, content FROM resource WHERE resource_type = 'AuditEvent' AND last_updated < now()`);
  const opened = await fresh.openAll(server.rawDb, rows.map((row) => row.content));
  const readable = opened.filter((text): text is string => text !== null).map((text) => JSON.parse(text) as AuditEvent);
  t.ok(opened.some((text) => text === null), "A's events stay sealed under the destroyed key");
  const naming = readable.filter((event) => !event.entity?.some((e) => e.description === '$erase') && references(event).some((r) => r.startsWith('Patient/pp-a')));
  t.same(naming.map((event) => event.id), [], 'no readable event (but the erasure\'s own) names A');

  const after = await trailOf('pp-b', 'Practitioner/dr-search');
  t.same(after.map((e) => e.id).sort(), bTrail.map((e) => e.id).sort(), "B's trail reads as before");
  t.ok(after.length >= 4, `B's ${after.length} events`);
});
