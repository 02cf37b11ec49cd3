// Number (R4 search.html#number: precision of the value as written, spec: value=100 is [99.5, 100.5),
// value=100.00 is [99.995, 100.005)), quantity (#quantity, spec: value-quantity=5.4|http://unitsofmeasure.org|mg,
// 5.4||mg, le5.4|…, ap5.4|…), uri with :below / :above (#uri, spec: url:below=http://acme.org/fhir/,
// url:above=http://acme.org/fhir/ValueSet/123/_history/5) and composite (#composite, `$` between components).
// The number and quantity parameters are the project's own: Immunization dose-number and
// MedicationStatement dose-quantity (src/search/definitions).
import t from 'tap';
import { startTestServer } from './helpers/app.ts';
import { q, searchClient } from './helpers/search-client.ts';

const server = await startTestServer(t);
const api = searchClient(server);

const UCUM = 'http://unitsofmeasure.org';
const FR_PATIENT = 'http://interopsante.org/fhir/StructureDefinition/FrPatient';
const INS_IG = 'https://interop.esante.gouv.fr/ig/fhir/ins';
const FR_PATIENT_INS = `${INS_IG}/StructureDefinition/FrPatientINS`;
const RELATION = 'http://hl7.org/fhir/document-relationship-type';

const dose = (id: string, doseNumber?: number) => ({
  resourceType: 'Immunization',
  id,
  status: 'completed',
  vaccineCode: { coding: [{ system: 'http://phast.fr/fhir/CodeSystem/ucd', code: '9416553', display: 'Infanrix Hexa' }] },
  patient: { reference: 'Patient/lucas' },
  occurrenceDateTime: '2013-03-14',
  ...(doseNumber === undefined ? {} : { protocolApplied: [{ series: 'Primovaccination', doseNumberPositiveInt: doseNumber }] }),
});
const medication = (id: string, text: string, quantity: Record<string, unknown>) => ({
  resourceType: 'MedicationStatement',
  id,
  status: 'active',
  medicationCodeableConcept: { text },
  subject: { reference: 'Patient/helene' },
  dosage: [{ text, doseAndRate: [{ doseQuantity: quantity }] }],
});
const document = (id: string, relatesTo: Array<{ code: string; target: string }> = []) => ({
  resourceType: 'DocumentReference',
  id,
  status: 'current',
  subject: { reference: 'Patient/helene' },
  ...(relatesTo.length > 0 ? { relatesTo: relatesTo.map((r) => ({ code: r.code, target: { reference: r.target } })) } : {}),
  content: [{ attachment: { contentType: 'application/pdf', url: `https://dmp.example.fr/docs/${id}.pdf` } }],
});

await api.putAll([
  dose('dose-1', 1),
  dose('dose-2', 2),
  dose('dose-3', 3),
  dose('rappel-10', 10),
  dose('sans-rang'),
  medication('paracetamol-1000', 'Doliprane 1000 mg', { value: 1000, unit: 'mg', system: UCUM, code: 'mg' }),
  medication('paracetamol-500', 'Doliprane 500 mg', { value: 500, unit: 'mg', system: UCUM, code: 'mg' }),
  medication('levothyrox', 'Lévothyrox 50 µg', { value: 50, unit: 'µg', system: UCUM, code: 'ug' }),
  medication('amoxicilline', 'Amoxicilline 1 g', { value: 1, unit: 'g', system: UCUM, code: 'g' }),
  medication('gouttes', 'Toplexil 20 gouttes', { value: 20, unit: 'gouttes' }),
  medication('fraction', 'Kardégic 0,075 g', { value: 0.075, unit: 'g', system: UCUM, code: 'g' }),
  { resourceType: 'Patient', id: 'fr-patient', meta: { profile: [FR_PATIENT] }, name: [{ family: 'Martin' }] },
  { resourceType: 'Patient', id: 'ins', meta: { profile: [FR_PATIENT_INS] }, name: [{ family: 'Lefèvre' }] },
  { resourceType: 'Patient', id: 'ins-et-fr', meta: { profile: [FR_PATIENT, FR_PATIENT_INS] }, name: [{ family: 'Roux' }] },
  { resourceType: 'Patient', id: 'souligne', meta: { profile: ['https://ex.example.fr/a_b'] }, name: [{ family: 'Blanc' }] },
  { resourceType: 'Patient', id: 'sans-profil', name: [{ family: 'Noir' }] },
  document('cr-v1'),
  document('cr-v2', [{ code: 'replaces', target: 'DocumentReference/cr-v1' }]),
  document('annexe', [{ code: 'appends', target: 'DocumentReference/cr-v1' }]),
  document('cr-v3', [{ code: 'replaces', target: 'DocumentReference/cr-v2' }, { code: 'appends', target: 'DocumentReference/annexe' }]),
]);

