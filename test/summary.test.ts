import { readdirSync, readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import { narrativeProblems } from '../src/fhir/validation/narrative.ts';
import { createProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { isError } from '../src/fhir/validation/validator.ts';
import { IPS_BUNDLE_PROFILE } from '../src/operations/summary.ts';
import { FHIR_JSON, json, startTestServer, type TestServer } from './helpers/app.ts';
import { frenchTransaction, INS_SYSTEM, patientNir } from './helpers/french-bundles.ts';
import { syntheaBundles } from './helpers/synthea.ts';
import { ALL_ACCESS } from '../src/store/resource-store.ts';
import { practitioner } from './helpers/validation-fixtures.ts';

/**
 * Issue 19, items 1–4: `Patient/$summary`, the IPS document a GP reads first. Each answer is checked against
 * IPS 2.0.0 `Bundle-uv-ips` (and, through its slices, Composition-uv-ips, Patient-uv-ips…) by the server's own
 * validator, and its content against what the patient's data says should and should not be in it.
 */

type Json = Record<string, any>;

const LOINC = 'http://loinc.org';
const IPS_EXAMPLES = new URL('./fixtures/ips/', import.meta.url);
// The server's validator with only the profiles a resource claims or is nominated: the IPS ones here.
const validator = createProfileValidator({ defaultProfiles: 'none' });

function ipsErrors(bundle: unknown): string[] {
  return validator
    .check('Bundle', bundle, { profile: IPS_BUNDLE_PROFILE })
    .issues.filter(isError)
    .map((issue) => issue.diagnostics);
}

const sectionOf = (document: Json, code: string): Json | undefined => document.entry[0].resource.section.find((s: Json) => s.code.coding[0].code === code);
const sectionRefs = (document: Json, code: string): string[] => (sectionOf(document, code)?.entry ?? []).map((e: Json) => e.reference);
const everyDiv = (value: unknown, into: string[] = []): string[] => {
  if (Array.isArray(value)) for (const item of value) everyDiv(item, into);
  else if (value && typeof value === 'object') {
    for (const [key, child] of Object.entries(value)) {
      if (key === 'div' && typeof child === 'string') into.push(child);
      else everyDiv(child, into);
    }
  }
  return into;
};

/** The document's shape: a Composition first, each resource once, every section entry among the entries. */
function checkShape(t: Test, document: Json, what: string): void {
  t.equal(document.resourceType, 'Bundle', `${what}: a Bundle`);
  t.equal(document.type, 'document', `${what}: of type document`);
  t.ok(document.identifier?.value && document.timestamp, `${what}: with identifier and timestamp`);
  t.equal(document.entry[0].resource.resourceType, 'Composition', `${what}: the Composition first`);
  const keys = document.entry.map((e: Json) => `${e.resource.resourceType}/${e.resource.id}`);
  t.equal(new Set(keys).size, keys.length, `${what}: each resource once`);
  const fullUrls = document.entry.map((e: Json) => e.fullUrl);
  t.ok(fullUrls.every((url: unknown) => typeof url === 'string'), `${what}: every entry has a fullUrl`);
  const divs = everyDiv(document.entry[0].resource);
  t.ok(divs.length >= 4 && divs.every((d) => d.startsWith('<div xmlns="http://www.w3.org/1999/xhtml"')), `${what}: Composition and sections have XHTML narrative`);
  t.same(divs.flatMap(narrativeProblems), [], `${what}: the narrative holds only safe XHTML`);
}

async function postTransaction(t: Test, server: TestServer, bundle: unknown, what: string): Promise<Json> {
  const res = await server.inject({ method: 'POST', url: '/fhir', payload: JSON.stringify(bundle), headers: { 'content-type': FHIR_JSON } });
  t.equal(res.statusCode, 200, `${what}: the transaction succeeds`);
  if (res.statusCode !== 200) t.comment(res.body.slice(0, 3000));
  return json(res);
}

const idFrom = (location: string) => /([A-Za-z]+\/[^/]+)\/_history\//.exec(location)![1]!;

t.test('the IPS example bundles validate against Bundle-uv-ips; one missing a required section does not', async (t) => {
  const files = readdirSync(IPS_EXAMPLES).filter((file) => file.endsWith('.json'));
  t.equal(files.length, 5, 'the five IPS 2.0.0 example document Bundles');
  for (const file of files) {
    const bundle = JSON.parse(readFileSync(new URL(file, IPS_EXAMPLES), 'utf8'));
    t.same(ipsErrors(bundle), [], `${file}: 0 errors`);
  }
  const minimal = JSON.parse(readFileSync(new URL('Bundle-bundle-minimal.json', IPS_EXAMPLES), 'utf8'));
  const composition = minimal.entry[0].resource;
  composition.section = composition.section.filter((s: Json) => s.code.coding[0].code !== '48765-2');
  t.ok(
    ipsErrors(minimal).some((d) => d.includes('sectionAllergies')),
    'without its Allergies section the Composition breaks Composition-uv-ips, which the Bundle profile requires of it',
  );
});

t.test('the twenty Synthea patients: each summary validates against Bundle-uv-ips with 0 errors and holds what their data say', async (t) => {
  const server = await startTestServer(t);
  const bundles = syntheaBundles();
  t.equal(bundles.length, 20);
  for (const { name, bundle } of bundles) {
    const answer = await postTransaction(t, server, bundle, name);
    if (!answer.entry) continue;
    const assigned = new Map<string, string>(bundle.entry.map((entry, i) => [entry.fullUrl, idFrom(answer.entry[i].response.location)]));
    const patient = assigned.get(bundle.entry.find((e) => e.resource.resourceType === 'Patient')!.fullUrl)!;
    const res = await server.inject({ method: 'GET', url: `/fhir/${patient}/$summary` });
    t.equal(res.statusCode, 200, `${name}: $summary answers`);
    const document = json(res);
    checkShape(t, document, name);
    t.same(ipsErrors(document), [], `${name}: 0 errors against Bundle-uv-ips`);

    // Problems: exactly the active conditions; past illness: exactly the resolved ones.
    const conditions = bundle.entry.filter((e) => e.resource.resourceType === 'Condition');
    const status = (e: Json) => e.resource.clinicalStatus?.coding?.[0]?.code;
    const ids = (entries: Json[]) => entries.map((e) => assigned.get(e.fullUrl)!).sort();
    t.same(sectionRefs(document, '11450-4').sort(), ids(conditions.filter((e) => status(e) === 'active')), `${name}: the active conditions are the problems`);
    t.same(sectionRefs(document, '11348-0').sort(), ids(conditions.filter((e) => ['resolved', 'inactive', 'remission'].includes(status(e)))), `${name}: the resolved ones are past illness`);
    // Immunizations: all of them.
    t.same(sectionRefs(document, '11369-6').sort(), ids(bundle.entry.filter((e) => e.resource.resourceType === 'Immunization')), `${name}: every immunization`);
    // Results: one laboratory Observation per code, the newest.
    const lab = bundle.entry.filter((e) => e.resource.resourceType === 'Observation' && e.resource.category?.some((c: Json) => c.coding?.some((x: Json) => x.code === 'laboratory')));
    const newestDate = new Map<string, string>();
    for (const e of lab) {
      const code = e.resource.code.coding[0].code;
      if ((newestDate.get(code) ?? '') < e.resource.effectiveDateTime) newestDate.set(code, e.resource.effectiveDateTime);
    }
    const latest = lab.filter((e) => newestDate.get(e.resource.code.coding[0].code) === e.resource.effectiveDateTime);
    const results = sectionRefs(document, '30954-2').filter((r) => r.startsWith('Observation/'));
    t.same(results.sort(), ids(latest), `${name}: the newest laboratory results of each code (all of them when several share that instant)`);
    // Required sections are there, with entries or an emptyReason.
    for (const code of ['48765-2', '10160-0', '11450-4']) {
      const section = sectionOf(document, code);
      t.ok(section && ((section.entry?.length ?? 0) > 0) !== (section.emptyReason !== undefined), `${name}: required section ${code}, with entries or an emptyReason`);
    }
  }
});

/** A French patient's record as sources push it: INS, allergies, treatments, vaccinations, documents, and what must stay out. */
function frenchRecord(): { bundle: Json; marks: Record<string, string> } {
  const bundle = frenchTransaction(7, { clinical: 10, family: 'Lefèvre' });
  const patientEntry = bundle.entry[0];
  patientEntry.resource.contact = [
    { relationship: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0131', code: 'C', display: 'Emergency Contact' }] }], name: { family: 'Lefèvre', given: ['Paul'] }, telecom: [{ system: 'phone', value: '+33 6 12 34 56 78' }] },
  ];
  const patientUrn = patientEntry.fullUrl;
  const byType = (type: string) => bundle.entry.filter((e: Json) => e.resource.resourceType === type);
  const marks: Record<string, string> = {};
  const mark = (entry: Json, name: string) => (marks[entry.fullUrl] = name);

  const practitionerUrn = 'urn:uuid:11111111-0000-4000-8000-000000000001';
  bundle.entry.push({ fullUrl: practitionerUrn, resource: practitioner(), request: { method: 'POST', url: 'Practitioner' } });

  const [allergy] = byType('AllergyIntolerance');
  allergy.resource.code = { coding: [{ system: 'http://snomed.info/sct', code: '91936005', display: 'Allergie à la pénicilline <script>alert("x")</script>' }] };
  mark(allergy, 'active allergy');
  const erroneousAllergy = structuredClone(allergy);
  erroneousAllergy.fullUrl = 'urn:uuid:11111111-0000-4000-8000-000000000002';
  erroneousAllergy.resource.verificationStatus.coding[0].code = 'entered-in-error';
  delete erroneousAllergy.resource.clinicalStatus; // ait-2: an entered-in-error allergy has none
  erroneousAllergy.resource.code = { text: 'Allergie au latex (saisie erronée)' };
  bundle.entry.push(erroneousAllergy);
  mark(erroneousAllergy, 'entered-in-error allergy');

  const [medication, stoppedMedication] = byType('MedicationStatement');
  medication.resource.dosage = [{ text: '1 comprimé 3 fois par jour' }];
  mark(medication, 'current treatment');
  stoppedMedication.resource.status = 'entered-in-error';
  stoppedMedication.resource.medicationCodeableConcept = { text: 'Amoxicilline (saisie erronée)' };
  mark(stoppedMedication, 'entered-in-error treatment');

  const immunizations = byType('Immunization');
  immunizations.slice(0, 4).forEach((entry: Json) => mark(entry, 'vaccination'));
  immunizations[4].resource.status = 'entered-in-error';
  mark(immunizations[4], 'entered-in-error vaccination');

  const [document, maskedDocument] = byType('DocumentReference');
  document.resource.author = [{ reference: practitionerUrn }];
  document.resource.date = '2026-02-01T10:00:00+01:00';
  mark(document, 'document');
  maskedDocument.resource.meta = { security: [{ system: 'https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument', code: 'MASQUE_PS' }] };
  mark(maskedDocument, 'masked document');
  const erroneousDocument = structuredClone(document);
  erroneousDocument.fullUrl = 'urn:uuid:11111111-0000-4000-8000-000000000003';
  erroneousDocument.resource.status = 'entered-in-error';
  erroneousDocument.resource.masterIdentifier = { system: 'urn:ietf:rfc:3986', value: 'urn:oid:1.2.250.1.999.1.7.99' };
  bundle.entry.push(erroneousDocument);
  mark(erroneousDocument, 'entered-in-error document');

  const condition = (fullUrl: string, code: string, display: string, clinical: string, verification = 'confirmed') => ({
    fullUrl,
    resource: {
      resourceType: 'Condition',
      // con-5: an entered-in-error condition has no clinical status.
      ...(verification === 'entered-in-error' ? {} : { clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: clinical }] } }),
      verificationStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-ver-status', code: verification }] },
      code: { coding: [{ system: 'http://snomed.info/sct', code, display }] },
      subject: { reference: patientUrn },
      onsetDateTime: '2019-05-01',
    },
    request: { method: 'POST', url: 'Condition' },
  });
  const hypertension = condition('urn:uuid:11111111-0000-4000-8000-000000000004', '38341003', 'Hypertension artérielle', 'active');
  const diabetes = condition('urn:uuid:11111111-0000-4000-8000-000000000005', '44054006', 'Diabète de type 2', 'active', 'entered-in-error');
  const appendicitis = condition('urn:uuid:11111111-0000-4000-8000-000000000006', '74400008', 'Appendicite', 'resolved');
  bundle.entry.push(hypertension, diabetes, appendicitis);
  mark(hypertension, 'active problem');
  mark(diabetes, 'entered-in-error problem');
  mark(appendicitis, 'past illness');

  const creatinine = (fullUrl: string, date: string, value: number) => ({
    fullUrl,
    resource: {
      resourceType: 'Observation',
      status: 'final',
      category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }],
      code: { coding: [{ system: LOINC, code: '2160-0', display: 'Créatinine [Masse/Volume] Sérum/Plasma' }] },
      subject: { reference: patientUrn },
      effectiveDateTime: date,
      valueQuantity: { value, unit: 'mg/dL', system: 'http://unitsofmeasure.org', code: 'mg/dL' },
    },
    request: { method: 'POST', url: 'Observation' },
  });
  const oldCreatinine = creatinine('urn:uuid:11111111-0000-4000-8000-000000000007', '2024-03-01', 0.9);
  const newCreatinine = creatinine('urn:uuid:11111111-0000-4000-8000-000000000008', '2026-01-20', 1.1);
  bundle.entry.push(oldCreatinine, newCreatinine);
  mark(oldCreatinine, 'older result');
  mark(newCreatinine, 'latest result');

  const observation = (fullUrl: string, code: string, display: string, rest: Json) => ({
    fullUrl,
    resource: { resourceType: 'Observation', status: 'final', code: { coding: [{ system: LOINC, code, display }] }, subject: { reference: patientUrn }, effectiveDateTime: '2026-02-03', ...rest },
    request: { method: 'POST', url: 'Observation' },
  });
  const category = (code: string) => [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code }] }];
  const heartRate = observation('urn:uuid:11111111-0000-4000-8000-000000000010', '8867-4', 'Fréquence cardiaque', {
    category: category('vital-signs'),
    valueQuantity: { value: 72, unit: '/min', system: 'http://unitsofmeasure.org', code: '/min' },
  });
  // A pregnancy status says what it is by its code, in no category.
  const pregnancy = observation('urn:uuid:11111111-0000-4000-8000-000000000011', '82810-3', 'Pregnancy status', {
    valueCodeableConcept: { coding: [{ system: 'http://snomed.info/sct', code: '60001007', display: 'Not pregnant' }] },
  });
  const exam = observation('urn:uuid:11111111-0000-4000-8000-000000000012', '8302-2', 'Taille', {
    category: category('exam'),
    valueQuantity: { value: 168, unit: 'cm', system: 'http://unitsofmeasure.org', code: 'cm' },
  });
  bundle.entry.push(heartRate, pregnancy, exam);
  mark(heartRate, 'vital sign');
  mark(pregnancy, 'pregnancy status');
  mark(exam, 'observation no section shows');

  const relatedPerson = {
    fullUrl: 'urn:uuid:11111111-0000-4000-8000-000000000009',
    resource: {
      resourceType: 'RelatedPerson',
      active: true,
      patient: { reference: patientUrn },
      relationship: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-RoleCode', code: 'DAU', display: 'fille' }] }],
      name: [{ family: 'Lefèvre', given: ['Claire'] }],
      telecom: [{ system: 'phone', value: '+33 6 98 76 54 32' }],
    },
    request: { method: 'POST', url: 'RelatedPerson' },
  };
  bundle.entry.push(relatedPerson);
  mark(relatedPerson, 'emergency contact');
  return { bundle, marks };
}

