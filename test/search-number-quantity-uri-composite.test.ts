// Number (R4 search.html#number: precision of the value as written, spec: value=100 is [99.5, 100.5),
// value=100.00 is [99.995, 100.005)), quantity (#quantity, spec: value-quantity=5.4|http://unitsofmeasure.org|mg,
// 5.4||mg, le5.4|…, ap5.4|…; UCUM units compared in base units, "the server SHOULD support canonical
// units": 5.4 mg finds 5400 µg), uri with :below / :above (#uri, spec: url:below=http://acme.org/fhir/,
// url:above=http://acme.org/fhir/ValueSet/123/_history/5) and composite (#composite, `$` between components).
// The number and quantity parameters are the project's own: Immunization dose-number and
// MedicationStatement dose-quantity (src/search/definitions).
import t from 'tap';
import { toCanonical } from '../src/search/ucum.ts';
import { startTestServer } from './helpers/app.ts';
import { q, searchClient } from './helpers/search-client.ts';

// Its records name patients it does not write: the Patient searches count exactly the patients they set up.
const server = await startTestServer(t, { referentialIntegrity: 'off' });
const api = searchClient(server);

const UCUM = 'http://unitsofmeasure.org';
const LOCAL_UNITS = 'https://hopital.example.fr/fhir/CodeSystem/unites';
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
  medication('microgrammes', 'Vitamine B12 5400 µg', { value: 5400, unit: 'µg', system: UCUM, code: 'ug' }),
  medication('perfusion', 'NaCl 0,9 % 500 mL', { value: 500, unit: 'mL', system: UCUM, code: 'mL' }),
  medication('unites-locales', 'Posologie en unités locales', { value: 5000, unit: 'mg', system: LOCAL_UNITS, code: 'mg' }),
  medication('code-invalide', 'Code non UCUM sous le système UCUM', { value: 100, unit: 'mcg', system: UCUM, code: 'mcg' }),
  medication('comprimes', 'Doliprane 2 comprimés', { value: 2, unit: 'comprimés', system: UCUM, code: '{tbl}' }),
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
  t.same(await medications('dose-quantity=500'), ['paracetamol-500', 'perfusion'], 'a number alone, whatever the unit');
  t.same(await medications(q('dose-quantity', `le500|${UCUM}|mg`)), ['fraction', 'levothyrox', 'microgrammes', 'paracetamol-500'], 'UCUM: in any mass unit');
  t.same(await medications(q('dose-quantity', `ge500|${UCUM}|mg`)), ['amoxicilline', 'paracetamol-1000', 'paracetamol-500']);
  t.same(await medications(q('dose-quantity', 'lt1000||mg')), ['paracetamol-500']);
  t.same(await medications(q('dose-quantity', 'ap1050||mg')), ['paracetamol-1000'], '±10%');
  t.same(await medications(q('dose-quantity', '50||µg')), ['levothyrox'], 'matched on the unit as displayed');
  t.same(await medications(q('dose-quantity', `50|${UCUM}|ug`)), ['levothyrox']);
  t.same(await medications(q('dose-quantity', '20||gouttes')), ['gouttes'], 'a unit without system or code');
  t.same(await medications(q('dose-quantity', `0.075|${UCUM}|g`)), ['fraction']);
  t.same(await medications(q('dose-quantity', `lt1|${UCUM}|g`)), ['fraction', 'levothyrox', 'microgrammes', 'paracetamol-500']);
  t.same(await medications(q('dose-quantity', `1|${UCUM}|mg`)), [], '1 mg is none of them');
  t.same(await medications(q('dose-quantity', `500|http://snomed.info/sct|mg`)), [], 'the system counts');
  const res = await api.get(`/fhir/MedicationStatement?${q('dose-quantity', `cinq|${UCUM}|mg`)}`);
  t.equal(res.status, 400);
  t.same(res.body.issue[0].expression, ['dose-quantity']);
});