const doses = (query: string) => api.ids(`/fhir/Immunization?${query}`);
const medications = (query: string) => api.ids(`/fhir/MedicationStatement?${query}`);

t.test('number: eq at the precision written, and every prefix', async (t) => {
  t.same(await doses('dose-number=2'), ['dose-2']);
  t.same(await doses('dose-number=2.0'), ['dose-2'], '[1.95, 2.05)');
  t.same(await doses('dose-number=2.4'), [], '[2.35, 2.45) does not hold 2');
  t.same(await doses('dose-number=1e1'), ['rappel-10'], 'exponent notation');
  t.same(await doses('dose-number=gt2'), ['dose-3', 'rappel-10']);
  t.same(await doses('dose-number=lt3'), ['dose-1', 'dose-2']);
  t.same(await doses('dose-number=ge3'), ['dose-3', 'rappel-10']);
  t.same(await doses('dose-number=le1'), ['dose-1']);
  t.same(await doses('dose-number=ne2'), ['dose-1', 'dose-3', 'rappel-10'], 'no value: no match');
  t.same(await doses('dose-number=ap10'), ['rappel-10'], '±10%');
  t.same(await doses('dose-number=sa2'), ['dose-3', 'rappel-10']);
  t.same(await doses('dose-number=eb2'), ['dose-1']);
  t.same(await doses('dose-number=1,3'), ['dose-1', 'dose-3']);
  t.same(await doses('dose-number=ge2&dose-number=le3'), ['dose-2', 'dose-3']);
  t.same(await doses('dose-number:missing=true'), ['sans-rang']);
  for (const value of ['deux', 'gt', '2,x', '1e', 'gt+']) {
    const res = await api.get(`/fhir/Immunization?${q('dose-number', value)}`);
    t.equal(res.status, 400, value);
    t.same(res.body.issue[0].expression, ['dose-number'], value);
  }
});

t.test('quantity: number|system|code, number||code (code or unit), number alone, prefixes', async (t) => {
  t.same(await medications(q('dose-quantity', `500|${UCUM}|mg`)), ['paracetamol-500']);
  t.same(await medications(q('dose-quantity', '500||mg')), ['paracetamol-500']);
  t.same(await medications('dose-quantity=500'), ['paracetamol-500']);
  t.same(await medications(q('dose-quantity', `le500|${UCUM}|mg`)), ['paracetamol-500']);
  t.same(await medications(q('dose-quantity', `ge500|${UCUM}|mg`)), ['paracetamol-1000', 'paracetamol-500']);
  t.same(await medications(q('dose-quantity', 'lt1000||mg')), ['paracetamol-500']);
  t.same(await medications(q('dose-quantity', 'ap1050||mg')), ['paracetamol-1000'], '±10%');
  t.same(await medications(q('dose-quantity', '50||µg')), ['levothyrox'], 'matched on the unit as displayed');
  t.same(await medications(q('dose-quantity', `50|${UCUM}|ug`)), ['levothyrox']);
  t.same(await medications(q('dose-quantity', '20||gouttes')), ['gouttes'], 'a unit without system or code');
  t.same(await medications(q('dose-quantity', `0.075|${UCUM}|g`)), ['fraction']);
  t.same(await medications(q('dose-quantity', `lt1|${UCUM}|g`)), ['fraction']);
  t.same(await medications(q('dose-quantity', `1|${UCUM}|mg`)), [], 'no unit conversion: 1 mg is not 1 g');
  t.same(await medications(q('dose-quantity', `500|http://snomed.info/sct|mg`)), [], 'the system counts');
  const res = await api.get(`/fhir/MedicationStatement?${q('dose-quantity', `cinq|${UCUM}|mg`)}`);
  t.equal(res.status, 400);
  t.same(res.body.issue[0].expression, ['dose-quantity']);
});

