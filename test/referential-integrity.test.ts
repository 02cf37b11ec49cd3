import { randomUUID } from 'node:crypto';
import t from 'tap';
import { FHIR_JSON, json, startTestServer, type TestServer } from './helpers/app.ts';
import { minimalResource } from './helpers/fixtures.ts';

const server = await startTestServer(t, { bundleMaxEntries: 50 });
const relaxed = await startTestServer(t, { referentialIntegrity: 'off' });

const BASE = 'http://localhost/fhir';

function sender(on: TestServer) {
  return (method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH', url: string, body?: unknown, headers: Record<string, string> = {}) =>
    on.inject({ method, url, payload: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });
}
const send = sender(server);

/** How many resources of `type` the server holds (a refused write leaves none). */
const count = async (type: string, on = send) => json(await on('GET', `/fhir/${type}?_summary=count`)).total as number;

async function createdPatient(): Promise<string> {
  const res = await send('POST', '/fhir/Patient', minimalResource('Patient'));
  if (res.statusCode !== 201) throw new Error(`creating a patient answered ${res.statusCode}`);
  return json(res).id;
}

const immunization = (patient: string, more: Record<string, unknown> = {}) => ({ ...minimalResource('Immunization'), patient: { reference: patient }, ...more });

t.test('create naming a patient that does not exist: 422 naming the element and the reference, nothing stored', async (t) => {
  const before = await count('Immunization');
  const res = await send('POST', '/fhir/Immunization', immunization('Patient/does-not-exist'));
  t.equal(res.statusCode, 422);
  const outcome = json(res);
  t.equal(outcome.resourceType, 'OperationOutcome');
  t.equal(outcome.issue[0].code, 'not-found');
  t.same(outcome.issue[0].expression, ['Immunization.patient']);
  t.match(outcome.issue[0].diagnostics, /Patient\/does-not-exist/);
  t.equal(await count('Immunization'), before, 'nothing stored');
});

t.test('every missing reference is named, each by its path in the resource', async (t) => {
  const patient = await createdPatient();
  const res = await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`, { performer: [{ actor: { reference: 'Practitioner/p1' } }, { actor: { reference: 'Organization/o1' } }] }));
  t.equal(res.statusCode, 422);
  t.same(json(res).issue.map((issue: any) => issue.expression[0]), ['Immunization.performer[0].actor', 'Immunization.performer[1].actor']);
});

t.test('create naming an existing patient: 201; by Type/id/_history/version and by this server\'s absolute URL too', async (t) => {
  const patient = await createdPatient();
  t.equal((await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`))).statusCode, 201);
  t.equal((await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}/_history/1`))).statusCode, 201);
  t.equal((await send('POST', '/fhir/Immunization', immunization(`${BASE}/Patient/${patient}`))).statusCode, 201, 'an absolute reference to this server is local');
  const missing = await send('POST', '/fhir/Immunization', immunization(`${BASE}/Patient/${randomUUID()}`));
  t.equal(missing.statusCode, 422, 'and must name a resource it holds');
});

t.test('a deleted target is refused as a missing one', async (t) => {
  const patient = await createdPatient();
  t.equal((await send('DELETE', `/fhir/Patient/${patient}`)).statusCode, 204);
  const res = await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`));
  t.equal(res.statusCode, 422);
  t.equal(json(res).issue[0].code, 'not-found');
});

t.test('references left alone: contained #id, another server\'s URL, identifier only, a uri named reference, an attachment URL', async (t) => {
  const res = await send('POST', '/fhir/Immunization', {
    ...immunization('https://other.example.org/fhir/Patient/42'),
    contained: [{ resourceType: 'Practitioner', id: 'nurse', name: [{ family: 'Leroy' }] }],
    performer: [{ actor: { reference: '#nurse' } }, { actor: { identifier: { system: 'http://example.org/staff', value: 'N-12' } } }],
    education: [{ reference: 'http://example.org/leaflet.pdf' }],
  });
  t.equal(res.statusCode, 201, JSON.stringify(json(res).issue ?? ''));
  const document = await send('POST', '/fhir/DocumentReference', {
    ...minimalResource('DocumentReference'),
    subject: { reference: 'https://other.example.org/fhir/Patient/42' },
    content: [{ attachment: { contentType: 'application/pdf', url: 'https://other.example.org/documents/1.pdf' } }],
  });
  t.equal(document.statusCode, 201);
});

