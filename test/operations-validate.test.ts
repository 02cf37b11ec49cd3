import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import * as fr from './helpers/validation-fixtures.ts';

// $validate (R4 resource-operations.html#validate) with the French default profiles, as deployed.
const server = await startTestServer(t, { frenchProfiles: true });
const post = (url: string, body: unknown) => server.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });
const get = (url: string) => server.inject({ method: 'GET', url });
const parameters = (...parameter: unknown[]) => ({ resourceType: 'Parameters', parameter });

const FR_CORE = 'https://hl7.fr/ig/fhir/core/StructureDefinition';
const errors = (outcome: any) => outcome.issue.filter((i: any) => i.severity === 'error');
const countPatients = async () => json(await get('/fhir/Patient?_summary=count')).total as number;

/** A Patient valid for base R4 and FR Core, with a narrative so that no warning remains: its outcome is "All OK". */
function cleanPatient(): any {
  return {
    resourceType: 'Patient',
    text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Marie Martin</div>' },
    name: [{ family: 'Martin', given: ['Marie'] }],
    gender: 'female',
    birthDate: '1984-07-12',
  };
}

t.test('a valid resource as the body: 200, one information issue "All OK", nothing written', async (t) => {
  const before = await countPatients();
  const res = await post('/fhir/Patient/$validate', cleanPatient());
  t.equal(res.statusCode, 200);
  t.same(json(res), { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code: 'informational', diagnostics: 'All OK' }] });
  t.equal(await countPatients(), before, 'no resource was created');
});

t.test('the same resource in a Parameters body, and warnings are returned as they are', async (t) => {
  const res = await post('/fhir/Patient/$validate', parameters({ name: 'resource', resource: cleanPatient() }));
  t.equal(res.statusCode, 200);
  t.same(json(res).issue.map((i: any) => i.diagnostics), ['All OK']);

  const ins = await post('/fhir/Patient/$validate', parameters({ name: 'resource', resource: fr.insPatient() }));
  t.equal(ins.statusCode, 200);
  t.same(errors(json(ins)), [], 'the FR Core INS fixture is valid');
  t.ok(json(ins).issue.some((i: any) => i.severity === 'warning' && /dom-6/.test(i.diagnostics)), 'the missing narrative is a warning');
});

t.test('an invalid resource: still 200, the errors with their paths; no write', async (t) => {
  const before = await countPatients();
  const wrongKey = fr.insPatient();
  wrongKey.identifier[0].value = '123456789012244';
  const res = await post('/fhir/Patient/$validate', wrongKey);
  t.equal(res.statusCode, 200);
  const [error, ...more] = errors(json(res));
  t.same(more, []);
  t.match(error.diagnostics, /expected 12/);
  t.same(error.expression, ['Patient.identifier[0].value']);

  const notR4 = await post('/fhir/Patient/$validate', { ...cleanPatient(), birthDate: '12/07/1984' });
  t.equal(notR4.statusCode, 200, 'a schema failure is an outcome too, not a 400');
  t.same(errors(json(notR4)).map((i: any) => i.expression), [['Patient.birthDate']]);

  const noLot = fr.immunization();
  delete noLot.lotNumber;
  const immunization = await post('/fhir/Immunization/$validate', noLot);
  t.equal(immunization.statusCode, 200);
  t.same(errors(json(immunization)), [], 'the dossier profile applies by default, its own rules as warnings');
  t.ok(json(immunization).issue.some((i: any) => i.severity === 'warning' && /dossier-imm-1/.test(i.diagnostics)));
  t.equal(await countPatients(), before);
});

t.test('a resource of another type than the URL is an error issue', async (t) => {
  const res = await post('/fhir/Immunization/$validate', cleanPatient());
  t.equal(res.statusCode, 200);
  t.same(json(res).issue, [{ severity: 'error', code: 'invalid', diagnostics: "resourceType 'Patient' does not match 'Immunization' in the URL", expression: ['resourceType'] }]);
});

