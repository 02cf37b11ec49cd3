import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import * as fr from './helpers/validation-fixtures.ts';

// Bundle/$validate and system-level $validate (R4 resource-operations.html#validate), with the French
// default profiles, as deployed: a Bundle is checked as itself and each entry's resource as its own type.
const server = await startTestServer(t, { frenchProfiles: true });
const post = (url: string, body: unknown) => server.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });
const get = (url: string) => server.inject({ method: 'GET', url });
const parameters = (...parameter: unknown[]) => ({ resourceType: 'Parameters', parameter });

const errors = (outcome: any) => outcome.issue.filter((i: any) => i.severity === 'error');
const expressions = (issues: any[]) => issues.map((i: any) => i.expression?.[0]);
const DOSSIER_IMMUNIZATION = 'https://dossier.example.org/fhir/StructureDefinition/dossier-immunization';

const PATIENT_URL = 'urn:uuid:6a0e6f6e-0000-4000-8000-000000000001';
const PRACTITIONER_URL = 'urn:uuid:6a0e6f6e-0000-4000-8000-000000000002';
const COMPOSITION_URL = 'urn:uuid:6a0e6f6e-0000-4000-8000-000000000003';
const IMMUNIZATION_URL = 'urn:uuid:6a0e6f6e-0000-4000-8000-000000000004';

/** A transaction creating a patient, a practitioner and an immunization of the patient, valid under the French profiles. */
function transaction(): any {
  const immunization = fr.immunization();
  immunization.patient = { reference: PATIENT_URL };
  return {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { fullUrl: PATIENT_URL, resource: fr.insPatient(), request: { method: 'POST', url: 'Patient' } },
      { fullUrl: PRACTITIONER_URL, resource: fr.practitioner(), request: { method: 'POST', url: 'Practitioner' } },
      { fullUrl: IMMUNIZATION_URL, resource: immunization, request: { method: 'POST', url: 'Immunization' } },
    ],
  };
}

/** A document: a Composition first, then what it references. */
function document(): any {
  return {
    resourceType: 'Bundle',
    identifier: { system: 'urn:ietf:rfc:3986', value: 'urn:uuid:6a0e6f6e-0000-4000-8000-0000000000d0' },
    type: 'document',
    timestamp: '2025-11-03T10:00:00+01:00',
    entry: [
      {
        fullUrl: COMPOSITION_URL,
        resource: {
          resourceType: 'Composition',
          text: { status: 'generated', div: '<div xmlns="http://www.w3.org/1999/xhtml">Synthèse</div>' },
          status: 'final',
          type: { coding: [{ system: 'http://loinc.org', code: '60591-5' }] },
          subject: { reference: PATIENT_URL },
          date: '2025-11-03T10:00:00+01:00',
          author: [{ reference: PRACTITIONER_URL }],
          title: 'Synthèse médicale',
        },
      },
      { fullUrl: PATIENT_URL, resource: fr.insPatient() },
      { fullUrl: PRACTITIONER_URL, resource: fr.practitioner() },
    ],
  };
}

const countPatients = async () => json(await get('/fhir/Patient?_summary=count')).total as number;

t.test('a valid transaction Bundle: 200, no error, nothing written', async (t) => {
  const before = await countPatients();
  const res = await post('/fhir/Bundle/$validate', transaction());
  t.equal(res.statusCode, 200);
  t.equal(json(res).resourceType, 'OperationOutcome');
  t.same(errors(json(res)), []);
  const wrapped = await post('/fhir/Bundle/$validate', parameters({ name: 'resource', resource: transaction() }));
  t.same(json(wrapped), json(res), 'as the resource parameter of a Parameters: the same outcome');
  t.equal(await countPatients(), before, 'the transaction was not run');
});

t.test('an entry of the wrong shape: the error is at that entry, once, not once per R4 type', async (t) => {
  const bundle = transaction();
  bundle.entry[0].resource.birthDate = 19840712;
  const res = await post('/fhir/Bundle/$validate', bundle);
  t.equal(res.statusCode, 200, 'an invalid resource is an outcome, not a failed request');
  const found = errors(json(res));
  t.same(expressions(found), ['Bundle.entry[0].resource.birthDate']);
  t.match(found[0].diagnostics, /^Bundle\.entry\[0\]\.resource\.birthDate: /, 'the diagnostics name the entry too');

  const unknownType = transaction();
  unknownType.entry[1].resource = { resourceType: 'Praticien', name: [{ family: 'Durand' }] };
  t.same(expressions(errors(json(await post('/fhir/Bundle/$validate', unknownType)))), ['Bundle.entry[1].resource'], 'a resource type R4 does not define');

  const notAResource = transaction();
  notAResource.entry[2].resource = { status: 'completed' };
  const missingType = errors(json(await post('/fhir/Bundle/$validate', notAResource)));
  t.same(expressions(missingType), ['Bundle.entry[2].resource']);
  t.match(missingType[0].diagnostics, /resourceType/);
});

