// Token search (R4 search.html#token): code, system|code, |code, system|; :not, :text, :of-type;
// _tag and _security; escaping; :missing; the terminology modifiers (:above :below :in :not-in), decided
// by the local terminology service. The spec's examples: `identifier=http://acme.org/patient|2345`,
// `code=ha125`, `code=|ha125`-style no-system search, `gender:not=male`, `code:text=headache`,
// `identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053`.
import t from 'tap';
import { startTestServer } from './helpers/app.ts';
import { INS, nir, q, searchClient } from './helpers/search-client.ts';

const server = await startTestServer(t);
const api = searchClient(server);

const SNOMED = 'http://snomed.info/sct';
const V2_0203 = 'http://terminology.hl7.org/CodeSystem/v2-0203';
const FR_V2_0203 = 'http://interopsante.org/fhir/CodeSystem/fr-v2-0203';
const CONFIDENTIALITY = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
const TAGS = 'https://dossier.example.org/fhir/CodeSystem/tags';
const CLINICAL = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical';
const NIR_HELENE = nir('2840375123456');
const NIR_JACQUES = nir('1560169123789');

await api.putAll([
  {
    resourceType: 'Patient',
    id: 'helene',
    meta: { tag: [{ system: TAGS, code: 'import-dmp', display: 'Importé du DMP' }] },
    identifier: [
      { system: INS, value: NIR_HELENE, type: { coding: [{ system: FR_V2_0203, code: 'INS-NIR' }], text: 'NIR définitif' } },
      { system: 'http://hopital-exemple.fr/ipp', value: 'IPP-0001', type: { coding: [{ system: V2_0203, code: 'MR' }] } },
    ],
    active: true,
    name: [{ family: 'Lefèvre', given: ['Hélène'] }],
    gender: 'female',
    telecom: [{ system: 'phone', value: '0612345678' }, { system: 'email', value: 'helene.lefevre@example.fr' }],
  },
  {
    resourceType: 'Patient',
    id: 'jacques',
    meta: { security: [{ system: CONFIDENTIALITY, code: 'R' }], tag: [{ system: TAGS, code: 'vip' }] },
    identifier: [
      { system: INS, value: NIR_JACQUES, type: { coding: [{ system: FR_V2_0203, code: 'INS-NIR' }] } },
      { system: 'http://cpage.fr/dossier', value: '2021|0042' },
    ],
    active: false,
    name: [{ family: 'Cœur', given: ['Jacques'] }],
    gender: 'male',
  },
  {
    resourceType: 'Patient',
    id: 'camille',
    meta: { security: [{ system: CONFIDENTIALITY, code: 'N' }] },
    identifier: [
      { system: 'http://hopital-exemple.fr/ipp', value: '446053', type: { coding: [{ system: V2_0203, code: 'MR' }] } },
      { system: 'http://labo.example.fr/echantillon', value: 'E1,E2' },
      { system: 'http://labo.example.fr/lot', value: 'LOT$7' },
    ],
    name: [{ family: 'Roux', given: ['Camille'] }],
    gender: 'other',
  },
  { resourceType: 'Patient', id: 'anonyme', identifier: [{ value: '446053' }], name: [{ text: 'Patient anonyme' }] },
  {
    resourceType: 'AllergyIntolerance',
    id: 'a-peni',
    clinicalStatus: { coding: [{ system: CLINICAL, code: 'active' }] },
    category: ['medication'],
    criticality: 'high',
    code: { coding: [{ system: SNOMED, code: '764146007', display: 'Pénicilline' }], text: 'Allergie à la pénicilline' },
    patient: { reference: 'Patient/helene' },
  },
  {
    resourceType: 'AllergyIntolerance',
    id: 'a-cajou',
    clinicalStatus: { coding: [{ system: CLINICAL, code: 'resolved' }] },
    category: ['food'],
    criticality: 'low',
    code: { coding: [{ system: SNOMED, code: '227493005', display: 'Noix de cajou' }] },
    patient: { reference: 'Patient/jacques' },
  },
  { resourceType: 'AllergyIntolerance', id: 'a-local', clinicalStatus: { coding: [{ system: CLINICAL, code: 'inactive' }] }, category: ['food'], code: { coding: [{ code: 'ARACH' }], text: 'Arachide' }, patient: { reference: 'Patient/camille' } },
  { resourceType: 'AllergyIntolerance', id: 'a-texte', clinicalStatus: { coding: [{ system: CLINICAL, code: 'inactive' }] }, code: { text: 'Latex' }, patient: { reference: 'Patient/camille' } },
]);