t.test('profile: validates against that profile instead of the default one; unknown profile → error issue', async (t) => {
  // Without a nominated profile, FR Core Patient applies and this patient is fine; FR Core INS requires the birth place.
  const patient = cleanPatient();
  t.same(json(await post('/fhir/Patient/$validate', patient)).issue.map((i: any) => i.diagnostics), ['All OK']);
  const ins = await post('/fhir/Patient/$validate', parameters({ name: 'resource', resource: patient }, { name: 'profile', valueUri: `${FR_CORE}/fr-core-patient-ins` }));
  t.equal(ins.statusCode, 200);
  t.ok(errors(json(ins)).some((i: any) => /fr-core-patient-ins/.test(i.diagnostics) && /birthPlace|identifier/.test(i.diagnostics)), 'the INS profile rules apply');

  // The same profile through the query string (POST of the resource itself).
  const query = await post(`/fhir/Patient/$validate?profile=${encodeURIComponent(`${FR_CORE}/fr-core-patient-ins`)}`, patient);
  t.same(json(query).issue, json(ins).issue, 'query and Parameters give the same outcome');

  const unknown = await post('/fhir/Patient/$validate', parameters({ name: 'resource', resource: patient }, { name: 'profile', valueCanonical: 'http://example.org/StructureDefinition/nope' }));
  t.equal(unknown.statusCode, 200);
  t.same(json(unknown).issue, [{ severity: 'error', code: 'not-supported', diagnostics: 'Profile http://example.org/StructureDefinition/nope is not known to this server: the resource cannot be validated against it' }]);

  const otherType = await post('/fhir/Patient/$validate', parameters({ name: 'resource', resource: patient }, { name: 'profile', valueCanonical: `${FR_CORE}/fr-core-practitioner` }));
  t.same(errors(json(otherType)).map((i: any) => i.diagnostics), [`Profile ${FR_CORE}/fr-core-practitioner is a profile of Practitioner, not Patient`]);
});

t.test('mode=update: the id must be present, and match the URL at instance level', async (t) => {
  const noId = await post('/fhir/Patient/$validate', parameters({ name: 'resource', resource: cleanPatient() }, { name: 'mode', valueCode: 'update' }));
  t.equal(noId.statusCode, 200);
  t.same(json(noId).issue, [{ severity: 'error', code: 'required', diagnostics: "Patient.id: an update needs the resource's id", expression: ['Patient.id'] }]);

  const other = await post('/fhir/Patient/abc/$validate', parameters({ name: 'resource', resource: { ...cleanPatient(), id: 'xyz' } }, { name: 'mode', valueCode: 'update' }));
  t.same(json(other).issue, [{ severity: 'error', code: 'invalid', diagnostics: "Patient.id: id 'xyz' does not match 'abc' in the URL", expression: ['Patient.id'] }]);

  const same = await post('/fhir/Patient/abc/$validate?mode=update', { ...cleanPatient(), id: 'abc' });
  t.same(json(same).issue.map((i: any) => i.diagnostics), ['All OK'], 'matching id: valid (the instance need not exist: update can create)');
  t.equal((await get('/fhir/Patient/abc')).statusCode, 404, 'and nothing was written');

  const create = await post('/fhir/Patient/$validate?mode=create', cleanPatient());
  t.same(json(create).issue.map((i: any) => i.diagnostics), ['All OK']);

  const bad = await post('/fhir/Patient/$validate?mode=replace', cleanPatient());
  t.equal(bad.statusCode, 400, 'an unknown mode is a malformed request');
  t.match(json(bad).issue[0].diagnostics, /create, update, delete/);
});