t.test('a French patient by INS: selected, escaped, in French or English, valid IPS', async (t) => {
  const server = await startTestServer(t, { frenchProfiles: true });
  const { bundle, marks } = frenchRecord();
  const answer = await postTransaction(t, server, bundle, 'the French record');
  t.equal(answer.entry.filter((e: Json) => !e.response.status.startsWith('201')).length, 0, 'every entry is created');
  const reference = new Map<string, string>(bundle.entry.map((entry: Json, i: number) => [marks[entry.fullUrl] ? entry.fullUrl : entry.fullUrl, idFrom(answer.entry[i].response.location)]));
  const referencesMarked = (name: string) => Object.entries(marks).filter(([, mark]) => mark === name).map(([fullUrl]) => reference.get(fullUrl)!);
  const ins = patientNir(7);

  // Asked by a professional who neither wrote the masked document nor is the médecin traitant: the store hides it (consent-scope.ts).
  const professional = `Bearer ${await server.token({ scope: 'openid fhirUser user/*.rs', fhirUser: 'Practitioner/another-professional' })}`;
  const res = await server.inject({ method: 'GET', url: `/fhir/Patient/$summary?identifier=${encodeURIComponent(`${INS_SYSTEM}|${ins}`)}`, headers: { authorization: professional } });
  t.equal(res.statusCode, 200, 'type level, by INS');
  const document = json(res);
  checkShape(t, document, 'French patient');
  t.same(ipsErrors(document), [], '0 errors against Bundle-uv-ips');
  const validated = await server.inject({ method: 'POST', url: `/fhir/Bundle/$validate?profile=${encodeURIComponent(IPS_BUNDLE_PROFILE)}`, payload: JSON.stringify(document), headers: { 'content-type': FHIR_JSON } });
  t.same(json(validated).issue.filter(isError).map((i: Json) => i.diagnostics), [], 'and through the server\'s own $validate, French profiles applied to its entries too');
  const included = new Set(document.entry.map((e: Json) => `${e.resource.resourceType}/${e.resource.id}`));

  for (const [fullUrl, name] of Object.entries(marks)) {
    const shouldBe = !/entered-in-error|masked|older|no section/.test(name);
    t.equal(included.has(reference.get(fullUrl)!), shouldBe, `the ${name} is ${shouldBe ? '' : 'not '}in the document`);
  }
  t.same(sectionRefs(document, '48765-2'), referencesMarked('active allergy'), 'allergies: the active one');
  t.same(sectionRefs(document, '10160-0'), referencesMarked('current treatment'), 'medications: the current one');
  t.same(sectionRefs(document, '11450-4'), referencesMarked('active problem'), 'problems: the active one');
  t.same(sectionRefs(document, '11348-0'), referencesMarked('past illness'), 'past illness: the resolved one');
  t.same(sectionRefs(document, '11369-6').sort(), referencesMarked('vaccination').sort(), 'immunizations: all but the erroneous one');
  t.same(sectionRefs(document, '30954-2'), referencesMarked('latest result'), 'results: the latest creatinine only');
  t.same(sectionRefs(document, '8716-3'), referencesMarked('vital sign'), 'vital signs: the heart rate');
  t.same(sectionRefs(document, '10162-6'), referencesMarked('pregnancy status'), 'pregnancy: the status, found by its code');
  t.same(sectionRefs(document, '11503-0'), referencesMarked('document'), 'recent documents: neither the masked nor the erroneous one');
  t.same(sectionRefs(document, '55188-7'), referencesMarked('emergency contact'), 'emergency contacts: the RelatedPerson');
  t.ok(included.has(reference.get('urn:uuid:11111111-0000-4000-8000-000000000001')), "the document's author is included");

  const composition = document.entry[0].resource;
  t.equal(composition.type.coding[0].code, '60591-5');
  t.equal(composition.subject.reference, reference.get(bundle.entry[0].fullUrl));
  t.match(composition.title, /^Synthèse médicale de Marie LEFÈVRE/, 'title in French');
  const allergies = sectionOf(document, '48765-2')!.text.div as string;
  t.notMatch(allergies, /<script/, 'a display holding <script> is not markup');
  t.match(allergies, /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt;/, 'it is escaped text');
  t.match(allergies, /Allergie à la pénicilline .*\(SNOMED CT 91936005\)/, 'the code with its display');
  t.match(sectionOf(document, '10160-0')!.text.div, /1 comprimé 3 fois par jour/, 'the dose');
  t.match(sectionOf(document, '30954-2')!.text.div, /20\/01\/2026.*1\.1 mg\/dL|1\.1 mg\/dL.*20\/01\/2026/, 'the latest value with its date, French style');
  t.match(sectionOf(document, '11503-0')!.text.div, /Jeanne DURAND/, "the document's author by name");
  const contacts = sectionOf(document, '55188-7')!.text.div as string;
  t.match(contacts, /Paul LEFÈVRE.*\+33 6 12 34 56 78/, 'Patient.contact is shown');
  t.match(contacts, /Claire LEFÈVRE/, 'and the RelatedPerson');
  t.match(composition.text.div, /INS-NIR/, 'the INS named as such');
  t.match(sectionOf(document, '11450-4')!.text.div, /Hypertension artérielle \(SNOMED CT 38341003\)<\/td><td>actif, confirmé/, 'statuses in French');

  const english = json(await server.inject({ method: 'GET', url: `/fhir/${reference.get(bundle.entry[0].fullUrl)}/$summary?language=en` }));
  t.match(english.entry[0].resource.title, /^Patient summary of/, 'English on request');
  t.equal(sectionOf(english, '48765-2')!.title, 'Allergies and intolerances');
  t.match(sectionOf(english, '30954-2')!.text.div, /2026-01-20/, 'dates written the English way');
  t.match(sectionOf(english, '11450-4')!.text.div, /<td>active, confirmed<\/td>/, 'statuses in English');
  t.same(ipsErrors(english), [], 'the English one validates too');

  const posted = await server.inject({
    method: 'POST',
    url: '/fhir/Patient/$summary',
    payload: JSON.stringify({ resourceType: 'Parameters', parameter: [{ name: 'identifier', valueString: `${INS_SYSTEM}|${ins}` }] }),
    headers: { 'content-type': FHIR_JSON },
  });
  t.equal(posted.statusCode, 200, 'POST with Parameters');
  t.equal(json(posted).entry[1].resource.id, document.entry[1].resource.id, 'the same patient');
});