t.test("an entry breaking its profiles: the errors are at the entry, from the entry's own profiles", async (t) => {
  const wrongKey = transaction();
  wrongKey.entry[0].resource.identifier[0].value = '123456789012244';
  const keyErrors = errors(json(await post('/fhir/Bundle/$validate', wrongKey)));
  t.same(expressions(keyErrors), ['Bundle.entry[0].resource.identifier[0].value'], 'the INS-NIR key');

  // The dossier Immunization profile is the type's default: its lot-number rule warns unless claimed.
  const noLot = transaction();
  delete noLot.entry[2].resource.lotNumber;
  const byDefault = json(await post('/fhir/Bundle/$validate', noLot));
  t.same(errors(byDefault), [], 'applied as the default profile, the project rule only warns');
  t.ok(byDefault.issue.some((i: any) => i.severity === 'warning' && /dossier-imm-1/.test(i.diagnostics) && i.expression[0] === 'Bundle.entry[2].resource'), 'the default profile of the entry type applies');

  noLot.entry[2].resource.meta = { profile: [DOSSIER_IMMUNIZATION] };
  const claimed = errors(json(await post('/fhir/Bundle/$validate', noLot)));
  t.ok(claimed.length > 0, 'claimed, the profile holds');
  t.ok(claimed.every((i: any) => i.expression[0].startsWith('Bundle.entry[2].resource')), 'every error at the immunization entry');
  t.ok(claimed.some((i: any) => /dossier-imm-1/.test(i.diagnostics)));

  const unknownProfile = transaction();
  unknownProfile.entry[1].resource.meta = { profile: ['https://example.org/fhir/StructureDefinition/not-published'] };
  const warned = json(await post('/fhir/Bundle/$validate', unknownProfile));
  t.ok(warned.issue.some((i: any) => i.severity === 'warning' && i.code === 'not-supported' && i.expression[0] === 'Bundle.entry[1].resource.meta.profile[0]'), 'an unknown claimed profile, named at its entry');
});

t.test('a document Bundle: valid with its Composition first; bdl-11 without it', async (t) => {
  const valid = await post('/fhir/Bundle/$validate', document());
  t.equal(valid.statusCode, 200);
  t.same(errors(json(valid)), [], 'a Composition (a type checked against base R4) and the French entries');

  const noComposition = document();
  noComposition.entry.shift();
  const res = await post('/fhir/Bundle/$validate', noComposition);
  t.equal(res.statusCode, 200);
  const bdl11 = errors(json(res)).filter((i: any) => /bdl-11/.test(i.diagnostics));
  t.equal(bdl11.length, 1, 'A document must have a Composition as the first resource');
  t.same(bdl11[0].expression, ['Bundle']);

  const dangling = document();
  dangling.entry.pop();
  const unresolved = errors(json(await post('/fhir/Bundle/$validate', dangling)));
  t.same(expressions(unresolved), ['Bundle.entry[0].resource.author[0]'], 'a document holds what it references');

  const duplicate = document();
  duplicate.entry[2].fullUrl = PATIENT_URL;
  t.ok(errors(json(await post('/fhir/Bundle/$validate', duplicate))).some((i: any) => /bdl-7/.test(i.diagnostics)), 'fullUrls are unique (bdl-7)');
});

t.test('the other Bundle types: message, collection, batch', async (t) => {
  const message = { resourceType: 'Bundle', type: 'message', timestamp: '2025-11-03T10:00:00+01:00', entry: [{ fullUrl: PATIENT_URL, resource: fr.insPatient() }] };
  t.ok(errors(json(await post('/fhir/Bundle/$validate', message))).some((i: any) => /bdl-12/.test(i.diagnostics)), 'a message starts with a MessageHeader (bdl-12)');

  // An entry may hold only its resource.
  const collection = { resourceType: 'Bundle', type: 'collection', entry: [{ fullUrl: PATIENT_URL, resource: fr.insPatient() }, { resource: fr.practitioner() }] };
  const collected = json(await post('/fhir/Bundle/$validate', collection));
  t.same(errors(collected), []);
  const narrative = collected.issue.filter((i: any) => /dom-6/.test(i.diagnostics));
  t.same(expressions(narrative), ['Bundle.entry[0].resource', 'Bundle.entry[1].resource'], "each entry's warning once: the Bundle's own pass leaves its entries to theirs");

  const batch = { ...transaction(), type: 'batch' };
  delete batch.entry[1].request;
  t.ok(errors(json(await post('/fhir/Bundle/$validate', batch))).some((i: any) => /bdl-3/.test(i.diagnostics)), 'a batch entry without its request (bdl-3)');

  const nested = { ...collection, entry: [{ fullUrl: 'urn:uuid:6a0e6f6e-0000-4000-8000-0000000000b1', resource: { ...collection, entry: [{ fullUrl: PATIENT_URL, resource: { ...fr.insPatient(), gender: 'femme' } }] } }] };
  t.same(expressions(errors(json(await post('/fhir/Bundle/$validate', nested)))), ['Bundle.entry[0].resource.entry[0].resource.gender'], 'a Bundle in a Bundle, each entry at its place');
});

