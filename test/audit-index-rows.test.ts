// The trail builds its AuditEvents' search index rows itself (src/security/audit-index-rows.ts) instead of
// extracting them: they must be exactly the rows extraction gives, or a search by some AuditEvent parameter
// (or a reindex) would find other events than the trail wrote. Compared on every shape of event the trail
// writes, and on an AuditEvent filling the elements the trail never fills.
import type { AuditEvent } from 'fhir/r4';
import t from 'tap';
import { extractIndexRows } from '../src/search/extract.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { auditEventsOf } from '../src/security/audit-event.ts';
import { auditEventIndexRows } from '../src/security/audit-index-rows.ts';
import type { Interaction } from '../src/router/interaction.ts';
import { FormParameters, type FhirRequest, type FhirResponse } from '../src/router/request.ts';
import { ALL_ACCESS, type AccessContext } from '../src/store/access.ts';
import { StoredResource } from '../src/store/repository.ts';

const registry = new SearchParameterRegistry(loadSearchParameters());
const source = { name: 'dossier' };
const BASE = 'https://dmp.example.fr/fhir';

const request = (path: string, query: Record<string, string | string[]> = {}, access: Partial<AccessContext> = {}, body?: unknown): FhirRequest =>
  ({ method: 'GET', path, query, baseUrl: BASE, access: { ...ALL_ACCESS, ...access }, ...(body === undefined ? {} : { body }) }) as FhirRequest;