t.test('quantity with a UCUM unit: compared in base units (5.4 mg is 5400 µg), prefixes and precision converted', async (t) => {
  const ucum = (value: string) => medications(q('dose-quantity', value));
  t.same(await ucum(`5.4|${UCUM}|mg`), ['microgrammes'], 'the spec\'s example: 5400 µg');
  t.same(await ucum(`5400|${UCUM}|ug`), ['microgrammes']);
  t.same(await ucum(`0.0054|${UCUM}|g`), ['microgrammes']);
  t.same(await ucum(`0.05|${UCUM}|mg`), ['levothyrox'], '50 µg');
  t.same(await ucum(`1000|${UCUM}|mg`), ['amoxicilline', 'paracetamol-1000'], '1 g and 1000 mg');
  t.same(await ucum(`1.0|${UCUM}|g`), ['amoxicilline', 'paracetamol-1000'], '[0.95, 1.05) g');
  t.same(await ucum(`1|${UCUM}|g`), ['amoxicilline', 'paracetamol-1000', 'paracetamol-500'], 'the precision written, converted: [0.5, 1.5) g holds 500 mg');
  t.same(await ucum(`gt0.5|${UCUM}|g`), ['amoxicilline', 'paracetamol-1000']);
  t.same(await ucum(`lt100|${UCUM}|mg`), ['fraction', 'levothyrox', 'microgrammes']);
  t.same(await ucum(`ge5.4|${UCUM}|mg`), ['amoxicilline', 'fraction', 'microgrammes', 'paracetamol-1000', 'paracetamol-500'], 'exact: 5400 µg is not a hair under 5.4 mg');
  t.same(await ucum(`le5.4|${UCUM}|mg`), ['levothyrox', 'microgrammes']);
  t.same(await ucum(`gt5.4|${UCUM}|mg`), ['amoxicilline', 'fraction', 'paracetamol-1000', 'paracetamol-500']);
  t.same(await ucum(`ne1.0|${UCUM}|g`), ['fraction', 'levothyrox', 'microgrammes', 'paracetamol-500']);
  t.same(await ucum(`ap1|${UCUM}|g`), ['amoxicilline', 'paracetamol-1000'], '±10% of 1 g');
  t.same(await ucum(`5.4|${UCUM}|mg,0.5|${UCUM}|L`), ['microgrammes', 'perfusion'], 'values ORed, each in its own units');

  t.same(await ucum(`500|${UCUM}|mL`), ['perfusion'], 'mL is not mg');
  t.same(await ucum(`0.5|${UCUM}|L`), ['perfusion']);
  t.same(await ucum(`500|${UCUM}|mg`), ['paracetamol-500'], 'mg is not mL');
  t.same(await ucum(`gt0|${UCUM}|mg`), ['amoxicilline', 'fraction', 'levothyrox', 'microgrammes', 'paracetamol-1000', 'paracetamol-500'], 'every mass, and no volume');

  t.same(await ucum('5.4||mg'), [], 'without the UCUM system, compared as written');
  t.same(await ucum(`5000|${LOCAL_UNITS}|mg`), ['unites-locales'], 'another system: as written');
  t.same(await ucum(`5|${LOCAL_UNITS}|g`), [], 'another system: no conversion');
  t.same(await ucum(`5000|${UCUM}|mg`), [], 'a UCUM search does not find the same code in another system');

  // As HAPI FHIR does, a unit that is not valid UCUM is compared as written, not refused.
  t.same(await ucum(`100|${UCUM}|mcg`), ['code-invalide'], 'a stored code that is not UCUM is found as written');
  t.same(await ucum(`0.10|${UCUM}|mg`), [], 'but not converted');
  const res = await api.get(`/fhir/MedicationStatement?${q('dose-quantity', `5|${UCUM}|mgg`)}`);
  t.equal(res.status, 200, 'an invalid UCUM unit in a search is not an error');
  t.same(res.matches, []);
  t.same(await ucum(`2|${UCUM}|{tbl}`), ['comprimes'], 'an annotated count, as written');
  t.same(await ucum(`200|${UCUM}|%`), [], 'not equal to 200 % although UCUM makes both 2');
});

t.test('UCUM base units: exact decimals, and the units that are compared as written', async (t) => {
  t.same(toCanonical('5400', 'ug'), { value: '54e-4', unit: 'g' });
  t.same(toCanonical('5.4', 'mg'), toCanonical('5400', 'ug'), 'no floating-point residue');
  t.same(toCanonical('2', 'mg/dL'), { value: '2e1', unit: 'm-3.g' });
  t.same(toCanonical('4', '{cells}/uL'), { value: '4e9', unit: 'm-3' }, 'prefix noise of the library rounded off');
  t.same(toCanonical('1', '%'), { value: '1e-2', unit: '1' });
  for (const code of ['Cel', '[degF]', '[pH]', '[iU]', '{tbl}', 'mcg', 'milligram', 'µg', 'mg mg', '']) t.equal(toCanonical('1', code), undefined, code);
});