t.test('malformed references are 400: an unserved type, a urn:uuid outside a transaction, a relative one that is not Type/id', async (t) => {
  for (const reference of ['Spaceship/1', 'urn:uuid:5b1c3c3e-0b9f-4c52-9d53-2f8f6a2e1a10', 'Patient', 'Patient/has space']) {
    const res = await send('POST', '/fhir/Immunization', immunization(reference));
    t.equal(res.statusCode, 400, reference);
    t.same(json(res).issue[0].expression, ['Immunization.patient'], reference);
  }
});

t.test('update and update-as-create are checked; a resource may name itself', async (t) => {
  const patient = await createdPatient();
  const created = json(await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`)));
  const res = await send('PUT', `/fhir/Immunization/${created.id}`, { ...immunization('Patient/gone'), id: created.id });
  t.equal(res.statusCode, 422);
  t.equal(json(await send('GET', `/fhir/Immunization/${created.id}`)).meta.versionId, '1', 'not updated');
  const id = randomUUID();
  t.equal((await send('PUT', `/fhir/Immunization/${id}`, { ...immunization('Patient/gone'), id })).statusCode, 422, 'update-as-create');
  t.equal((await send('GET', `/fhir/Immunization/${id}`)).statusCode, 404);
  const self = randomUUID();
  const linked = await send('PUT', `/fhir/Patient/${self}`, { ...minimalResource('Patient'), id: self, link: [{ other: { reference: `Patient/${self}` }, type: 'seealso' }] });
  t.equal(linked.statusCode, 201, 'a patient linking to itself');
});

t.test('patch is checked on the patched resource, JSON Patch and FHIRPath Patch', async (t) => {
  const patient = await createdPatient();
  const created = json(await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`)));
  const jsonPatch = await send('PATCH', `/fhir/Immunization/${created.id}`, [{ op: 'replace', path: '/patient/reference', value: 'Patient/missing' }], {
    'content-type': 'application/json-patch+json',
  });
  t.equal(jsonPatch.statusCode, 422);
  t.same(json(jsonPatch).issue[0].expression, ['Immunization.patient']);
  const fhirPathPatch = await send('PATCH', `/fhir/Immunization/${created.id}`, {
    resourceType: 'Parameters',
    parameter: [{ name: 'operation', part: [{ name: 'type', valueCode: 'replace' }, { name: 'path', valueString: 'Immunization.patient' }, { name: 'value', valueReference: { reference: 'Patient/missing' } }] }],
  });
  t.equal(fhirPathPatch.statusCode, 422);
  t.equal(json(await send('GET', `/fhir/Immunization/${created.id}`)).meta.versionId, '1', 'neither patch wrote');
  const other = await createdPatient();
  const ok = await send('PATCH', `/fhir/Immunization/${created.id}`, [{ op: 'replace', path: '/patient/reference', value: `Patient/${other}` }], {
    'content-type': 'application/json-patch+json',
  });
  t.equal(ok.statusCode, 200);
});

t.test('transaction: urn:uuid references resolved, and a target created by a later entry (an update after the creates) counts', async (t) => {
  const patient = 'urn:uuid:7d0f6a3e-2c1b-4d8e-9f0a-1b2c3d4e5f60';
  const later = randomUUID();
  const res = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: immunization(patient, { performer: [{ actor: { reference: `Practitioner/${later}` } }] }), request: { method: 'POST', url: 'Immunization' } },
      { fullUrl: patient, resource: minimalResource('Patient'), request: { method: 'POST', url: 'Patient' } },
      { resource: { ...minimalResource('Practitioner'), id: later }, request: { method: 'PUT', url: `Practitioner/${later}` } },
    ],
  });
  t.equal(res.statusCode, 200, JSON.stringify(json(res).issue ?? ''));
  t.same(json(res).entry.map((entry: any) => entry.response.status), ['201 Created', '201 Created', '201 Created']);
});

