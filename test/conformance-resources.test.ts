import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

// Item 1 of issue 16: CodeSystem, ValueSet and StructureDefinition are stored like every other type, and what is
// stored is what the validator and the terminology operations use; the built-in definitions stay beside them.
const server = await startTestServer(t);
const send = (method: 'POST' | 'PUT', url: string, body: unknown) => server.inject({ method, url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });
const get = (url: string) => server.inject({ method: 'GET', url });
const del = (url: string) => server.inject({ method: 'DELETE', url });

const PROFILE_URL = 'http://example.org/fhir/StructureDefinition/conformance-test-patient';
const profile = (min: number) => ({
  resourceType: 'StructureDefinition',
  url: PROFILE_URL,
  name: 'ConformanceTestPatient',
  status: 'draft',
  kind: 'resource',
  abstract: false,
  type: 'Patient',
  baseDefinition: 'http://hl7.org/fhir/StructureDefinition/Patient',
  derivation: 'constraint',
  differential: { element: [{ id: 'Patient.birthDate', path: 'Patient.birthDate', min }] },
});
const patient = { resourceType: 'Patient', name: [{ family: 'Martin' }] };
const errorsAgainst = async (url: string, body: unknown) => {
  const res = await send('POST', `/fhir/Patient/$validate?profile=${encodeURIComponent(url)}`, body);
  if (res.statusCode !== 200) throw new Error(`$validate answered ${res.statusCode}`);
  return json(res).issue.filter((i: any) => i.severity === 'error');
};

t.test('a StructureDefinition posted at run time is stored, read, searched, and validates from then on', async (t) => {
  t.same((await errorsAgainst(PROFILE_URL, patient)).map((i: any) => i.code), ['not-supported'], 'before: the profile is not known');
  const created = await send('POST', '/fhir/StructureDefinition', profile(1));
  t.equal(created.statusCode, 201);
  const { id } = json(created);
  t.equal(json(await get(`/fhir/StructureDefinition/${id}`)).url, PROFILE_URL, 'read back');
  const found = json(await get(`/fhir/StructureDefinition?url=${encodeURIComponent(PROFILE_URL)}`));
  t.same(found.entry.map((e: any) => e.resource.id), [id], 'found by url');
  const byType = json(await get('/fhir/StructureDefinition?type=Patient&derivation=constraint'));
  t.same(byType.entry.map((e: any) => e.resource.id), [id], 'any parameter of the type searches the stored ones');

  const missing = await errorsAgainst(PROFILE_URL, patient);
  t.equal(missing.length, 1, '$validate?profile=<stored url>: a Patient without birthDate fails');
  t.match(missing[0].expression?.[0] ?? missing[0].diagnostics, /birthDate/);
  t.same(await errorsAgainst(PROFILE_URL, { ...patient, birthDate: '1980-01-01' }), [], 'with a birth date it passes');
  const claiming = await send('POST', '/fhir/Patient', { ...patient, meta: { profile: [PROFILE_URL] } });
  t.equal(claiming.statusCode, 422, 'a write claiming the stored profile is held to it');

  // An update is in effect at once: the validator does not keep the old compiled profile.
  t.equal((await send('PUT', `/fhir/StructureDefinition/${id}`, { ...profile(0), id })).statusCode, 200);
  t.same(await errorsAgainst(PROFILE_URL, patient), [], 'after the update (min 0) the same Patient passes');
  t.equal((await del(`/fhir/StructureDefinition/${id}`)).statusCode, 204);
  t.same((await errorsAgainst(PROFILE_URL, patient)).map((i: any) => i.code), ['not-supported'], 'after the delete the profile is unknown again');
  t.equal((await get(`/fhir/StructureDefinition/${id}`)).statusCode, 410);
  t.equal(json(await get(`/fhir/StructureDefinition/${id}/_history`)).entry.length, 3, 'its history: create, update, delete');
});

t.test('a stored ValueSet over a stored CodeSystem expands, and follows its updates', async (t) => {
  const system = 'http://example.org/fhir/CodeSystem/conformance-test-colours';
  const vsUrl = 'http://example.org/fhir/ValueSet/conformance-test-colours';
  const codeSystem = { resourceType: 'CodeSystem', url: system, name: 'Colours', status: 'active', content: 'complete', concept: [{ code: 'red', display: 'Rouge' }, { code: 'blue', display: 'Bleu' }] };
  t.equal((await send('POST', '/fhir/CodeSystem', codeSystem)).statusCode, 201);
  const valueSet = { resourceType: 'ValueSet', url: vsUrl, name: 'Colours', status: 'active', compose: { include: [{ system }] } };
  const created = await send('POST', '/fhir/ValueSet', valueSet);
  t.equal(created.statusCode, 201);
  const { id } = json(created);
  const codes = async (path: string) => {
    const res = await get(path);
    t.equal(res.statusCode, 200, path);
    return json(res).expansion.contains.map((c: any) => `${c.code}:${c.display}`);
  };
  t.same(await codes(`/fhir/ValueSet/${id}/$expand`), ['red:Rouge', 'blue:Bleu'], 'instance $expand of a stored ValueSet');
  t.same(await codes(`/fhir/ValueSet/$expand?url=${encodeURIComponent(vsUrl)}`), ['red:Rouge', 'blue:Bleu'], '$expand by url');
  const restricted = { ...valueSet, id, compose: { include: [{ system, concept: [{ code: 'blue' }] }] } };
  t.equal((await send('PUT', `/fhir/ValueSet/${id}`, restricted)).statusCode, 200);
  t.same(await codes(`/fhir/ValueSet/${id}/$expand`), ['blue:Bleu'], 'the expansion follows the update');
  const validate = json(await get(`/fhir/ValueSet/$validate-code?url=${encodeURIComponent(vsUrl)}&system=${encodeURIComponent(system)}&code=red`));
  t.equal(validate.parameter.find((p: any) => p.name === 'result').valueBoolean, false, 'red is no longer in it');
});