t.test('an unparsable unit prints nothing among the server\'s JSON log lines', async (t) => {
  const printed: unknown[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => printed.push(args);
  try {
    t.equal(toCanonical('1', '()'), undefined);
    t.equal(toCanonical('1', 'g{a}(m)'), undefined);
  } finally {
    console.log = log;
  }
  t.same(printed, []);
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

t.test('composite ending with a quantity: Observation component-code-value-quantity and code-value-quantity, with prefixes and UCUM units', async (t) => {
  const LOINC = 'http://loinc.org';
  const mmHg = (value: number) => ({ value, unit: 'mmHg', system: UCUM, code: 'mm[Hg]' });
  const pressure = (id: string, systolic: number, diastolic: number) => ({
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code: '85354-6' }] },
    subject: { reference: 'Patient/helene' },
    component: [
      { code: { coding: [{ system: LOINC, code: '8480-6' }] }, valueQuantity: mmHg(systolic) },
      { code: { coding: [{ system: LOINC, code: '8462-4' }] }, valueQuantity: mmHg(diastolic) },
    ],
  });
  const weight = (id: string, quantity: Record<string, unknown>) => ({
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code: '29463-7' }] },
    subject: { reference: 'Patient/helene' },
    valueQuantity: quantity,
  });
  await api.putAll([
    pressure('ta-normale', 120, 80),
    pressure('ta-haute', 165, 95),
    pressure('ta-croisee', 95, 125), // the diastolic over the systolic: the two components must not mix
    weight('poids-kg', { value: 72.5, unit: 'kg', system: UCUM, code: 'kg' }),
    weight('poids-g', { value: 3400, unit: 'g', system: UCUM, code: 'g' }),
    { resourceType: 'Observation', id: 'sans-valeur', status: 'final', code: { coding: [{ system: LOINC, code: '29463-7' }] }, dataAbsentReason: { text: 'refus' } },
  ]);
  const observations = (name: string, value: string) => api.ids(`/fhir/Observation?${q(name, value)}`);
  t.same(await observations('component-code-value-quantity', `${LOINC}|8480-6$gt140`), ['ta-haute']);
  t.same(await observations('component-code-value-quantity', `8480-6$gt100`), ['ta-haute', 'ta-normale'], 'a code without its system');
  t.same(await observations('component-code-value-quantity', `8480-6$lt100`), ['ta-croisee'], 'the systolic of one component, not the diastolic of another');
  t.same(await observations('component-code-value-quantity', `${LOINC}|8462-4$ge95|${UCUM}|mm[Hg]`), ['ta-croisee', 'ta-haute']);
  t.same(await observations('component-code-value-quantity', `${LOINC}|8480-6$120|${UCUM}|mm[Hg]`), ['ta-normale'], 'eq at the precision written');
  t.same(await observations('component-code-value-quantity', `${LOINC}|8480-6$gt140,${LOINC}|8462-4$gt100`), ['ta-croisee', 'ta-haute'], 'values ORed, each with its own code');
  t.same(await observations('component-code-value-quantity', `${LOINC}|8480-6$gt1|${UCUM}|g`), [], 'a pressure is not a mass');
  t.same(await observations('code-value-quantity', `${LOINC}|29463-7$gt3|${UCUM}|kg`), ['poids-g', 'poids-kg'], '3400 g is over 3 kg');
  t.same(await observations('code-value-quantity', `${LOINC}|29463-7$lt10000|${UCUM}|g`), ['poids-g']);
  t.same(await observations('code-value-quantity', `${LOINC}|8480-6$gt0`), [], 'the code of the Observation, not of a component');
  t.same(await api.ids('/fhir/Observation?code-value-quantity:missing=true&code=29463-7'), ['sans-valeur']);
  t.same(await api.ids('/fhir/Observation?component-code-value-quantity:missing=false'), ['ta-croisee', 'ta-haute', 'ta-normale']);
  const res = await api.get(`/fhir/Observation?${q('component-code-value-quantity', '8480-6$grand')}`);
  t.equal(res.status, 400, 'a quantity component that is not a quantity');
  t.same(res.body.issue[0].expression, ['component-code-value-quantity']);
});

