// The audit trail (issue 18 item 2, issue 15 item 3): every interaction leaves one AuditEvent after IHE BALP,
// a write's in the write's own transaction (a rolled-back entry is never on record as a success), refusals
// and failures with their outcome; the trail is append-only through the API and in the database; a patient's
// trail reads newest first, emergency accesses marked; FHIR_AUDIT=off writes none.
import type { AuditEvent } from 'fhir/r4';
import type { FastifyRequest } from 'fastify';
import t, { type Test } from 'tap';
import { FhirError } from '../src/fhir/outcome.ts';
import type { InteractionHook } from '../src/router/router.ts';
import { ALL_ACCESS, type AccessContext } from '../src/store/access.ts';
import { drainAuditLog } from '../src/store/audit-log.ts';
import { FHIR_JSON, json, startTestServer, type TestServer } from './helpers/app.ts';

const RESTFUL = 'http://hl7.org/fhir/restful-interaction';

/** The test's stand-in for authorisation: headers say who calls, from which client, for what purpose. */
const accessOf = (request: FastifyRequest): AccessContext => {
  const header = (name: string) => (typeof request.headers[name] === 'string' ? (request.headers[name] as string) : undefined);
  const who = header('x-test-who');
  const clientId = header('x-test-client');
  const purpose = header('x-test-purpose');
  return { ...ALL_ACCESS, ...(who ? { who } : {}), ...(clientId ? { clientId } : {}), purposeOfUse: purpose ? purpose.split(',') : [] };
};

/** Refuses reads of Patient/forbidden (403) and fails, as a bug would, on a resource named Crash (500). */
const refusing: InteractionHook = {
  async authorise(interaction) {
    if (interaction.kind === 'read' && interaction.id === 'forbidden') throw new FhirError(403, [{ code: 'forbidden', diagnostics: 'not for you' }]);
  },
  async checkResource(_interaction, _request, resource) {
    if ((resource as { name?: Array<{ family?: string }> }).name?.[0]?.family === 'Crash') throw new Error('a bug');
  },
};

const server = await startTestServer(t, { audit: true, accessOf, hooks: [refusing] });
const send = (method: string, url: string, body?: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method: method as 'POST', url: `/fhir/${url}`, ...(body === undefined ? {} : { payload: JSON.stringify(body) }), headers: { 'content-type': FHIR_JSON, ...headers } });

let lastSeq = 0;
/** The AuditEvents written since the last call, oldest first, read from the table itself (reading them over the API would add events). */
async function newEvents(on: TestServer = server): Promise<AuditEvent[]> {
  // Reads' events wait in the audit log until a read of AuditEvents (or the background) drains it.
  await drainAuditLog(on.db);
  const { rows } = await on.db.query<{ seq: string; content: string }>(
    `SELECT seq::text AS seq, content FROM resource_history WHERE resource_type = 'AuditEvent' AND seq > $1 ORDER BY seq`,
    [lastSeq],
  );
  if (rows.length > 0) lastSeq = Number(rows[rows.length - 1]!.seq);
  return rows.map((row) => JSON.parse(row.content) as AuditEvent);
}
async function oneEvent(tap: Test): Promise<AuditEvent> {
  const events = await newEvents();
  tap.equal(events.length, 1, 'exactly one AuditEvent');
  return events[0]!;
}
const subtype = (event: AuditEvent) => event.subtype?.find((c) => c.system === RESTFUL)?.code;
const what = (event: AuditEvent, role: string) => (event.entity ?? []).filter((e) => e.role?.code === role).map((e) => e.what?.reference);
const queryOf = (event: AuditEvent) => {
  const query = event.entity?.find((e) => e.role?.code === '24')?.query;
  return query === undefined ? undefined : Buffer.from(query, 'base64').toString('utf8');
};

/** Setup outside any test case throws rather than asserts: the root test may end while it awaits. */
async function put(resource: { resourceType: string; id: string }): Promise<void> {
  const res = await send('PUT', `${resource.resourceType}/${resource.id}`, resource);
  if (res.statusCode !== 201) throw new Error(`setup: PUT ${resource.resourceType}/${resource.id} answered ${res.statusCode} ${res.body}`);
}
await put({ resourceType: 'Patient', id: 'p1', name: [{ family: 'Durand' }] } as { resourceType: string; id: string });
await put({ resourceType: 'Immunization', id: 'i1', status: 'completed', patient: { reference: 'Patient/p1' }, occurrenceDateTime: '2024-01-02', vaccineCode: { text: 'flu' } } as { resourceType: string; id: string });
await newEvents();