t.test('instance level: GET validates the stored resource; mode=delete checks the deletion', async (t) => {
  const created = await post('/fhir/Patient', cleanPatient());
  t.equal(created.statusCode, 201);
  const id = json(created).id;

  const stored = await get(`/fhir/Patient/${id}/$validate`);
  t.equal(stored.statusCode, 200);
  t.same(json(stored).issue.map((i: any) => i.diagnostics), ['All OK']);

  const againstIns = await get(`/fhir/Patient/${id}/$validate?profile=${encodeURIComponent(`${FR_CORE}/fr-core-patient-ins`)}`);
  t.ok(errors(json(againstIns)).length > 0, 'the stored resource against a stricter profile');

  const body = await post(`/fhir/Patient/${id}/$validate`, { ...cleanPatient(), id, gender: 'unknown-gender' });
  t.same(errors(json(body)).map((i: any) => i.expression), [['Patient.gender']], 'a body given at instance level is what is validated');

  const deletion = await post(`/fhir/Patient/${id}/$validate`, parameters({ name: 'mode', valueCode: 'delete' }));
  t.equal(deletion.statusCode, 200);
  t.same(json(deletion).issue, [{ severity: 'information', code: 'informational', diagnostics: 'All OK' }]);
  t.equal((await get(`/fhir/Patient/${id}`)).statusCode, 200, 'the resource is still there');

  const viaGet = await get(`/fhir/Patient/${id}/$validate?mode=delete`);
  t.same(json(viaGet).issue.map((i: any) => i.diagnostics), ['All OK']);

  const missing = await post('/fhir/Patient/none/$validate', parameters({ name: 'mode', valueCode: 'delete' }));
  t.equal(missing.statusCode, 200);
  t.same(json(missing).issue, [{ severity: 'information', code: 'informational', diagnostics: 'Patient/none does not exist: deleting it would change nothing' }]);

  const typeLevelDelete = await post('/fhir/Patient/$validate', parameters({ name: 'mode', valueCode: 'delete' }));
  t.equal(typeLevelDelete.statusCode, 400, 'mode=delete needs an instance');

  const notStored = await get('/fhir/Patient/none/$validate');
  t.equal(notStored.statusCode, 404, 'GET on an instance that does not exist');
});

t.test('every served type has $validate at both levels; malformed calls are 400', async (t) => {
  for (const [type, resource] of [
    ['Patient', fr.insPatient()],
    ['DocumentReference', fr.pdsmDocument()],
    ['Immunization', fr.immunization()],
    ['AllergyIntolerance', fr.allergy()],
    ['MedicationStatement', fr.medicationStatement()],
    ['Consent', fr.consent()],
    ['Practitioner', fr.practitioner()],
    ['Organization', fr.organization()],
  ] as const) {
    const typeLevel = await post(`/fhir/${type}/$validate`, resource);
    t.equal(typeLevel.statusCode, 200, `${type}/$validate`);
    t.same(errors(json(typeLevel)), [], `the ${type} fixture is valid`);
    const instance = await post(`/fhir/${type}/x1/$validate`, { ...resource, id: 'x1' });
    t.equal(instance.statusCode, 200, `${type}/x1/$validate`);
    t.same(errors(json(instance)), []);
  }
  const none = await post('/fhir/Patient/$validate', parameters({ name: 'mode', valueCode: 'create' }));
  t.equal(none.statusCode, 400, 'no resource to validate');
  t.equal(json(none).issue[0].code, 'required');
  t.equal((await get('/fhir/Patient/$validate')).statusCode, 400, 'GET at type level has nothing to validate');
  // Conformance types are stored types: $validate checks them as any other.
  const valueSet = await post('/fhir/ValueSet/$validate', { resourceType: 'ValueSet', status: 'draft' });
  t.equal(valueSet.statusCode, 200, 'ValueSet/$validate');
  t.same(errors(json(valueSet)), [], 'a draft ValueSet is valid');
  t.ok(errors(json(await post('/fhir/ValueSet/$validate', { resourceType: 'ValueSet' }))).length > 0, 'a ValueSet without status is not');
});