t.test('composite ending with a date: Observation code-value-date, with prefixes and date ranges (as a date parameter)', async (t) => {
  const LOINC = 'http://loinc.org';
  // LOINC 21112-8 birth date, 11778-8 delivery date (estimated): an Observation whose value is a date or a period.
  const dated = (id: string, code: string, value: Record<string, unknown>) => ({
    resourceType: 'Observation',
    id,
    status: 'final',
    code: { coding: [{ system: LOINC, code }] },
    subject: { reference: 'Patient/helene' },
    ...value,
  });
  await api.putAll([
    dated('naissance-1980', '21112-8', { valueDateTime: '1980-06-15' }),
    dated('naissance-1984-03', '21112-8', { valueDateTime: '1984-03' }),
    dated('naissance-2001', '21112-8', { valueDateTime: '2001-11-02T08:30:00+01:00' }),
    dated('terme-2024', '11778-8', { valueDateTime: '2024-09-20' }),
    dated('periode', '21112-8', { valuePeriod: { start: '1990-01-01', end: '1990-12-31' } }),
    dated('sans-date', '21112-8', { valueString: 'inconnue' }),
  ]);
  const observations = (value: string) => api.ids(`/fhir/Observation?${q('code-value-date', value)}`);
  t.same(await observations(`${LOINC}|21112-8$1980-06-15`), ['naissance-1980'], 'eq a day');
  t.same(await observations(`21112-8$1984`), ['naissance-1984-03'], 'eq a year contains the month written (a code without its system)');
  t.same(await observations(`21112-8$1984-03-10`), [], 'a day does not contain a whole month (eq: the value range within the parameter range)');
  t.same(await observations(`21112-8$ge1985`), ['naissance-2001', 'periode']);
  t.same(await observations(`21112-8$lt1984-03-01`), ['naissance-1980']);
  t.same(await observations(`21112-8$le1980-06-15`), ['naissance-1980'], 'le: the day itself');
  t.same(await observations(`21112-8$1990-06`), [], 'a period is not within one month of it...');
  t.same(await observations(`21112-8$ap1990-06`), ['periode'], '...but overlaps it (ap, approximately)');
  t.same(await observations(`21112-8$sa2000`), ['naissance-2001'], 'sa: starts after 2000');
  t.same(await observations(`21112-8$eb1981`), ['naissance-1980'], 'eb: ends before 1981');
  t.same(await observations(`21112-8$2001-11-02T07:30:00Z`), ['naissance-2001'], 'the same instant in UTC');
  t.same(await observations(`21112-8$2001-11-02T08:30:00Z`), [], 'an hour later');
  t.same(await observations(`21112-8$2001-11-02`), ['naissance-2001'], 'the time zone applied');
  t.same(await observations(`21112-8$gt1979,11778-8$gt2024-01-01`), ['naissance-1980', 'naissance-1984-03', 'naissance-2001', 'periode', 'terme-2024'], 'values ORed, each with its own code');
  t.same(await observations(`11778-8$lt2000`), [], 'the code and the date of one observation');
  t.same(await api.ids('/fhir/Observation?code-value-date:missing=true&code=21112-8'), ['sans-date']);
  const res = await api.get(`/fhir/Observation?${q('code-value-date', '21112-8$hier')}`);
  t.equal(res.status, 400, 'a date component that is not a date');
  t.same(res.body.issue[0].expression, ['code-value-date']);
});

t.test('_sort on a quantity orders UCUM quantities in base units (50 µg, 5400 µg, 0.075 g, 500 mg, 1 g, 1000 mg)', async (t) => {
  const mass = q('dose-quantity', `ge0|${UCUM}|g`);
  const inOrder = async (url: string) => (await api.get(url)).matches.map((m) => m.split('/')[1]);
  t.same(await inOrder(`/fhir/MedicationStatement?${mass}&_sort=dose-quantity`), ['levothyrox', 'microgrammes', 'fraction', 'paracetamol-500', 'amoxicilline', 'paracetamol-1000']);
  t.same(await inOrder(`/fhir/MedicationStatement?${mass}&_sort=-dose-quantity`), ['amoxicilline', 'paracetamol-1000', 'paracetamol-500', 'fraction', 'microgrammes', 'levothyrox'], 'descending; equal doses by id');
});