t.test('code alone matches any system; system|code that system only (spec: code=ha125, identifier=system|value)', async (t) => {
  t.same(await api.ids('/fhir/AllergyIntolerance?code=764146007'), ['a-peni']);
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('code', `${SNOMED}|764146007`)}`), ['a-peni']);
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('code', `${SNOMED}|ARACH`)}`), []);
  t.same(await api.ids('/fhir/AllergyIntolerance?code=ARACH'), ['a-local']);
  t.same(await api.ids(`/fhir/Patient?${q('identifier', `${INS}|${NIR_HELENE}`)}`), ['helene'], 'INS search');
  t.same(await api.ids(`/fhir/Patient?${q('identifier', `${INS}|${NIR_HELENE.slice(0, 13)}`)}`), [], 'no partial match on tokens');
  t.same(await api.ids(`/fhir/Patient?identifier=${NIR_JACQUES}`), ['jacques']);
  t.same(await api.ids('/fhir/AllergyIntolerance?code=764146007,227493005'), ['a-cajou', 'a-peni'], 'comma: OR');
});

t.test('|code matches only values without a system; system| any code in the system', async (t) => {
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('code', '|ARACH')}`), ['a-local']);
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('code', '|764146007')}`), []);
  t.same(await api.ids(`/fhir/Patient?${q('identifier', '|446053')}`), ['anonyme']);
  t.same(await api.ids('/fhir/Patient?identifier=446053'), ['anonyme', 'camille']);
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('code', `${SNOMED}|`)}`), ['a-cajou', 'a-peni']);
  t.same(await api.ids(`/fhir/Patient?${q('identifier', `${INS}|`)}`), ['helene', 'jacques']);
});

t.test(':not excludes matches and keeps resources without a value (spec: gender:not=male)', async (t) => {
  t.same(await api.ids('/fhir/Patient?gender:not=male'), ['anonyme', 'camille', 'helene']);
  t.same(await api.ids('/fhir/AllergyIntolerance?criticality:not=high'), ['a-cajou', 'a-local', 'a-texte']);
  t.same(await api.ids('/fhir/Patient?gender:not=male,female'), ['anonyme', 'camille'], 'neither of the values');
  t.same(await api.ids('/fhir/Patient?active:not=true'), ['anonyme', 'camille', 'jacques']);
});

t.test(':text searches display and CodeableConcept.text, accent-insensitive, by word start (spec: code:text=headache)', async (t) => {
  t.same(await api.ids('/fhir/AllergyIntolerance?code:text=penicilline'), ['a-peni']);
  t.same(await api.ids('/fhir/AllergyIntolerance?code:text=allergie'), ['a-peni']);
  t.same(await api.ids('/fhir/AllergyIntolerance?code:text=cajou'), ['a-cajou'], 'a word inside the display');
  t.same(await api.ids('/fhir/AllergyIntolerance?code:text=latex'), ['a-texte'], 'a CodeableConcept with text only');
  t.same(await api.ids('/fhir/AllergyIntolerance?code:text=ajou'), [], 'not inside a word');
  t.same(await api.ids(`/fhir/Patient?${q('identifier:text', 'nir defin')}`), ['helene'], 'Identifier.type.text');
});

t.test(':of-type matches the identifier type (system|code) and value (spec example)', async (t) => {
  t.same(await api.ids(`/fhir/Patient?${q('identifier:of-type', `${V2_0203}|MR|446053`)}`), ['camille']);
  t.same(await api.ids(`/fhir/Patient?${q('identifier:of-type', `${V2_0203}|MR|IPP-0001`)}`), ['helene']);
  t.same(await api.ids(`/fhir/Patient?${q('identifier:of-type', `${FR_V2_0203}|INS-NIR|${NIR_JACQUES}`)}`), ['jacques'], 'type without text');
  t.same(await api.ids(`/fhir/Patient?${q('identifier:of-type', `${FR_V2_0203}|MR|446053`)}`), [], 'the type system counts');
  t.same(await api.ids(`/fhir/Patient?${q('identifier:of-type', `${V2_0203}|PI|446053`)}`), [], 'the type code counts');
  const bad = await api.get(`/fhir/Patient?${q('identifier:of-type', `${V2_0203}|MR`)}`);
  t.equal(bad.status, 400);
  t.same(bad.body.issue[0].expression, ['identifier:of-type']);
});

t.test('escaping in tokens: \\| inside a code, \\, inside a code, \\$', async (t) => {
  t.same(await api.ids(`/fhir/Patient?${q('identifier', 'http://cpage.fr/dossier|2021\\|0042')}`), ['jacques']);
  t.same(await api.ids(`/fhir/Patient?${q('identifier', 'E1\\,E2')}`), ['camille']);
  t.same(await api.ids(`/fhir/Patient?${q('identifier', 'E1,E2')}`), [], 'unescaped: two values, neither exists');
  t.same(await api.ids(`/fhir/Patient?${q('identifier', 'LOT\\$7')}`), ['camille']);
});

t.test('_tag, _security and other token kinds (boolean, ContactPoint, code)', async (t) => {
  t.same(await api.ids(`/fhir/Patient?${q('_tag', `${TAGS}|import-dmp`)}`), ['helene']);
  t.same(await api.ids('/fhir/Patient?_tag=vip'), ['jacques']);
  t.same(await api.ids(`/fhir/Patient?${q('_security', `${CONFIDENTIALITY}|R`)}`), ['jacques']);
  t.same(await api.ids('/fhir/Patient?_security:not=R'), ['anonyme', 'camille', 'helene']);
  t.same(await api.ids('/fhir/Patient?_tag:text=importe'), ['helene'], 'Coding.display');
  t.same(await api.ids('/fhir/Patient?active=true'), ['helene']);
  t.same(await api.ids('/fhir/Patient?active=false'), ['jacques']);
  t.same(await api.ids('/fhir/Patient?phone=0612345678'), ['helene']);
  t.same(await api.ids(`/fhir/Patient?${q('email', 'helene.lefevre@example.fr')}`), ['helene']);
  t.same(await api.ids('/fhir/Patient?telecom=phone|0612345678'), ['helene'], 'ContactPoint.system as the token system');
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('clinical-status', `${CLINICAL}|active`)}`), ['a-peni']);
  t.same(await api.ids('/fhir/AllergyIntolerance?category=food'), ['a-cajou', 'a-local']);
  t.same(await api.ids(`/fhir/Patient?${q('gender', 'http://hl7.org/fhir/administrative-gender|male')}`), ['jacques'], "a code element carries its binding's code system");
  t.same(await api.ids(`/fhir/Patient?${q('gender', '|male')}`), [], 'so it is not a code without a system');
  t.same(await api.ids('/fhir/Patient?_id=helene,jacques'), ['helene', 'jacques']);
  // Long lists of ids travel as one comma-separated string (sql.ts); an escaped comma keeps its id whole.
  const many = Array.from({ length: 150 }, (_, n) => `absent-${n}`);
  t.same(await api.ids(`/fhir/Patient?_id=${[...many, 'helene', 'jacques'].join(',')}&gender=female`), ['helene'], 'a long _id list, with another filter');
  t.same(await api.ids(`/fhir/Patient?_id=${[...many, 'helene\\,jacques'].join(',')}`), [], 'helene\\,jacques is one id, which no patient has');
  t.same(await api.ids(`/fhir/Patient?_id:not=${[...many, 'helene'].join(',')}`), ['anonyme', 'camille', 'jacques'], ':not with a long list');
  t.same(await api.ids('/fhir/Patient?gender:missing=true'), ['anonyme']);
  t.same(await api.ids('/fhir/Patient?gender:missing=false'), ['camille', 'helene', 'jacques']);
});