t.test('a patient with nothing recorded: required and recommended sections say so; "no known" statements count as data', async (t) => {
  const server = await startTestServer(t);
  const created = await server.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Vide', given: ['Jean'] }], birthDate: '1970-01-01' }), headers: { 'content-type': FHIR_JSON } });
  const patient = `Patient/${json(created).id}`;
  const empty = json(await server.inject({ method: 'GET', url: `/fhir/${patient}/$summary` }));
  const codes = empty.entry[0].resource.section.map((s: Json) => s.code.coding[0].code);
  t.same(codes, ['48765-2', '10160-0', '11450-4', '11369-6', '47519-4', '46264-8', '30954-2'], 'required and recommended sections only');
  for (const section of empty.entry[0].resource.section) {
    t.equal(section.emptyReason?.coding?.[0]?.code, 'unavailable', `${section.title}: emptyReason`);
    t.notOk(section.entry, `${section.title}: no entry`);
  }
  t.same(empty.entry.map((e: Json) => e.resource.resourceType), ['Composition', 'Patient', 'Device'], 'the patient and the authoring Device');
  t.same(ipsErrors(empty), [], 'valid IPS');

  const noKnownAllergy = {
    resourceType: 'AllergyIntolerance',
    clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] },
    code: { coding: [{ system: 'http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips', code: 'no-known-allergies', display: 'No known allergies' }] },
    patient: { reference: patient },
  };
  const stored = json(await server.inject({ method: 'POST', url: '/fhir/AllergyIntolerance', payload: JSON.stringify(noKnownAllergy), headers: { 'content-type': FHIR_JSON } }));
  const known = json(await server.inject({ method: 'GET', url: `/fhir/${patient}/$summary` }));
  const allergies = sectionOf(known, '48765-2')!;
  t.same(allergies.entry, [{ reference: `AllergyIntolerance/${stored.id}` }], '"no known allergies" is the section entry');
  t.notOk(allergies.emptyReason, 'and no emptyReason');
  t.match(allergies.text.div, /No known allergies \(IPS no-known-allergies\)/);
  t.same(ipsErrors(known), [], 'valid IPS');
});

