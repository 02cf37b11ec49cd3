import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

// The built-in conformance resources (loaded definitions, read-only) and the terminology operations; stored ones: conformance-resources.test.ts.
const server = await startTestServer(t);
const get = (url: string) => server.inject({ method: 'GET', url });
const post = (url: string, body: unknown) => server.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });
const parameters = (...parameter: unknown[]) => ({ resourceType: 'Parameters', parameter });
/** Output Parameters as name → value (value[x] or parts). */
const out = (body: any) => Object.fromEntries(body.parameter.map((p: any) => [p.name, Object.entries(p).find(([k]) => k.startsWith('value'))?.[1] ?? p.part]));

const GENDER_VS = 'http://hl7.org/fhir/ValueSet/administrative-gender';
const GENDER_CS = 'http://hl7.org/fhir/administrative-gender';
const FR_GENDER_VS = 'https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-patient-gender';
const FR_V2_0203 = 'https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203';
const CONFIDENTIALITY_VS = 'https://mos.esante.gouv.fr/NOS/JDV_J08-XdsConfidentialityCode-CISIS/FHIR/JDV-J08-XdsConfidentialityCode-CISIS';
const A08 = 'https://mos.esante.gouv.fr/NOS/TRE_A08-HL7Confidentiality/FHIR/TRE-A08-HL7Confidentiality';
const CLINICAL = 'http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical';

t.test('conformance resources are readable by id: base R4 and French', async (t) => {
  for (const [path, url] of [
    ['StructureDefinition/fr-core-patient', 'https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient'],
    ['StructureDefinition/pdsm-comprehensive-document-reference', 'https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-comprehensive-document-reference'],
    ['StructureDefinition/dossier-immunization', 'https://dossier.example.org/fhir/StructureDefinition/dossier-immunization'],
    ['StructureDefinition/Patient', 'http://hl7.org/fhir/StructureDefinition/Patient'],
    ['ValueSet/fr-core-vs-patient-gender', FR_GENDER_VS],
    ['ValueSet/administrative-gender', GENDER_VS],
    ['ValueSet/JDV-J08-XdsConfidentialityCode-CISIS', CONFIDENTIALITY_VS],
    ['CodeSystem/fr-core-cs-v2-0203', FR_V2_0203],
    ['CodeSystem/allergyintolerance-clinical', CLINICAL],
  ] as const) {
    const res = await get(`/fhir/${path}`);
    t.equal(res.statusCode, 200, path);
    const [type, id] = path.split('/') as [string, string];
    t.equal(json(res).resourceType, type);
    t.equal(json(res).id, id);
    t.equal(json(res).url, url);
  }
  const missing = await get('/fhir/ValueSet/no-such-value-set');
  t.equal(missing.statusCode, 404);
  t.equal(json(missing).issue[0].code, 'not-found');
});