t.test('profile and mode on a Bundle', async (t) => {
  const unknown = await post('/fhir/Bundle/$validate', parameters({ name: 'resource', resource: transaction() }, { name: 'profile', valueCanonical: 'https://example.org/fhir/StructureDefinition/no-bundle' }));
  t.equal(unknown.statusCode, 200);
  t.same(errors(json(unknown)).map((i: any) => i.code), ['not-supported'], 'a nominated profile the server does not know is an error');

  const otherType = await post(`/fhir/Bundle/$validate?profile=${encodeURIComponent(fr.INS_PATIENT_PROFILE)}`, transaction());
  t.match(errors(json(otherType))[0].diagnostics, /is a profile of Patient, not Bundle/);

  const update = await post('/fhir/Bundle/$validate?mode=update', { ...transaction(), type: 'collection', entry: [{ fullUrl: PATIENT_URL, resource: fr.insPatient() }] });
  t.same(expressions(errors(json(update))), ['Bundle.id'], "mode=update needs the Bundle's id");
});

t.test('system level: a resource of any type, as the body or in Parameters', async (t) => {
  const patient = await post('/fhir/$validate', fr.insPatient());
  t.equal(patient.statusCode, 200);
  t.same(errors(json(patient)), []);
  t.ok(json(patient).issue.some((i: any) => i.severity === 'warning' && i.expression?.[0] === 'Patient'), "the Patient's own warnings (no narrative)");

  const wrapped = await post('/fhir/$validate', parameters({ name: 'resource', resource: fr.insPatient() }));
  t.same(json(wrapped), json(patient));

  const invalid = await post('/fhir/$validate', { ...fr.insPatient(), gender: 'femme' });
  t.same(expressions(errors(json(invalid))), ['Patient.gender']);

  const bundle = await post('/fhir/$validate', transaction());
  t.same(json(bundle), json(await post('/fhir/Bundle/$validate', transaction())), 'a Bundle is validated as at type level');

  const profiled = await post('/fhir/$validate', parameters({ name: 'resource', resource: { resourceType: 'Patient', name: [{ family: 'Martin' }] } }, { name: 'profile', valueCanonical: fr.INS_PATIENT_PROFILE }));
  t.ok(errors(json(profiled)).length > 0, 'a nominated profile applies at system level');

  const unknown = await post('/fhir/$validate', { resourceType: 'Praticien', name: [{ family: 'Durand' }] });
  t.equal(unknown.statusCode, 200, 'an unknown resourceType is the finding of the validation');
  const [unknownError, ...more] = errors(json(unknown));
  t.same(more, []);
  t.match(unknownError.diagnostics, /No R4 definition for resource type Praticien/);
});

t.test('malformed calls are 400 with an OperationOutcome', async (t) => {
  const cases: Array<[string, string, unknown, RegExp]> = [
    ['no resource', '/fhir/$validate', parameters({ name: 'mode', valueCode: 'create' }), /needs the resource to validate/],
    ['two resources', '/fhir/$validate', parameters({ name: 'resource', resource: fr.insPatient() }, { name: 'resource', resource: fr.practitioner() }), /more than once/],
    ['a resource parameter carrying a value', '/fhir/Bundle/$validate', parameters({ name: 'resource', valueString: '{}' }), /must carry a resource/],
    ['a resource parameter carrying no resourceType', '/fhir/$validate', parameters({ name: 'resource', resource: { name: [{ family: 'Martin' }] } }), /must carry a resource/],
    ['parameter not a list', '/fhir/$validate', { resourceType: 'Parameters', parameter: { name: 'resource' } }, /list of parameters/],
    ['a parameter without a name', '/fhir/Bundle/$validate', { resourceType: 'Parameters', parameter: [{ resource: transaction() }] }, /parameter\[0\] must be an object with a name/],
    ['a parameter that is not an object', '/fhir/$validate', { resourceType: 'Parameters', parameter: ['resource'] }, /parameter\[0\] must be an object with a name/],
    ['an unknown mode', '/fhir/$validate', parameters({ name: 'resource', resource: fr.insPatient() }, { name: 'mode', valueCode: 'replace' }), /create, update, delete/],
    ['mode=delete at system level', '/fhir/$validate', parameters({ name: 'mode', valueCode: 'delete' }), /instance/],
    ['a profile that is not a primitive', '/fhir/$validate', parameters({ name: 'resource', resource: fr.insPatient() }, { name: 'profile', valueCoding: { code: 'x' } }), /primitive/],
    ['a body that is not a resource', '/fhir/$validate', [fr.insPatient()], /Parameters resource/],
  ];
  for (const [what, url, body, diagnostics] of cases) {
    const res = await post(url, body);
    t.equal(res.statusCode, 400, what);
    t.equal(json(res).resourceType, 'OperationOutcome');
    t.match(json(res).issue[0].diagnostics, diagnostics, what);
  }
  t.equal((await get('/fhir/$validate')).statusCode, 400, 'GET at system level has nothing to validate');
});