t.test('read: one event, BALP PatientRead, the resource and its patient as entities, the caller as requestor', async (t) => {
  t.equal((await send('GET', 'Immunization/i1', undefined, { 'x-test-who': 'Practitioner/dr', 'x-test-client': 'gp-app' })).statusCode, 200);
  const event = await oneEvent(t);
  t.equal(event.type.system, 'http://terminology.hl7.org/CodeSystem/audit-event-type');
  t.equal(event.type.code, 'rest');
  t.equal(subtype(event), 'read');
  t.equal(event.action, 'R');
  t.equal(event.outcome, '0');
  t.ok(Math.abs(Date.parse(event.recorded) - Date.now()) < 60_000, 'recorded now');
  t.same(event.meta?.profile, ['https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead']);
  t.same(what(event, '4'), ['Immunization/i1/_history/1'], 'the resource read, at its version');
  t.same(what(event, '1'), ['Patient/p1'], 'its patient, as an entity of role 1');
  const user = event.agent.find((a) => a.requestor);
  t.equal(user?.who?.reference, 'Practitioner/dr');
  t.equal(user?.role?.[0]?.coding?.[0]?.code, 'Practitioner');
  const client = event.agent.find((a) => a.type?.coding?.[0]?.code === '110153');
  t.equal(client?.who?.identifier?.value, 'gp-app', 'the client it came from');
  t.equal(event.agent.find((a) => a.type?.coding?.[0]?.code === '110152')?.network?.address, 'http://localhost/fhir', 'this server');
  t.equal(event.source.type?.[0]?.code, '4');
});

t.test('an unknown caller is recorded as anonymous, from an unknown client', async (t) => {
  await send('GET', 'Patient/p1');
  const event = await oneEvent(t);
  t.equal(event.agent.find((a) => a.requestor)?.who?.display, 'anonymous');
  t.equal(event.agent.find((a) => a.type?.coding?.[0]?.code === '110153')?.who?.display, 'unknown client');
  t.same(what(event, '1'), ['Patient/p1'], 'a Patient read is its own patient entity');
});

t.test('vread and instance history', async (t) => {
  await send('GET', 'Patient/p1/_history/1');
  let event = await oneEvent(t);
  t.equal(subtype(event), 'vread');
  t.same(what(event, '4'), ['Patient/p1/_history/1']);
  await send('GET', 'Patient/p1/_history');
  event = await oneEvent(t);
  t.equal(subtype(event), 'history-instance');
  t.equal(event.action, 'R');
  t.same(what(event, '4'), ['Patient/p1']);
});

t.test('search: action E, the query base64 as an entity of role 24, the patient it names', async (t) => {
  t.equal((await send('GET', 'Immunization?patient=Patient/p1&status=completed')).statusCode, 200);
  const event = await oneEvent(t);
  t.equal(subtype(event), 'search-type');
  t.equal(event.action, 'E');
  t.equal(queryOf(event), 'patient=Patient%2Fp1&status=completed');
  t.same(what(event, '1'), ['Patient/p1']);
  t.same(event.meta?.profile, ['https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientQuery']);
  await send('GET', 'Patient/p1/Immunization');
  t.same(what(await oneEvent(t), '1'), ['Patient/p1'], 'a compartment search names its patient');
});