const ok = (body?: unknown, headers: Record<string, string> = {}): FhirResponse => ({ status: 200, headers, body } as FhirResponse);
const outcome = (status: number, diagnostics: string): FhirResponse => ({ status, headers: {}, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'processing', diagnostics }] } } as FhirResponse);
const observation = new StoredResource('Observation', 'o1', 3, '2026-01-01T00:00:00.000Z', JSON.stringify({ resourceType: 'Observation', id: 'o1', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/p1' }, performer: [{ reference: 'Practitioner/dr' }] }));
const patient = new StoredResource('Patient', 'p1', 1, '2026-01-01T00:00:00.000Z', JSON.stringify({ resourceType: 'Patient', id: 'p1' }));

const professional = { who: 'Practitioner/dr', clientId: 'gp-app' };
const CASES: Array<[string, Interaction | undefined, FhirRequest, FhirResponse, string[]?]> = [
  ['read of a Patient, anonymous', { kind: 'read', resourceType: 'Patient', id: 'p1' }, request('Patient/p1'), ok(patient)],
  ['read of an Observation by a professional', { kind: 'read', resourceType: 'Observation', id: 'o1' }, request('Observation/o1', {}, professional), ok(observation)],
  ['vread refused', { kind: 'vread', resourceType: 'Observation', id: 'o1', versionId: 9 }, request('Observation/o1/_history/9', {}, professional), outcome(404, 'no such version')],
  ['break-the-glass search over two patients', { kind: 'search-type', resourceType: 'Observation' }, request('Observation', { code: 'http://loinc.org|2339-0', _include: 'Observation:subject' }, { ...professional, purposeOfUse: ['BTG', 'ETREAT'] }), ok({ resourceType: 'Bundle', type: 'searchset' }), ['p1', 'p2']],
  ['search naming patients, POSTed as a form', { kind: 'search-type', resourceType: 'Immunization' }, request('Immunization/_search', {}, professional, new FormParameters([['patient', 'Patient/p1,p2'], ['status', 'completed']])), ok({ resourceType: 'Bundle', type: 'searchset' })],
  ['a patient reading their own trail', { kind: 'search-type', resourceType: 'AuditEvent' }, request('AuditEvent', { patient: 'Patient/p1' }, { who: 'Patient/p1', clientId: 'patient-app' }), ok({ resourceType: 'Bundle', type: 'searchset' })],
  ['compartment search', { kind: 'search-compartment', compartmentType: 'Patient', id: 'p1', resourceType: 'Observation' }, request('Patient/p1/Observation'), ok({ resourceType: 'Bundle', type: 'searchset' })],
  ['create answered minimal', { kind: 'create', resourceType: 'Observation' }, request('Observation', {}, professional, { resourceType: 'Observation', subject: { reference: 'Patient/p1' } }), { status: 201, headers: { location: `${BASE}/Observation/o2/_history/1` } } as FhirResponse],
  ['delete', { kind: 'delete', resourceType: 'Patient', id: 'p1' }, request('Patient/p1'), { status: 204, headers: {} } as FhirResponse],
  ['operation', { kind: 'operation', name: 'everything', resourceType: 'Patient', id: 'p1' }, request('Patient/p1/$everything', { _count: '50' }, professional), ok({ resourceType: 'Bundle', type: 'searchset' }), ['p1', 'p3']],
  ['history of a type', { kind: 'history-type', resourceType: 'Observation' }, request('Observation/_history', { _since: '2026-01-01' }), ok({ resourceType: 'Bundle', type: 'history' })],
  ['transaction failed', { kind: 'transaction' }, request('', {}, professional), outcome(412, 'version mismatch')],
  ['server failure', { kind: 'create', resourceType: 'Patient' }, request('Patient'), outcome(500, 'a bug')],
  ['unparsed request', undefined, request('Nonsense/x/y/z'), outcome(400, 'unknown type')],
];

for (const [name, interaction, req, response, answered] of CASES) {
  t.test(name, async (t) => {
    const events = auditEventsOf(interaction, req, response, source, answered);
    t.ok(events.length > 0);
    for (const event of events) t.strictSame(auditEventIndexRows(event), extractIndexRows(event, registry), `rows of the event about ${event.entity?.find((e) => e.role?.code === '1')?.what?.reference ?? 'no patient'}`);
  });
}

t.test('an AuditEvent filling what the trail leaves empty, with repeated values', async (t) => {
  const event = {
    resourceType: 'AuditEvent',
    meta: { profile: ['http://example.org/p', 'http://example.org/p'], source: 'http://example.org/source', tag: [{ system: 'urn:t', code: 'a', display: 'Étiquette' }, { code: 'b' }], security: [{ system: 'urn:s', code: 'R' }] },
    type: { system: 'urn:type', code: 'x' },
    subtype: [{ code: 'y', display: 'Sous Type' }, { system: 'urn:sub', code: 'z' }],
    action: 'R',
    recorded: '2026-02-03T04:05:06+01:00',
    outcome: '4',
    agent: [
      { who: { reference: `${BASE}/Patient/p9` }, name: 'Jeanne Dupré', altId: 'alt-1', role: [{ coding: [{ system: 'urn:role', code: 'r' }], text: 'Rôle libre' }, { text: 'seulement du texte' }], policy: ['urn:policy:1', 'urn:policy:2'], requestor: true, network: { address: '10.0.0.1', type: '2' } },
      { who: { identifier: { system: 'urn:ietf:params:oauth:client-id', value: 'app' } }, requestor: false, network: { address: '10.0.0.1' } },
      { who: { reference: 'Device/d1', identifier: { value: 'serial' } }, requestor: false },
      { who: { reference: '#contained' }, requestor: false },
      { who: { reference: 'urn:uuid:9f3c' }, requestor: false },
    ],
    source: { site: 'site-a', observer: { reference: 'Organization/o1' } },
    entity: [
      { what: { reference: 'Patient/p9/_history/2' }, name: 'Dossier de Jeanne', role: { code: '1' }, type: { system: 'urn:et', code: '1', display: 'Person' } },
      { what: { reference: 'Patient/p9' }, role: { code: '1' } },
      { what: { display: 'only a display' }, name: '' },
      { what: { reference: 'Observation/o1' } },
    ],
  } as unknown as AuditEvent;
  t.strictSame(auditEventIndexRows(event, BASE), extractIndexRows(event, registry, { baseUrl: BASE }), 'with the base URL');
  t.strictSame(auditEventIndexRows(event), extractIndexRows(event, registry), 'without');
  const empty = { resourceType: 'AuditEvent', type: { code: 'rest' }, recorded: 'not a date', agent: [], source: {} } as unknown as AuditEvent;
  t.strictSame(auditEventIndexRows(empty), extractIndexRows(empty, registry), 'almost nothing, a recorded date that is none');
});