t.test('conformance resources are searchable by url, name, version and _id', async (t) => {
  const byUrl = json(await get(`/fhir/StructureDefinition?url=${encodeURIComponent('https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient')}`));
  t.equal(byUrl.resourceType, 'Bundle');
  t.equal(byUrl.type, 'searchset');
  t.equal(byUrl.total, 1);
  t.same(byUrl.entry.map((e: any) => [e.fullUrl, e.search.mode]), [['http://localhost/fhir/StructureDefinition/fr-core-patient', 'match']]);

  const byName = json(await get('/fhir/CodeSystem?name=FRCoreCodeSystemv2_02'));
  t.same(byName.entry.map((e: any) => e.resource.id), ['fr-core-cs-v2-0203'], 'name: case-insensitive prefix');
  t.same(json(await get('/fhir/CodeSystem?name:exact=FRCoreCodeSystemv2_02')).total, 0, 'name:exact');
  t.same(json(await get('/fhir/CodeSystem?name:exact=FRCoreCodeSystemv2_0203')).entry.map((e: any) => e.resource.id), ['fr-core-cs-v2-0203']);

  const versioned = json(await get(`/fhir/ValueSet?url=${encodeURIComponent(GENDER_VS)}&version=4.0.1`));
  t.same(versioned.entry.map((e: any) => e.resource.id), ['administrative-gender']);
  t.equal(json(await get(`/fhir/ValueSet?url=${encodeURIComponent(GENDER_VS)}&version=9.9.9`)).total, 0, 'version ANDs with url');
  t.equal(json(await get(`/fhir/ValueSet?url=${encodeURIComponent(`${GENDER_VS}|4.0.1`)}`)).total, 1, 'url|version');

  const ids = json(await get('/fhir/ValueSet?_id=administrative-gender,fr-core-vs-patient-gender'));
  t.same(ids.entry.map((e: any) => e.resource.id).sort(), ['administrative-gender', 'fr-core-vs-patient-gender']);

  const frenchValueSets = json(await get(`/fhir/ValueSet?url:below=${encodeURIComponent('https://hl7.fr/ig/fhir/core/ValueSet/')}&_count=5`));
  t.ok(frenchValueSets.total > 40, `FR Core value sets are served (${frenchValueSets.total})`);
  t.equal(frenchValueSets.entry.length, 5, '_count pages');
  const next = frenchValueSets.link.find((l: any) => l.relation === 'next');
  t.match(next.url, /_offset=5/);
  const page2 = json(await get(next.url.replace('http://localhost', '')));
  t.equal(page2.entry.length, 5);
  t.notOk(page2.entry.some((e: any) => frenchValueSets.entry.some((f: any) => f.resource.id === e.resource.id)), 'the next page holds other value sets');

  const form = await server.inject({ method: 'POST', url: '/fhir/ValueSet/_search', payload: `url=${encodeURIComponent(GENDER_VS)}`, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  t.equal(form.statusCode, 200, 'POST _search');
  t.equal(json(form).total, 1);

  const unknown = await get('/fhir/ValueSet?colour=red');
  t.equal(unknown.statusCode, 200, 'an unknown parameter is ignored (lenient handling)...');
  t.equal(json(unknown).entry.at(-1).search.mode, 'outcome', '...and reported');
  const strict = await server.inject({ method: 'GET', url: '/fhir/ValueSet?colour=red', headers: { prefer: 'handling=strict' } });
  t.equal(strict.statusCode, 400, '...or refused with handling=strict');
});

t.test('built-in conformance resources are read-only: writes to them are 405', async (t) => {
  const put = await server.inject({ method: 'PUT', url: '/fhir/StructureDefinition/fr-core-patient', payload: '{"resourceType":"StructureDefinition","id":"fr-core-patient"}', headers: { 'content-type': FHIR_JSON } });
  t.equal(put.statusCode, 405);
  t.equal(put.headers.allow, 'GET');
  t.equal((await server.inject({ method: 'DELETE', url: '/fhir/CodeSystem/fr-core-cs-v2-0203' })).statusCode, 405);
  t.equal((await get('/fhir/CodeSystem/fr-core-cs-v2-0203')).statusCode, 200, 'still there');
});

t.test('ValueSet/$expand by url and by id, with filter, count and offset', async (t) => {
  const byUrl = await get(`/fhir/ValueSet/$expand?url=${encodeURIComponent(FR_GENDER_VS)}`);
  t.equal(byUrl.statusCode, 200);
  const vs = json(byUrl);
  t.equal(vs.resourceType, 'ValueSet');
  t.equal(vs.url, FR_GENDER_VS);
  t.equal(vs.expansion.total, 3);
  t.equal(vs.expansion.offset, 0);
  t.match(vs.expansion.identifier, /^urn:uuid:/);
  t.same(vs.expansion.contains, [
    { system: GENDER_CS, code: 'male', display: 'Male' },
    { system: GENDER_CS, code: 'female', display: 'Female' },
    { system: GENDER_CS, code: 'unknown', display: 'Unknown' },
  ], 'FR Core excludes "other"');

  const byId = json(await get('/fhir/ValueSet/administrative-gender/$expand'));
  t.same(byId.expansion.contains.map((c: any) => c.code), ['male', 'female', 'other', 'unknown']);

  const filtered = json(await get(`/fhir/ValueSet/$expand?url=${encodeURIComponent(CONFIDENTIALITY_VS)}&filter=restr`));
  t.same(filtered.expansion.contains, [
    { system: A08, code: 'R', display: 'Restreint' },
    { system: A08, code: 'V', display: 'Très restreint' },
  ], 'filter matches the start of words of the display');
  t.same(json(await get(`/fhir/ValueSet/$expand?url=${encodeURIComponent(CONFIDENTIALITY_VS)}&filter=tres`)).expansion.contains.map((c: any) => c.code), ['V'], 'accent-insensitive');

  const paged = json(await post('/fhir/ValueSet/$expand', parameters({ name: 'url', valueUri: GENDER_VS }, { name: 'count', valueInteger: 2 }, { name: 'offset', valueInteger: 1 })));
  t.equal(paged.expansion.total, 4);
  t.equal(paged.expansion.offset, 1);
  t.same(paged.expansion.contains.map((c: any) => c.code), ['female', 'other']);
  t.same(paged.expansion.parameter, [{ name: 'count', valueInteger: 2 }, { name: 'offset', valueInteger: 1 }]);

  const unknown = await get('/fhir/ValueSet/$expand?url=http://example.org/ValueSet/none');
  t.equal(unknown.statusCode, 404);
  t.equal(json(unknown).resourceType, 'OperationOutcome');
  t.equal((await get('/fhir/ValueSet/$expand')).statusCode, 400, 'url is required at type level');
  const snomed = await get(`/fhir/ValueSet/$expand?url=${encodeURIComponent('http://hl7.org/fhir/ValueSet/allergyintolerance-code')}`);
  t.equal(snomed.statusCode, 422, 'a value set drawing on SNOMED CT filters cannot be expanded locally');
  t.equal(json(snomed).issue[0].code, 'too-costly');
  t.equal((await get(`/fhir/ValueSet/$expand?url=${encodeURIComponent(GENDER_VS)}&count=-1`)).statusCode, 400, 'count must be a non-negative integer');
});

t.test('ValueSet/$validate-code answers result, message, display', async (t) => {
  const ok = await get(`/fhir/ValueSet/$validate-code?url=${encodeURIComponent(FR_GENDER_VS)}&system=${encodeURIComponent(GENDER_CS)}&code=female`);
  t.equal(ok.statusCode, 200);
  t.same(json(ok), { resourceType: 'Parameters', parameter: [{ name: 'result', valueBoolean: true }, { name: 'display', valueString: 'Female' }] });

  const other = json(await get(`/fhir/ValueSet/$validate-code?url=${encodeURIComponent(FR_GENDER_VS)}&system=${encodeURIComponent(GENDER_CS)}&code=other`));
  t.same(out(other), { result: false, message: `The code ${GENDER_CS}#other is not in the value set ${FR_GENDER_VS}` });
  t.same(out(json(await get(`/fhir/ValueSet/administrative-gender/$validate-code?system=${encodeURIComponent(GENDER_CS)}&code=other`))), { result: true, display: 'Other' }, 'instance level');

  const coding = json(await post('/fhir/ValueSet/$validate-code', parameters({ name: 'url', valueUri: CONFIDENTIALITY_VS }, { name: 'coding', valueCoding: { system: A08, code: 'R', display: 'Restreint' } })));
  t.same(out(coding), { result: true, display: 'Restreint' });
  const wrongDisplay = json(await post('/fhir/ValueSet/$validate-code', parameters({ name: 'url', valueUri: CONFIDENTIALITY_VS }, { name: 'system', valueUri: A08 }, { name: 'code', valueCode: 'R' }, { name: 'display', valueString: 'Normal' })));
  t.same(out(wrongDisplay), { result: false, message: `Wrong display 'Normal' for ${A08}#R: it should be 'Restreint'`, display: 'Restreint' });
  const concept = json(await post('/fhir/ValueSet/$validate-code', parameters({ name: 'url', valueUri: GENDER_VS }, { name: 'codeableConcept', valueCodeableConcept: { coding: [{ system: 'http://example.org', code: 'x' }, { system: GENDER_CS, code: 'male' }] } })));
  t.same(out(concept), { result: true, display: 'Male' }, 'a CodeableConcept is valid when one coding is');

  const unknownVs = await get('/fhir/ValueSet/$validate-code?url=http://example.org/none&code=x');
  t.equal(unknownVs.statusCode, 404);
  t.equal((await get(`/fhir/ValueSet/$validate-code?url=${encodeURIComponent(GENDER_VS)}`)).statusCode, 400, 'no code');
});

t.test('CodeSystem/$lookup: name, display, hierarchy; unknown code → 404', async (t) => {
  const nir = await get(`/fhir/CodeSystem/$lookup?system=${encodeURIComponent(FR_V2_0203)}&code=INS-NIR`);
  t.equal(nir.statusCode, 200);
  t.same(json(nir), {
    resourceType: 'Parameters',
    parameter: [
      { name: 'name', valueString: 'FRCoreCodeSystemv2_0203' },
      { name: 'version', valueString: '2.2.0' },
      { name: 'display', valueString: 'NIR définitif' },
      { name: 'definition', valueString: 'NIR définitif' },
    ],
  });

  const inactive = json(await post('/fhir/CodeSystem/$lookup', parameters({ name: 'coding', valueCoding: { system: CLINICAL, code: 'inactive' } })));
  t.equal(out(inactive).display, 'Inactive');
  t.same(inactive.parameter.filter((p: any) => p.name === 'property'), [{ name: 'property', part: [{ name: 'code', valueCode: 'child' }, { name: 'value', valueCode: 'resolved' }] }]);
  const resolved = json(await post('/fhir/CodeSystem/$lookup', parameters({ name: 'system', valueUri: CLINICAL }, { name: 'code', valueCode: 'resolved' })));
  t.same(resolved.parameter.filter((p: any) => p.name === 'property'), [{ name: 'property', part: [{ name: 'code', valueCode: 'parent' }, { name: 'value', valueCode: 'inactive' }] }]);

  const unknownCode = await get(`/fhir/CodeSystem/$lookup?system=${encodeURIComponent(FR_V2_0203)}&code=NOPE`);
  t.equal(unknownCode.statusCode, 404);
  t.same(json(unknownCode).issue, [{ severity: 'error', code: 'not-found', diagnostics: `Code 'NOPE' is not in the CodeSystem ${FR_V2_0203}` }]);
  t.equal((await get('/fhir/CodeSystem/$lookup?system=http://example.org/cs&code=x')).statusCode, 404, 'unknown system');
  t.equal((await get('/fhir/CodeSystem/$lookup?code=x')).statusCode, 400, 'system is required');
  t.equal((await get('/fhir/CodeSystem/fr-core-cs-v2-0203/$lookup?code=INS-NIR')).statusCode, 404, '$lookup is a type-level operation');
  t.equal((await get('/fhir/Patient/$expand')).statusCode, 404, '$expand is only on ValueSet');
});