t.test('type level stays limited to the types $validate is offered on', async (t) => {
  const unknownType = await post('/fhir/Praticien/$validate', fr.practitioner());
  t.equal(unknownType.statusCode, 404);
  t.match(json(unknownType).issue[0].diagnostics, /Resource type 'Praticien' is not served/);
  t.equal((await post('/fhir/Parameters/$validate', { resourceType: 'Parameters' })).statusCode, 404, 'nor Parameters, which has no endpoint');
  t.equal((await post('/fhir/Praticien/$expand', {})).statusCode, 404, 'another operation on an unknown type');
});

t.test('$validate of a PDSm ITI-65 bundle checks each resource once, against the profile that holds it', async (t) => {
  const { readFileSync } = await import('node:fs');
  const { StructureValidator } = await import('../src/fhir/validation/structure-validator.ts');
  const bundle = JSON.parse(readFileSync(new URL('./fixtures/pdsm/Bundle-example-td2-iti65-lot-soumission.json', import.meta.url), 'utf8'));
  const checks: string[] = [];
  const original = StructureValidator.prototype.validate;
  // Counts the profile checks, not a stand-in for them: the real validator runs underneath.
  StructureValidator.prototype.validate = function (this: InstanceType<typeof StructureValidator>, ...args: Parameters<typeof original>) {
    checks.push(`${args[0].resourceType} ${args[1].url}`);
    return original.apply(this, args);
  };
  t.teardown(() => {
    StructureValidator.prototype.validate = original;
  });
  const res = await server.inject({ method: 'POST', url: '/fhir/Bundle/$validate', payload: JSON.stringify(bundle), headers: { 'content-type': FHIR_JSON } });
  t.equal(res.statusCode, 200);
  t.same(json(res).issue.filter((i: any) => i.severity === 'error'), [], 'the example is valid');
  const PDSM = 'https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition';
  t.same(checks.sort(), [
    `Binary http://hl7.org/fhir/StructureDefinition/Binary`,
    `Bundle ${PDSM}/pdsm-comprehensive-provide-document-bundle`,
    `DocumentReference ${PDSM}/pdsm-comprehensive-document-reference`,
    `List ${PDSM}/pdsm-submissionset-comprehensive`,
  ], 'no resource is checked again against its base type: the PDSm profiles carry base R4 in their snapshots');
});

t.test("a transaction's claimed Bundle profile: its warnings come back in the entries' response.outcome", async (t) => {
  const UNKNOWN = 'https://example.org/fhir/StructureDefinition/unpublished-bundle';
  for (const type of ['transaction', 'batch']) {
    const bundle = transaction();
    bundle.type = type;
    bundle.meta = { profile: [UNKNOWN] };
    if (type === 'batch') bundle.entry = bundle.entry.slice(0, 2);
    const res = await post('/fhir', bundle);
    t.equal(res.statusCode, 200, `${type}: an unknown Bundle profile does not refuse it`);
    const [first, ...others] = json(res).entry;
    t.equal(first.response.status, '201 Created', `${type}: the first entry is written`);
    t.equal(first.resource?.resourceType, 'Patient', `${type}: and returned`);
    t.match(first.response.outcome?.issue, [{ severity: 'warning', code: 'not-supported', expression: ['Bundle.meta.profile[0]'] }],
      `${type}: the warning about the Bundle itself is at the first entry (R4 has no Bundle-level outcome)`);
    t.ok(others.every((entry: any) => entry.response.outcome === undefined), `${type}: no other entry repeats it`);
  }

  const plain = json(await post('/fhir', transaction()));
  t.ok(plain.entry.every((entry: any) => entry.response.outcome === undefined), 'no claimed profile: no outcome added');
});