t.test('transaction: an unresolved urn:uuid or a missing target refuses the whole transaction, naming the entry; nothing stored', async (t) => {
  const patients = await count('Patient');
  const immunizations = await count('Immunization');
  const unresolved = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:0f0e0d0c-0b0a-4909-8807-060504030201', resource: minimalResource('Patient'), request: { method: 'POST', url: 'Patient' } },
      { resource: immunization('urn:uuid:11111111-2222-4333-8444-555555555555'), request: { method: 'POST', url: 'Immunization' } },
    ],
  });
  t.equal(unresolved.statusCode, 400);
  t.same(json(unresolved).issue[0].expression, ['Bundle.entry[1]', 'Immunization.patient']);
  const missing = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: minimalResource('Patient'), request: { method: 'POST', url: 'Patient' } },
      { resource: immunization('Patient/nobody'), request: { method: 'POST', url: 'Immunization' } },
    ],
  });
  t.equal(missing.statusCode, 422);
  t.same(json(missing).issue[0].expression, ['Bundle.entry[1]', 'Immunization.patient']);
  t.equal(await count('Patient'), patients, 'no patient stored');
  t.equal(await count('Immunization'), immunizations, 'no immunization stored');
});

t.test('transaction: a target deleted by the same transaction is missing at commit', async (t) => {
  const patient = await createdPatient();
  const res = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: immunization(`Patient/${patient}`), request: { method: 'POST', url: 'Immunization' } },
      { request: { method: 'DELETE', url: `Patient/${patient}` } },
    ],
  });
  t.equal(res.statusCode, 422);
  t.equal((await send('GET', `/fhir/Patient/${patient}`)).statusCode, 200, 'the delete was undone');
});

t.test('batch: the entry with a bad reference fails alone', async (t) => {
  const patient = await createdPatient();
  const res = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'batch',
    entry: [
      { resource: immunization(`Patient/${patient}`), request: { method: 'POST', url: 'Immunization' } },
      { resource: immunization('Patient/nobody'), request: { method: 'POST', url: 'Immunization' } },
      { fullUrl: 'urn:uuid:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee', resource: minimalResource('Patient'), request: { method: 'POST', url: 'Patient' } },
      { resource: immunization('urn:uuid:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee'), request: { method: 'POST', url: 'Immunization' } },
    ],
  });
  t.equal(res.statusCode, 200);
  const entries = json(res).entry;
  t.same(entries.map((entry: any) => entry.response.status), ['201 Created', '422 Unprocessable Entity', '201 Created', '400 Bad Request'], 'a batch resolves no urn:uuid between its entries');
  t.equal(entries[1].response.outcome.issue[0].code, 'not-found');
});

t.test('FHIR_REFERENTIAL_INTEGRITY=off: references to nothing are written as they are', async (t) => {
  const relaxedSend = sender(relaxed);
  t.equal((await relaxedSend('POST', '/fhir/Immunization', immunization('Patient/legacy-42'))).statusCode, 201);
  t.equal((await relaxedSend('POST', '/fhir/Immunization', immunization('urn:uuid:5b1c3c3e-0b9f-4c52-9d53-2f8f6a2e1a10'))).statusCode, 201);
  const bundle = await relaxedSend('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [{ resource: immunization('Patient/legacy-43'), request: { method: 'POST', url: 'Immunization' } }],
  });
  t.equal(bundle.statusCode, 200);
  t.equal(await count('Immunization', relaxedSend), 3);
});

t.test('delete of a referenced resource: 409 naming the referrers, nothing deleted; once they are gone, 204', async (t) => {
  const patient = await createdPatient();
  const first = json(await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`))).id;
  const second = json(await send('POST', '/fhir/DocumentReference', { ...minimalResource('DocumentReference'), subject: { reference: `Patient/${patient}` } })).id;
  const refused = await send('DELETE', `/fhir/Patient/${patient}`);
  t.equal(refused.statusCode, 409);
  const outcome = json(refused);
  t.equal(outcome.resourceType, 'OperationOutcome');
  t.equal(outcome.issue[0].code, 'conflict');
  t.match(outcome.issue[0].diagnostics, new RegExp(`Unable to delete Patient/${patient} because at least one resource has a reference to this resource`));
  t.match(outcome.issue[0].diagnostics, new RegExp(`Immunization/${first} \\(patient\\)`));
  t.match(outcome.issue[0].diagnostics, new RegExp(`DocumentReference/${second} \\((patient|subject)\\)`));
  t.equal((await send('GET', `/fhir/Patient/${patient}`)).statusCode, 200, 'not deleted');

  t.equal((await send('DELETE', `/fhir/Immunization/${first}`)).statusCode, 204);
  // A referrer updated to name someone else no longer holds the patient.
  const other = await createdPatient();
  t.equal((await send('PUT', `/fhir/DocumentReference/${second}`, { ...minimalResource('DocumentReference'), id: second, subject: { reference: `Patient/${other}` } })).statusCode, 200);
  t.equal((await send('DELETE', `/fhir/Patient/${patient}`)).statusCode, 204);
  t.equal((await send('GET', `/fhir/Patient/${patient}`)).statusCode, 410);
});

t.test('delete: a resource naming only itself, or referenced by old versions only, is deleted', async (t) => {
  const self = randomUUID();
  t.equal((await send('PUT', `/fhir/Patient/${self}`, { ...minimalResource('Patient'), id: self, link: [{ other: { reference: `Patient/${self}` }, type: 'seealso' }] })).statusCode, 201);
  t.equal((await send('DELETE', `/fhir/Patient/${self}`)).statusCode, 204);
  const patient = await createdPatient();
  const other = await createdPatient();
  const id = json(await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`))).id;
  t.equal((await send('PUT', `/fhir/Immunization/${id}`, { ...immunization(`Patient/${other}`), id })).statusCode, 200);
  t.equal((await send('DELETE', `/fhir/Patient/${patient}`)).statusCode, 204, 'version 1 of the immunization named it; version 2 does not');
});