t.test('a search by url, name or version lists the stored ones, then the built-in ones, paged across both', async (t) => {
  const genderUrl = 'http://hl7.org/fhir/ValueSet/administrative-gender';
  // A local copy of a built-in value set under the same name: both are found.
  const created = await send('POST', '/fhir/ValueSet', { resourceType: 'ValueSet', url: 'http://example.org/fhir/ValueSet/gender', name: 'AdministrativeGender', status: 'draft' });
  const storedId = json(created).id;
  const all = json(await get('/fhir/ValueSet?name:exact=AdministrativeGender'));
  t.equal(all.total, 2, 'one stored, one built-in');
  t.same(all.entry.map((e: any) => e.resource.id), [storedId, 'administrative-gender'], 'stored first');
  const first = json(await get('/fhir/ValueSet?name:exact=AdministrativeGender&_count=1'));
  t.same(first.entry.map((e: any) => e.resource.id), [storedId]);
  const next = first.link.find((l: any) => l.relation === 'next')?.url;
  t.ok(next, 'a next page');
  const second = json(await get(next.replace(/^http:\/\/localhost(:\d+)?/, '')));
  t.same(second.entry.map((e: any) => e.resource.id), ['administrative-gender'], 'the next page holds the built-in one');
  t.equal(second.total, 2);
  t.notOk(second.link.some((l: any) => l.relation === 'next'), 'and is the last');
  t.equal(json(await get('/fhir/ValueSet?name:exact=AdministrativeGender&_summary=count')).total, 2);
  t.same(json(await get(`/fhir/ValueSet?url=${encodeURIComponent(genderUrl)}`)).entry.map((e: any) => e.resource.id), ['administrative-gender']);
  // A parameter the built-in definitions are not searched by searches the stored ones only.
  t.same(json(await get('/fhir/ValueSet?name:exact=AdministrativeGender&status=draft')).entry.map((e: any) => e.resource.id), [storedId]);
});

t.test('a built-in definition is read-only; a reference to one needs no stored target', async (t) => {
  const res = await send('PUT', '/fhir/ValueSet/administrative-gender', { resourceType: 'ValueSet', id: 'administrative-gender', status: 'draft' });
  t.equal(res.statusCode, 405);
  t.match(json(res).issue[0].diagnostics, /built-in/);
  t.equal((await del('/fhir/StructureDefinition/Patient')).statusCode, 405);
  // A reference to a built-in definition names no stored resource; one to an unknown definition is refused (referential integrity).
  const toBuiltIn = await send('POST', '/fhir/Basic', { resourceType: 'Basic', code: { text: 'x' }, subject: { reference: 'StructureDefinition/Patient' } });
  t.equal(toBuiltIn.statusCode, 201, 'a reference to a built-in StructureDefinition');
  const toUnknown = await send('POST', '/fhir/Basic', { resourceType: 'Basic', code: { text: 'x' }, subject: { reference: 'StructureDefinition/no-such-profile' } });
  t.equal(toUnknown.statusCode, 422, 'a reference to an unknown StructureDefinition');
  const invalidBody = await send('POST', '/fhir/CodeSystem', { resourceType: 'CodeSystem', status: 'nonsense' });
  t.equal(invalidBody.statusCode, 400, 'a stored definition is validated as any resource is');
});

t.test('at start, the definitions stored before are in use again (a new process knows only the built-in ones)', async (t) => {
  const { loadValidationContext } = await import('../src/fhir/validation/profile-validator.ts');
  const { loadStoredDefinitions } = await import('../src/operations/conformance.ts');
  const { sqlStorage } = await import('../src/store/storage.ts');
  const { registry } = await import('./helpers/search.ts');
  const url = 'http://example.org/fhir/StructureDefinition/conformance-restart-patient';
  const created = await send('POST', '/fhir/StructureDefinition', { ...profile(1), url, name: 'ConformanceRestartPatient' });
  t.equal(created.statusCode, 201);
  const key = `StructureDefinition/${json(created).id}`;
  // What a process started afresh knows: the built-in definitions only.
  loadValidationContext().registry.putStored(key, undefined);
  t.same((await errorsAgainst(url, patient)).map((i: any) => i.code), ['not-supported'], 'forgotten');
  const store = await sqlStorage(server.db).open({ registry, maxIndexRows: 10_000, binaryInlineLimit: 1024 * 1024 });
  t.ok((await loadStoredDefinitions(store, registry)) >= 1, 'the stored definitions are loaded');
  t.equal((await errorsAgainst(url, patient)).length, 1, 'and the stored profile validates again');
});