t.test('create, update, patch, delete: C, U, U, D with the version written', async (t) => {
  const created = await send('POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Neuf' }] });
  t.equal(created.statusCode, 201);
  const id = json(created).id as string;
  let event = await oneEvent(t);
  t.equal(subtype(event), 'create');
  t.equal(event.action, 'C');
  t.same(what(event, '4'), [`Patient/${id}/_history/1`]);
  t.same(what(event, '1'), [`Patient/${id}`]);
  t.same(event.meta?.profile, ['https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientCreate']);

  t.equal((await send('PUT', `Patient/${id}`, { resourceType: 'Patient', id, name: [{ family: 'Renommé' }] })).statusCode, 200);
  event = await oneEvent(t);
  t.equal(subtype(event), 'update');
  t.equal(event.action, 'U');
  t.same(what(event, '4'), [`Patient/${id}/_history/2`]);

  const patched = await server.inject({ method: 'PATCH', url: `/fhir/Patient/${id}`, payload: JSON.stringify([{ op: 'add', path: '/gender', value: 'female' }]), headers: { 'content-type': 'application/json-patch+json' } });
  t.equal(patched.statusCode, 200);
  event = await oneEvent(t);
  t.equal(subtype(event), 'patch');
  t.equal(event.action, 'U');
  t.same(what(event, '4'), [`Patient/${id}/_history/3`]);

  t.equal((await send('DELETE', `Patient/${id}`)).statusCode, 204);
  event = await oneEvent(t);
  t.equal(subtype(event), 'delete');
  t.equal(event.action, 'D');
  t.equal(event.outcome, '0');
  t.same(what(event, '4'), [`Patient/${id}`]);

  await send('POST', 'Immunization', { resourceType: 'Immunization', status: 'completed', patient: { reference: 'Patient/p1' }, occurrenceDateTime: '2024-02-02', vaccineCode: { text: 'flu' } }, { prefer: 'return=minimal' });
  event = await oneEvent(t);
  t.match(what(event, '4')[0], /^Immunization\/[^/]+\/_history\/1$/, 'a minimal answer still names what it wrote');
  t.same(what(event, '1'), ['Patient/p1'], 'the patient of a written resource');
});

t.test('an operation: subtype operation, its name and request as the query entity', async (t) => {
  t.equal((await send('POST', 'Patient/$validate', { resourceType: 'Patient' })).statusCode, 200);
  const event = await oneEvent(t);
  t.equal(subtype(event), 'operation');
  t.equal(event.action, 'E');
  t.equal(event.entity?.find((e) => e.role?.code === '24')?.description, '$validate');
  t.equal(queryOf(event), 'POST Patient/$validate');
});

t.test('refusals and failures: 404, 400, 403 and 500 each recorded with their outcome', async (t) => {
  t.equal((await send('GET', 'Patient/never-was')).statusCode, 404);
  let event = await oneEvent(t);
  t.equal(event.outcome, '4');
  t.match(event.outcomeDesc, /^404 /);
  t.same(what(event, '4'), ['Patient/never-was'], 'what was asked for');
  t.notOk(event.meta?.profile, 'BALP profiles describe successes only');

  t.equal((await send('GET', 'Patient?birthdate=not-a-date')).statusCode, 400);
  event = await oneEvent(t);
  t.equal(event.outcome, '4');
  t.equal(subtype(event), 'search-type');
  t.match(event.outcomeDesc, /^400 /);

  t.equal((await send('GET', 'Patient/forbidden')).statusCode, 403);
  event = await oneEvent(t);
  t.equal(event.outcome, '4');
  t.match(event.outcomeDesc, /^403 not for you/);

  t.equal((await send('POST', 'Patient', { resourceType: 'Patient', name: [{ family: 'Crash' }] })).statusCode, 500);
  event = await oneEvent(t);
  t.equal(event.outcome, '8', 'a server failure is a serious failure');
  t.equal(subtype(event), 'create');
});

t.test('transaction: each entry and the bundle recorded, committed with the entries', async (t) => {
  const res = await send('POST', '', {
    resourceType: 'Bundle', type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:8d7c3a1e-0000-4000-8000-000000000001', resource: { resourceType: 'Patient', name: [{ family: 'Lot' }] }, request: { method: 'POST', url: 'Patient' } },
      { request: { method: 'GET', url: 'Patient/p1' } },
    ],
  });
  t.equal(res.statusCode, 200);
  const id = /Patient\/([^/]+)\/_history/.exec(json(res).entry[0].response.location as string)?.[1];
  const events = await newEvents();
  t.same(events.map(subtype), ['create', 'read', 'transaction'], 'the entries (in processing order), then the bundle');
  t.same(what(events[0]!, '4'), [`Patient/${id}/_history/1`]);
  t.ok(events.every((e) => e.outcome === '0'));
});