t.test(':in / :not-in match the codes of a value set, expanded by the local terminology service', async (t) => {
  const FR_GENDER = 'https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-patient-gender'; // male, female, unknown
  t.same(await api.ids(`/fhir/Patient?${q('gender:in', 'http://hl7.org/fhir/ValueSet/administrative-gender')}`), ['camille', 'helene', 'jacques']);
  t.same(await api.ids(`/fhir/Patient?${q('gender:in', FR_GENDER)}`), ['helene', 'jacques'], "FR Core's value set leaves out 'other'");
  t.same(await api.ids(`/fhir/Patient?${q('gender:not-in', FR_GENDER)}`), ['anonyme', 'camille'], ':not-in keeps resources without a value, as :not does');
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('clinical-status:in', 'http://hl7.org/fhir/ValueSet/allergyintolerance-clinical')}`), ['a-cajou', 'a-local', 'a-peni', 'a-texte']);
  t.same(await api.ids(`/fhir/Patient?${q('gender:in', `${FR_GENDER},http://hl7.org/fhir/ValueSet/administrative-gender`)}`), ['camille', 'helene', 'jacques'], 'comma: OR of value sets');
  t.same(await api.ids(`/fhir/Patient?${q('_security:in', 'http://terminology.hl7.org/ValueSet/v3-Confidentiality')}`), ['camille', 'jacques'], 'a v3 value set');
});

t.test(':below / :above follow the hierarchy of a local code system (inactive ⊃ resolved)', async (t) => {
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('clinical-status:below', `${CLINICAL}|inactive`)}`), ['a-cajou', 'a-local', 'a-texte'], 'inactive and resolved');
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('clinical-status:below', `${CLINICAL}|resolved`)}`), ['a-cajou']);
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('clinical-status:above', `${CLINICAL}|resolved`)}`), ['a-cajou', 'a-local', 'a-texte'], 'resolved and inactive');
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('clinical-status:above', `${CLINICAL}|active`)}`), ['a-peni']);
  t.same(await api.ids(`/fhir/AllergyIntolerance?${q('clinical-status:below', `${CLINICAL}|active,${CLINICAL}|resolved`)}`), ['a-cajou', 'a-peni']);
});

t.test('what the local terminology cannot decide is a 400 naming the parameter', async (t) => {
  for (const [name, value, diagnostics] of [
    ['code:in', 'http://hl7.org/fhir/ValueSet/allergyintolerance-code', /cannot be expanded/],
    ['code:not-in', 'http://example.org/ValueSet/none', /not known/],
    ['code:below', `${SNOMED}|764146007`, /not available on this server/],
    ['code:above', `${SNOMED}|764146007`, /not available on this server/],
    ['clinical-status:below', `${CLINICAL}|nope`, /nope is not a code of/],
    ['clinical-status:below', 'inactive', /takes system\|code/],
  ] as const) {
    const res = await api.get(`/fhir/AllergyIntolerance?${q(name, value)}`);
    t.equal(res.status, 400, `${name}=${value}`);
    t.match(res.body.issue[0].diagnostics, diagnostics);
    t.same(res.body.issue[0].expression, [name]);
  }
});

t.test('other modifiers on a token are a 400 naming the parameter', async (t) => {
  const res = await api.get('/fhir/Patient?gender:exact=female');
  t.equal(res.status, 400);
  t.same(res.body.issue[0].expression, ['gender:exact']);
});

t.test('a computed token: deceased (spec expression `deceased.exists() and deceased != false`)', async (t) => {
  await api.putAll([
    { resourceType: 'Patient', id: 'deceased-yes', deceasedBoolean: true },
    { resourceType: 'Patient', id: 'deceased-date', deceasedDateTime: '2019-04-02' },
    { resourceType: 'Patient', id: 'deceased-no', deceasedBoolean: false },
  ]);
  const dead = (await api.get('/fhir/Patient?deceased=true')).matches;
  t.same(dead.sort(), ['Patient/deceased-date', 'Patient/deceased-yes'], 'true: deceased by flag or by date');
  const alive = (await api.get('/fhir/Patient?deceased=false&_count=100')).matches;
  t.ok(alive.includes('Patient/deceased-no'), 'false: said alive');
  t.ok(alive.includes('Patient/helene'), 'false: no deceased element at all');
  t.notOk(alive.includes('Patient/deceased-yes') || alive.includes('Patient/deceased-date'));
});