t.test('$summary refuses what it cannot answer', async (t) => {
  const server = await startTestServer(t);
  const get = (url: string) => server.inject({ method: 'GET', url });
  const twin = { resourceType: 'Patient', identifier: [{ system: INS_SYSTEM, value: patientNir(1) }] };
  for (let i = 0; i < 2; i++) await server.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify(twin), headers: { 'content-type': FHIR_JSON } });
  const one = json(await server.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify({ resourceType: 'Patient' }), headers: { 'content-type': FHIR_JSON } }));

  const cases: Array<[string, number, RegExp]> = [
    ['/fhir/Patient/$summary', 400, /identifier/],
    [`/fhir/Patient/$summary?identifier=${encodeURIComponent(`${INS_SYSTEM}|${patientNir(2)}`)}`, 404, /No patient/],
    [`/fhir/Patient/$summary?identifier=${encodeURIComponent(`${INS_SYSTEM}|${patientNir(1)}`)}`, 422, /Several patients/],
    ['/fhir/Patient/unknown/$summary', 404, /./],
    [`/fhir/Patient/${one.id}/$summary?language=de`, 400, /fr or en/],
    [`/fhir/Patient/${one.id}/$summary?profile=http://example.org/StructureDefinition/other`, 400, /not supported/],
    [`/fhir/Patient/${one.id}/$summary?identifier=x|y`, 400, /type level/],
    [`/fhir/Observation/${one.id}/$summary`, 404, /not available on Observation/],
  ];
  for (const [url, status, diagnostics] of cases) {
    const res = await get(url);
    t.equal(res.statusCode, status, `${url}: ${status}`);
    t.equal(json(res).resourceType, 'OperationOutcome');
    t.match(json(res).issue[0].diagnostics, diagnostics);
  }
  t.equal((await get(`/fhir/Patient/${one.id}/$summary?profile=${encodeURIComponent('http://hl7.org/fhir/uv/ips/StructureDefinition/Composition-uv-ips|2.0.0')}`)).statusCode, 200, 'the IPS Composition profile, versioned, is what it makes');
});