t.test('a rolled-back transaction: its entries are not on record as successes, its failure is', async (t) => {
  const res = await send('POST', '', {
    resourceType: 'Bundle', type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:8d7c3a1e-0000-4000-8000-000000000002', resource: { resourceType: 'Patient', id: 'rolled', name: [{ family: 'Annulé' }] }, request: { method: 'PUT', url: 'Patient/rolled' } },
      { resource: { resourceType: 'Patient', id: 'p1', name: [{ family: 'Durand' }] }, request: { method: 'PUT', url: 'Patient/p1', ifMatch: 'W/"99"' } },
    ],
  });
  t.equal(res.statusCode, 412);
  t.equal((await send('GET', 'Patient/rolled')).statusCode, 404, 'nothing of it was written');
  const events = await newEvents();
  t.notOk(events.some((e) => e.outcome === '0' && what(e, '4').some((w) => w?.startsWith('Patient/rolled'))), 'the rolled-back update is not recorded as a success');
  const transaction = events.find((e) => subtype(e) === 'transaction');
  t.equal(transaction?.outcome, '4', 'the transaction is recorded as failed');
  t.match(transaction?.outcomeDesc, /^412 /);
});

t.test('batch: each entry on its own, failures included', async (t) => {
  const res = await send('POST', '', { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'GET', url: 'Patient/p1' } }, { request: { method: 'GET', url: 'Patient/nobody' } }] });
  t.equal(res.statusCode, 200);
  const events = await newEvents();
  t.same(events.map((e) => [subtype(e), e.outcome]), [['read', '0'], ['read', '4'], ['batch', '0']]);
});

t.test('append-only through the API: create 403, update, patch and delete 405, each with an OperationOutcome', async (t) => {
  await send('GET', 'Patient/p1');
  const [existing] = await newEvents();
  const id = (await server.db.query<{ id: string }>(`SELECT id FROM resource WHERE resource_type = 'AuditEvent' LIMIT 1`)).rows[0]!.id;
  t.ok(existing);
  const body = { resourceType: 'AuditEvent', type: { code: 'rest' }, recorded: '2024-01-01T00:00:00Z', agent: [{ requestor: true }], source: { observer: { display: 'x' } } };
  const created = await send('POST', 'AuditEvent', body);
  t.equal(created.statusCode, 403);
  t.equal(json(created).resourceType, 'OperationOutcome');
  for (const [method, url, payload] of [
    ['PUT', `AuditEvent/${id}`, { ...body, id }],
    ['DELETE', `AuditEvent/${id}`, undefined],
    ['DELETE', `AuditEvent?_id=${id}`, undefined],
    ['PUT', `AuditEvent?_id=${id}`, body],
  ] as const) {
    const res = await send(method, url, payload);
    t.equal(res.statusCode, 405, `${method} ${url}`);
    t.equal(json(res).resourceType, 'OperationOutcome');
  }
  const patched = await server.inject({ method: 'PATCH', url: `/fhir/AuditEvent/${id}`, payload: '[]', headers: { 'content-type': 'application/json-patch+json' } });
  t.equal(patched.statusCode, 405);
  const inTransaction = await send('POST', '', { resourceType: 'Bundle', type: 'transaction', entry: [{ request: { method: 'DELETE', url: `AuditEvent/${id}` } }] });
  t.equal(inTransaction.statusCode, 405, 'nor inside a transaction');
  t.equal((await send('GET', `AuditEvent/${id}`)).statusCode, 200, 'the event is still there');
  const refusals = (await newEvents()).filter((e) => e.outcome === '4');
  t.ok(refusals.length >= 6, 'each attempt is on record');
});