t.test('uri: exact, :below, :above (_profile)', async (t) => {
  t.same(await api.ids(`/fhir/Patient?${q('_profile', FR_PATIENT_INS)}`), ['ins', 'ins-et-fr']);
  t.same(await api.ids(`/fhir/Patient?${q('_profile', FR_PATIENT)}`), ['fr-patient', 'ins-et-fr']);
  t.same(await api.ids(`/fhir/Patient?${q('_profile', `${INS_IG}/StructureDefinition`)}`), [], 'no prefix match without :below');
  t.same(await api.ids(`/fhir/Patient?${q('_profile', FR_PATIENT_INS.toUpperCase())}`), [], 'case-sensitive');
  t.same(await api.ids(`/fhir/Patient?${q('_profile:below', `${INS_IG}/`)}`), ['ins', 'ins-et-fr']);
  t.same(await api.ids(`/fhir/Patient?${q('_profile:below', 'http://interopsante.org/fhir/')}`), ['fr-patient', 'ins-et-fr']);
  t.same(await api.ids(`/fhir/Patient?${q('_profile:above', `${FR_PATIENT_INS}/_history/2`)}`), ['ins', 'ins-et-fr']);
  t.same(await api.ids(`/fhir/Patient?${q('_profile:above', FR_PATIENT_INS)}`), ['ins', 'ins-et-fr'], 'a uri is above itself');
  t.same(await api.ids(`/fhir/Patient?${q('_profile:above', 'https://ex.example.fr/aXb/c')}`), [], '_ in the stored uri is no wildcard');
  t.same(await api.ids(`/fhir/Patient?${q('_profile:above', 'https://ex.example.fr/a_b/c')}`), ['souligne']);
  t.same(await api.ids(`/fhir/Patient?${q('_profile:below', 'https://ex.example.fr/a%')}`), [], '% in the value is no wildcard');
  t.same(await api.ids('/fhir/Patient?_profile:missing=true'), ['sans-profil']);
  const res = await api.get(`/fhir/Patient?${q('_profile:contains', 'ins')}`);
  t.equal(res.status, 400);
  t.same(res.body.issue[0].expression, ['_profile:contains']);
});

t.test('composite: DocumentReference relationship = relatesto$relation', async (t) => {
  const docs = (value: string) => api.ids(`/fhir/DocumentReference?${q('relationship', value)}`);
  t.same(await docs('DocumentReference/cr-v1$replaces'), ['cr-v2']);
  t.same(await docs('DocumentReference/cr-v1$appends'), ['annexe']);
  t.same(await docs('DocumentReference/cr-v1$transforms'), []);
  t.same(await docs('DocumentReference/cr-v2$appends'), [], 'components must match within one relatesTo');
  t.same(await docs('DocumentReference/cr-v1$appends,DocumentReference/cr-v2$replaces'), ['annexe', 'cr-v3']);
  t.same(await docs(`DocumentReference/cr-v1$${RELATION}|replaces`), ['cr-v2'], "a token component with the code element's implicit system");
  t.same(await docs('DocumentReference/cr-v1$|replaces'), [], 'which is then not a code without a system');
  t.same(await docs('cr-v1$replaces'), ['cr-v2'], 'a reference component as a bare id');
  t.same(await api.ids('/fhir/DocumentReference?relatesto=DocumentReference/cr-v2&relation=appends'), ['cr-v3'], 'unlike the composite, two parameters may match different relatesTo');
  t.same(await api.ids('/fhir/DocumentReference?relationship:missing=true'), ['cr-v1']);
});