t.test("the summary reads through the caller's access context: a hidden patient is unknown, hidden resources are not followed", async (t) => {
  const HIDE = 'x-test-hidden-patient';
  const server = await startTestServer(t, {
    accessOf: (request) => {
      const hidden = request.headers[HIDE];
      return typeof hidden === 'string' ? { ...ALL_ACCESS, hiddenCompartments: [{ type: 'Patient', id: hidden }] } : ALL_ACCESS;
    },
  });
  const put = async (resource: Json) => {
    const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, payload: JSON.stringify(resource), headers: { 'content-type': FHIR_JSON } });
    t.ok(res.statusCode < 300, `PUT ${resource.resourceType}/${resource.id}`);
  };
  await put({ resourceType: 'Patient', id: 'pat-b', identifier: [{ system: 'urn:test:mrn', value: 'b-1' }], name: [{ family: 'Bravo' }] });
  await put({ resourceType: 'RelatedPerson', id: 'rel-b', patient: { reference: 'Patient/pat-b' }, name: [{ family: 'Bravo' }] });
  await put({ resourceType: 'Patient', id: 'pat-a', name: [{ family: 'Alpha' }] });
  // Asserted by someone in B's compartment: A's allergy is A's alone, the RelatedPerson is B's.
  await put({ resourceType: 'AllergyIntolerance', id: 'alg-a', patient: { reference: 'Patient/pat-a' }, asserter: { reference: 'RelatedPerson/rel-b' }, code: { text: 'arachide' }, clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical', code: 'active' }] } });

  const summary = (url: string, hide?: string) => server.inject({ method: 'GET', url, headers: hide ? { [HIDE]: hide } : {} });
  t.equal((await summary('/fhir/Patient/pat-b/$summary')).statusCode, 200, 'with all access, B has a summary');
  t.equal((await summary('/fhir/Patient/pat-b/$summary', 'pat-b')).statusCode, 404, 'B hidden: unknown by id');
  t.equal((await summary('/fhir/Patient/$summary?identifier=urn:test:mrn|b-1', 'pat-b')).statusCode, 404, 'and by identifier');
  const types = async (hide?: string) => json(await summary('/fhir/Patient/pat-a/$summary', hide)).entry.map((e: Json) => `${e.resource.resourceType}/${e.resource.id}`);
  t.ok((await types()).includes('RelatedPerson/rel-b'), "A's summary includes who asserted A's allergy");
  const withBHidden = await types('pat-b');
  t.notOk(withBHidden.includes('RelatedPerson/rel-b'), "not when B's compartment is hidden from the caller");
  t.ok(withBHidden.includes('AllergyIntolerance/alg-a'), "A's own data is still there");
});

