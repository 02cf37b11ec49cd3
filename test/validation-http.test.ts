import { createHash } from 'node:crypto';
import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import { createReferenceTargets } from './helpers/fixtures.ts';
import * as fr from './helpers/validation-fixtures.ts';

// The server as deployed: the French profiles apply by default to every write.
const server = await startTestServer(t, { frenchProfiles: true });
// FHIR_PROJECT_RULES=error: the project's own rules refuse, as they do for a resource that claims them.
const strictServer = await startTestServer(t, { frenchProfiles: true, projectRules: 'error' });
for (const on of [server, strictServer]) await createReferenceTargets(on, ['Patient/p1']);
const send = (method: 'POST' | 'PUT', url: string, body: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method, url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });

t.test('French instances that follow the profiles are accepted', async (t) => {
  // The PDSm document's attachment points at Binary/doc1 (1024 bytes): the server checks size and hash against it.
  const bytes = Buffer.alloc(1024, 'x');
  const pdf = await server.inject({ method: 'PUT', url: '/fhir/Binary/doc1', payload: bytes, headers: { 'content-type': 'application/pdf' } });
  t.equal(pdf.statusCode, 201);
  const document = fr.pdsmDocument();
  document.content[0].attachment.hash = createHash('sha1').update(bytes).digest('base64');
  for (const [type, resource] of [
    ['Patient', fr.insPatient()],
    ['DocumentReference', document],
    ['Immunization', fr.immunization()],
    ['AllergyIntolerance', fr.allergy()],
    ['MedicationStatement', fr.medicationStatement()],
    ['Consent', fr.consent()],
    ['Practitioner', fr.practitioner()],
    ['Organization', fr.organization()],
  ] as const) {
    const res = await send('POST', `/fhir/${type}`, resource);
    t.equal(res.statusCode, 201, `${type}: ${res.statusCode === 201 ? 'created' : res.body.slice(0, 300)}`);
  }
});

t.test('a profile violation is 422 with the element path; a non-R4 body stays 400', async (t) => {
  const wrongKey = fr.insPatient();
  wrongKey.identifier[0].value = '123456789012244'; // FR Core's own example NIR
  const res = await send('POST', '/fhir/Patient', wrongKey);
  t.equal(res.statusCode, 422);
  const issue = json(res).issue.find((i: any) => i.severity === 'error');
  t.match(issue.diagnostics, /expected 12/);
  t.same(issue.expression, ['Patient.identifier[0].value']);

  const noLot = fr.immunization();
  delete noLot.lotNumber;
  const lenient = await send('POST', '/fhir/Immunization', noLot, { prefer: 'return=OperationOutcome' });
  t.equal(lenient.statusCode, 201, 'by default the project rule does not refuse');
  t.ok(json(lenient).issue.some((i: any) => i.severity === 'warning' && /dossier-imm-1/.test(i.diagnostics)), 'it warns');
  const immunization = await strictServer.inject({ method: 'POST', url: '/fhir/Immunization', payload: JSON.stringify(noLot), headers: { 'content-type': FHIR_JSON } });
  t.equal(immunization.statusCode, 422, 'FHIR_PROJECT_RULES=error: a completed vaccination needs its lot number');
  t.ok(json(immunization).issue.some((i: any) => i.severity === 'error' && /dossier-imm-1/.test(i.diagnostics)));

  const notR4 = await send('POST', '/fhir/Patient', { ...fr.insPatient(), birthDate: '12/07/1984' });
  t.equal(notR4.statusCode, 400);
});

t.test('warnings do not block and come back with Prefer: return=OperationOutcome', async (t) => {
  const res = await send('POST', '/fhir/Patient', fr.insPatient(), { prefer: 'return=OperationOutcome' });
  t.equal(res.statusCode, 201);
  const issues = json(res).issue;
  t.equal(issues[0].severity, 'information');
  t.ok(issues.some((i: any) => i.severity === 'warning'), 'the profile warnings are reported (e.g. dom-6: no narrative)');
});

t.test('a transaction entry breaking a profile fails the transaction with 422 naming it', async (t) => {
  const noLot = fr.immunization();
  delete noLot.lotNumber;
  const res = await send('POST', '/fhir', {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: [
      { resource: fr.practitioner(), request: { method: 'POST', url: 'Practitioner' } },
      { resource: { ...noLot, meta: { profile: ['https://dossier.example.org/fhir/StructureDefinition/dossier-immunization'] } }, request: { method: 'POST', url: 'Immunization' } },
    ],
  });
  t.equal(res.statusCode, 422, 'the entry claims the profile it breaks');
  t.ok(json(res).issue.every((i: any) => i.expression[0] === 'Bundle.entry[1]'));
});

t.test('FHIR_UNKNOWN_PROFILES holds for each server, whatever another server in the process asked for', async (t) => {
  const claimsUnknown = { ...fr.practitioner(), meta: { profile: ['https://example.org/fhir/StructureDefinition/not-published'] } };
  const lenient = await send('POST', '/fhir/Practitioner', claimsUnknown);
  t.equal(lenient.statusCode, 201, 'the default server (warning) accepts it');
  const strict = await startTestServer(t, { frenchProfiles: true, unknownProfiles: 'error' });
  const refused = await strict.inject({ method: 'POST', url: '/fhir/Practitioner', payload: JSON.stringify(claimsUnknown), headers: { 'content-type': FHIR_JSON } });
  t.equal(refused.statusCode, 422, 'the strict server refuses it');
  t.match(json(refused).issue, [{ severity: 'error', code: 'not-supported' }]);
  const again = await send('POST', '/fhir/Practitioner', claimsUnknown);
  t.equal(again.statusCode, 201, 'and the first server still only warns');
});