t.test('append-only in the database: UPDATE and DELETE of an AuditEvent row are refused, other rows are not', async (t) => {
  for (const statement of [
    `UPDATE resource SET content = '{}' WHERE resource_type = 'AuditEvent'`,
    `DELETE FROM resource WHERE resource_type = 'AuditEvent'`,
    `UPDATE resource_history SET content = '{}' WHERE resource_type = 'AuditEvent'`,
    `DELETE FROM resource_history WHERE resource_type = 'AuditEvent'`,
  ]) {
    const failure = await server.db.query(statement).then(() => undefined, (error: Error) => error.message);
    t.match(failure, /append-only/, statement);
  }
  const { rows } = await server.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'AuditEvent' AND content = '{}'`);
  t.equal(rows[0]!.n, 0, 'nothing changed');
  const other = await server.db.query(`UPDATE resource SET last_updated = last_updated WHERE resource_type = 'Patient' AND id = 'p1'`);
  t.equal(other.rowCount, 1, 'other types are written as before');
  await newEvents();
});

t.test("a patient's trail: AuditEvent?patient, newest first, emergency accesses marked", async (t) => {
  await send('PUT', 'Patient/p2', { resourceType: 'Patient', id: 'p2', name: [{ family: 'Martin' }] });
  await send('GET', 'Patient/p2', undefined, { 'x-test-who': 'Practitioner/gp' });
  await new Promise((resolve) => setTimeout(resolve, 5));
  await send('GET', 'Patient/p2', undefined, { 'x-test-who': 'Practitioner/er', 'x-test-client': 'er-app', 'x-test-purpose': 'BTG' });
  await new Promise((resolve) => setTimeout(resolve, 5));
  await send('GET', 'Patient/p1');
  const trail = json(await send('GET', 'AuditEvent?patient=Patient/p2', undefined, { 'x-test-who': 'Patient/p2' }));
  const events = (trail.entry as Array<{ resource: AuditEvent }>).map((e) => e.resource);
  t.same(events.map((e) => e.agent.find((a) => a.requestor)?.who?.reference ?? 'anonymous'), ['Practitioner/er', 'Practitioner/gp', 'anonymous'], "p2's events only, newest first (the emergency read, the GP's, the creation)");
  const recorded = events.map((e) => e.recorded);
  t.same(recorded, [...recorded].sort().reverse(), 'by recorded, descending');
  const emergency = events[0]!;
  t.same(emergency.purposeOfEvent?.[0]?.coding?.[0], { system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'BTG' });
  t.same(emergency.agent.find((a) => a.requestor)?.purposeOfUse?.[0]?.coding?.[0]?.code, 'BTG');
  t.equal(emergency.meta?.security?.[0]?.code, 'BTG', 'labelled');
  t.notOk(events[1]!.meta?.security, 'an ordinary access is not');
  const marked = json(await send('GET', 'AuditEvent?patient=Patient/p2&_security=http://terminology.hl7.org/CodeSystem/v3-ActReason|BTG'));
  t.same(marked.entry.map((e: { resource: AuditEvent }) => e.resource.agent.find((a) => a.requestor)?.who?.reference), ['Practitioner/er'], 'emergency accesses found by their label');
  const oldestFirst = json(await send('GET', 'AuditEvent?patient=Patient/p2&_sort=date'));
  t.equal(oldestFirst.entry[0].resource.agent.find((a: { requestor: boolean }) => a.requestor).who.display, 'anonymous', 'an explicit _sort is kept');
  const reading = await oneEventOf(await newEvents(), 'search-type');
  t.same(what(reading, '1'), ['Patient/p2'], 'reading the trail is itself on it');
  t.equal((await send('GET', 'Patient/p2/AuditEvent')).statusCode, 200, 'AuditEvents are in the patient compartment');
});

async function oneEventOf(events: AuditEvent[], code: string): Promise<AuditEvent> {
  return events.find((e) => subtype(e) === code)!;
}

t.test('FHIR_AUDIT=off: no event written, and the API still refuses AuditEvent writes', async (t) => {
  const quiet = await startTestServer(t, {});
  await quiet.inject({ method: 'PUT', url: '/fhir/Patient/q', payload: JSON.stringify({ resourceType: 'Patient', id: 'q' }), headers: { 'content-type': FHIR_JSON } });
  await quiet.inject({ method: 'GET', url: '/fhir/Patient/q' });
  await quiet.inject({ method: 'GET', url: '/fhir/Patient?_id=q' });
  const { rows } = await quiet.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM resource_history WHERE resource_type = 'AuditEvent'`);
  t.equal(rows[0]!.n, 0);
  const refused = await quiet.inject({ method: 'POST', url: '/fhir/AuditEvent', payload: JSON.stringify({ resourceType: 'AuditEvent' }), headers: { 'content-type': FHIR_JSON } });
  t.equal(refused.statusCode, 403);
});