t.test('conditional delete of a referenced resource: 409, nothing deleted', async (t) => {
  const value = randomUUID();
  const patient = json(await send('POST', '/fhir/Patient', { ...minimalResource('Patient'), identifier: [{ system: 'urn:test:integrity', value }] })).id;
  await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`));
  const res = await send('DELETE', `/fhir/Patient?identifier=urn:test:integrity|${value}`);
  t.equal(res.statusCode, 409);
  t.match(json(res).issue[0].diagnostics, new RegExp(`Patient/${patient}`));
  t.equal((await send('GET', `/fhir/Patient/${patient}`)).statusCode, 200);
});

t.test('transaction: a delete of a still-referenced resource refuses it (409 naming the entry); deleting or updating the referrer in it too succeeds', async (t) => {
  const transaction = (entry: unknown[]) => send('POST', '/fhir', { resourceType: 'Bundle', type: 'transaction', entry });
  const patient = await createdPatient();
  const first = json(await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`))).id;
  const second = json(await send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`))).id;
  const alone = await transaction([{ resource: minimalResource('Patient'), request: { method: 'POST', url: 'Patient' } }, { request: { method: 'DELETE', url: `Patient/${patient}` } }]);
  t.equal(alone.statusCode, 409);
  t.equal(json(alone).issue[0].expression[0], 'Bundle.entry[1]');
  t.match(json(alone).issue[0].diagnostics, new RegExp(`Immunization/${first}`));
  t.equal((await send('GET', `/fhir/Patient/${patient}`)).statusCode, 200, 'nothing of it kept');

  const halfway = await transaction([{ request: { method: 'DELETE', url: `Patient/${patient}` } }, { request: { method: 'DELETE', url: `Immunization/${first}` } }]);
  t.equal(halfway.statusCode, 409, 'one referrer left');
  t.match(json(halfway).issue[0].diagnostics, new RegExp(`Immunization/${second}`));
  t.equal((await send('GET', `/fhir/Immunization/${first}`)).statusCode, 200, 'the referrer\'s delete was undone too');

  const other = await createdPatient();
  const res = await transaction([
    { request: { method: 'DELETE', url: `Patient/${patient}` } },
    { request: { method: 'DELETE', url: `Immunization/${first}` } },
    { resource: { ...immunization(`Patient/${other}`), id: second }, request: { method: 'PUT', url: `Immunization/${second}` } },
  ]);
  t.equal(res.statusCode, 200, JSON.stringify(json(res).issue ?? ''));
  t.equal((await send('GET', `/fhir/Patient/${patient}`)).statusCode, 410);
});

t.test('batch: a delete of a referenced resource fails alone (409)', async (t) => {
  const referenced = await createdPatient();
  const free = await createdPatient();
  await send('POST', '/fhir/Immunization', immunization(`Patient/${referenced}`));
  const res = await send('POST', '/fhir', { resourceType: 'Bundle', type: 'batch', entry: [{ request: { method: 'DELETE', url: `Patient/${referenced}` } }, { request: { method: 'DELETE', url: `Patient/${free}` } }] });
  t.same(json(res).entry.map((entry: any) => entry.response.status), ['409 Conflict', '204 No Content']);
});

t.test('FHIR_REFERENTIAL_INTEGRITY=off: a referenced resource is deleted', async (t) => {
  const relaxedSend = sender(relaxed);
  const patient = json(await relaxedSend('POST', '/fhir/Patient', minimalResource('Patient'))).id;
  t.equal((await relaxedSend('POST', '/fhir/Immunization', immunization(`Patient/${patient}`))).statusCode, 201);
  t.equal((await relaxedSend('DELETE', `/fhir/Patient/${patient}`)).statusCode, 204);
});

t.test('30 concurrent pairs over HTTP, a create naming a patient and the patient\'s delete: never both', async (t) => {
  const patients = await Promise.all(Array.from({ length: 30 }, () => createdPatient()));
  const results = await Promise.all(
    patients.map(async (patient, index) => {
      const create = () => send('POST', '/fhir/Immunization', immunization(`Patient/${patient}`));
      const remove = () => send('DELETE', `/fhir/Patient/${patient}`);
      const [created, deleted] = index % 2 === 0 ? await Promise.all([create(), remove()]) : (await Promise.all([remove(), create()])).reverse();
      return { patient, created: created!.statusCode, deleted: deleted!.statusCode };
    }),
  );
  t.same(results.filter((r) => r.created === 201 && r.deleted === 204).map((r) => r.patient), [], 'no pair both succeeded');
  t.ok(results.every((r) => [201, 422].includes(r.created) && [204, 409].includes(r.deleted)), 'each refused as integrity refuses');
  t.ok(results.every((r) => r.created === 201 || r.deleted === 204), 'one of each pair succeeded');
});

t.test('conditional references in a plain create and update: resolved to the one match; no match or several is 412', async (t) => {
  const value = randomUUID();
  const identified = (v: string) => ({ ...minimalResource('Patient'), identifier: [{ system: 'urn:test:conditional', value: v }] });
  const patient = json(await send('POST', '/fhir/Patient', identified(value))).id;
  const conditional = `Patient?identifier=urn:test:conditional|${value}`;
  const created = await send('POST', '/fhir/Immunization', immunization(conditional));
  t.equal(created.statusCode, 201, JSON.stringify(json(created).issue ?? ''));
  t.same(json(created).patient, { reference: `Patient/${patient}` }, 'stored as Type/id');
  const id = json(created).id;
  const updated = await send('PUT', `/fhir/Immunization/${id}`, { ...immunization(conditional), id, performer: [{ actor: { reference: conditional } }] });
  t.equal(updated.statusCode, 200);
  t.same(json(await send('GET', `/fhir/Immunization/${id}`)).performer, [{ actor: { reference: `Patient/${patient}` } }]);

  const none = await send('POST', '/fhir/Immunization', immunization(`Patient?identifier=urn:test:conditional|${randomUUID()}`));
  t.equal(none.statusCode, 412);
  t.equal(json(none).issue[0].code, 'not-found');
  const twin = randomUUID();
  await send('POST', '/fhir/Patient', identified(twin));
  await send('POST', '/fhir/Patient', identified(twin));
  const several = await send('POST', '/fhir/Immunization', immunization(`Patient?identifier=urn:test:conditional|${twin}`));
  t.equal(several.statusCode, 412);
  t.equal(json(several).issue[0].code, 'multiple-matches');
  t.equal((await send('POST', '/fhir/Immunization', immunization('Patient?nonsense=1'))).statusCode, 400, 'criteria that do not parse');
  t.equal((await send('POST', '/fhir/Immunization', immunization('Spaceship?identifier=x'))).statusCode, 400, 'a type the server does not hold');
});

t.test('a Bundle stored as a resource keeps the conditional references of its entries as written', async (t) => {
  const reference = `Patient?identifier=urn:test:conditional|${randomUUID()}`;
  const res = await send('POST', '/fhir/Bundle', {
    resourceType: 'Bundle',
    type: 'collection',
    entry: [{ fullUrl: 'urn:uuid:4f7c2b1a-9d3e-4c5b-8a6f-1e2d3c4b5a69', resource: immunization(reference) }],
  });
  t.equal(res.statusCode, 201, JSON.stringify(json(res).issue ?? ''));
  t.equal(json(res).entry[0].resource.patient.reference, reference);
});