t.test('a record larger than one search page is read whole', async (t) => {
  const server = await startTestServer(t);
  const patient = json(await server.inject({ method: 'POST', url: '/fhir/Patient', payload: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Vaccinée' }] }), headers: { 'content-type': FHIR_JSON } }));
  const immunization = (n: number) => ({
    resource: { resourceType: 'Immunization', status: 'completed', patient: { reference: `Patient/${patient.id}` }, vaccineCode: { text: `vaccin ${n}` }, occurrenceDateTime: `20${String(n % 25).padStart(2, '0')}-01-01` },
    request: { method: 'POST', url: 'Immunization' },
  });
  const total = 1_003; // more than MAX_PAGE_SIZE (1,000), the largest page the summary asks for
  for (let start = 0; start < total; start += 500) {
    const entry = Array.from({ length: Math.min(500, total - start) }, (_, i) => immunization(start + i));
    await postTransaction(t, server, { resourceType: 'Bundle', type: 'transaction', entry }, `immunizations from ${start}`);
  }
  const document = json(await server.inject({ method: 'GET', url: `/fhir/Patient/${patient.id}/$summary` }));
  const refs = sectionRefs(document, '11369-6');
  t.equal(refs.length, total, 'every immunization');
  t.equal(new Set(refs).size, total, 'each once');
});

t.test('the document holds what its entries reference and what that references in turn, to the end of the chain', async (t) => {
  const server = await startTestServer(t);
  const put = async (resource: Json) => {
    const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, payload: JSON.stringify(resource), headers: { 'content-type': FHIR_JSON } });
    t.ok(res.statusCode < 300, `PUT ${resource.resourceType}/${resource.id}`);
  };
  // Immunization → Practitioner (qualification issuer) → Organization → its parent Organization; the
  // Location and the parent reference nothing.
  await put({ resourceType: 'Organization', id: 'org-parent', name: 'GHT Sud' });
  await put({ resourceType: 'Organization', id: 'org-child', name: 'CH de Sète', partOf: { reference: 'Organization/org-parent' } });
  await put({ resourceType: 'Practitioner', id: 'pra-1', name: [{ family: 'Martin' }], qualification: [{ code: { text: 'médecin' }, issuer: { reference: 'Organization/org-child' } }] });
  await put({ resourceType: 'Location', id: 'loc-1', name: 'Salle 2' });
  await put({ resourceType: 'Patient', id: 'pat-chain', name: [{ family: 'Chaîne' }] });
  await put({
    resourceType: 'Immunization', id: 'imm-1', status: 'completed', patient: { reference: 'Patient/pat-chain' }, vaccineCode: { text: 'DTP' }, occurrenceDateTime: '2024-01-01',
    performer: [{ actor: { reference: 'Practitioner/pra-1' } }], location: { reference: 'Location/loc-1' },
  });
  const document = json(await server.inject({ method: 'GET', url: '/fhir/Patient/pat-chain/$summary' }));
  const included = document.entry.slice(1, -1).map((e: Json) => `${e.resource.resourceType}/${e.resource.id}`);
  t.same(included, ['Patient/pat-chain', 'Immunization/imm-1', 'Practitioner/pra-1', 'Location/loc-1', 'Organization/org-child', 'Organization/org-parent'], 'each once, in the order first referenced');
});
