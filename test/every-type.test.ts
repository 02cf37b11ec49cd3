// Every R4 resource type is served (issue 16): the same interactions for each, driven by the R4 definitions
// as data. Each type gets a small valid instance built from its StructureDefinition (helpers/minimal-resources.ts)
// and goes through create, read, vread, update, patch, history, search, $validate, delete, a transaction,
// and every official search parameter of its type.
import t from 'tap';
import type { Resource } from 'fhir/r4';
import { extractIndexRows } from '../src/search/extract.ts';
import { loadCompartments } from '../src/search/compartment.ts';
import { R4_RESOURCE_TYPES, SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { FHIR_JSON, json as parse, startTestServer } from './helpers/app.ts';
import { generatedResource } from './helpers/minimal-resources.ts';
import { sampleValue } from './helpers/search-values.ts';

const server = await startTestServer(t);
const registry = new SearchParameterRegistry(loadSearchParameters());
const STRICT = { prefer: 'handling=strict' };
/**
 * The types a client writes: all but AuditEvent, the server's own append-only trail (a client's create is 403,
 * test/audit.test.ts; test/capability.test.ts checks its read, vread, history and search).
 */
const CLIENT_WRITTEN_TYPES = SERVED_RESOURCE_TYPES.filter((type) => type !== 'AuditEvent');

/** The response's JSON body; undefined when it has none (reported by the assertion that reads it). */
function json(response: Parameters<typeof parse>[0]): any {
  try {
    return parse(response);
  } catch {
    return undefined;
  }
}

t.test('every R4 type but Parameters is stored', async (t) => {
  t.equal(R4_RESOURCE_TYPES.length, 146, 'R4 4.0.1 defines 146 concrete resource types');
  t.same(
    R4_RESOURCE_TYPES.filter((type) => !SERVED_RESOURCE_TYPES.includes(type)),
    ['Parameters'],
  );
  const parameters = await server.inject({ method: 'POST', url: '/fhir/Parameters', payload: { resourceType: 'Parameters' } });
  t.equal(parameters.statusCode, 404, 'Parameters has no RESTful endpoint (R4 parameters.html)');
});

t.test('each type: create, read, vread, update, patch, history, _id search, $validate, delete', async (t) => {
  const failures: string[] = [];
  const refused = await server.inject({ method: 'POST', url: '/fhir/AuditEvent', payload: generatedResource('AuditEvent'), headers: { 'content-type': FHIR_JSON } });
  t.equal(refused.statusCode, 403, 'AuditEvent: the server writes it, a client may not');
  for (const type of CLIENT_WRITTEN_TYPES) {
    const fail = (what: string, response: { statusCode: number; body: string }) => failures.push(`${type} ${what}: ${response.statusCode} ${response.body.slice(0, 300)}`);
    const resource = generatedResource(type);
    const created = await server.inject({ method: 'POST', url: `/fhir/${type}`, payload: resource, headers: { 'content-type': FHIR_JSON } });
    if (created.statusCode !== 201) {
      fail('create', created);
      continue;
    }
    const id = json(created)?.id as string;
    if (!id) {
      fail('create body', created);
      continue;
    }
    if (created.headers.location !== `http://localhost/fhir/${type}/${id}/_history/1` && !String(created.headers.location).endsWith(`/fhir/${type}/${id}/_history/1`)) fail('Location', created);

    // Binary is read as FHIR JSON here: with any other Accept it answers its raw bytes (R4 binary.html#rest).
    const read = await server.inject({ method: 'GET', url: `/fhir/${type}/${id}`, headers: { accept: FHIR_JSON } });
    if (read.statusCode !== 200 || json(read)?.meta?.versionId !== '1') fail('read', read);

    const updated = await server.inject({ method: 'PUT', url: `/fhir/${type}/${id}`, payload: { ...resource, id, language: 'fr' }, headers: { 'content-type': FHIR_JSON, 'if-match': 'W/"1"' } });
    if (updated.statusCode !== 200 || json(updated)?.meta?.versionId !== '2' || json(updated)?.language !== 'fr') fail('update', updated);

    const patched = await server.inject({
      method: 'PATCH',
      url: `/fhir/${type}/${id}`,
      payload: [{ op: 'add', path: '/implicitRules', value: 'http://example.org/rules' }],
      headers: { 'content-type': 'application/json-patch+json' },
    });
    if (patched.statusCode !== 200 || json(patched)?.implicitRules !== 'http://example.org/rules') fail('patch', patched);

    const first = await server.inject({ method: 'GET', url: `/fhir/${type}/${id}/_history/1`, headers: { accept: FHIR_JSON } });
    if (first.statusCode !== 200 || json(first)?.language !== undefined) fail('vread', first);

    const history = await server.inject({ method: 'GET', url: `/fhir/${type}/${id}/_history` });
    if (history.statusCode !== 200 || json(history)?.entry?.length !== 3) fail('history', history);

    const found = await server.inject({ method: 'GET', url: `/fhir/${type}?_id=${id}`, headers: STRICT });
    if (found.statusCode !== 200 || json(found)?.entry?.[0]?.resource?.id !== id) fail('search _id', found);

    const validated = await server.inject({ method: 'POST', url: `/fhir/${type}/$validate`, payload: resource, headers: { 'content-type': FHIR_JSON } });
    const errors = validated.statusCode === 200 ? json(validated).issue.filter((i: { severity: string }) => i.severity === 'error' || i.severity === 'fatal') : [];
    if (validated.statusCode !== 200 || errors.length > 0) fail('$validate', validated);

    const deleted = await server.inject({ method: 'DELETE', url: `/fhir/${type}/${id}` });
    if (deleted.statusCode !== 204 && deleted.statusCode !== 200) fail('delete', deleted);
    const gone = await server.inject({ method: 'GET', url: `/fhir/${type}/${id}`, headers: { accept: FHIR_JSON } });
    if (gone.statusCode !== 410) fail('read after delete', gone);
  }
  t.same(failures, [], `all ${CLIENT_WRITTEN_TYPES.length} types a client writes`);
});

t.test('one transaction creates an instance of every type', async (t) => {
  const bundle = {
    resourceType: 'Bundle',
    type: 'transaction',
    entry: CLIENT_WRITTEN_TYPES.map((type) => ({ resource: generatedResource(type), request: { method: 'POST', url: type } })),
  };
  const response = await server.inject({ method: 'POST', url: '/fhir', payload: bundle, headers: { 'content-type': FHIR_JSON } });
  t.equal(response.statusCode, 200, response.statusCode === 200 ? 'transaction' : response.body.slice(0, 500));
  const statuses = (json(response).entry ?? []).map((entry: { response: { status: string } }) => entry.response.status);
  t.equal(statuses.length, CLIENT_WRITTEN_TYPES.length);
  t.ok(statuses.every((status: string) => status.startsWith('201')), 'every entry created');
});

t.test('every official search parameter of every type is understood', async (t) => {
  const refused: string[] = [];
  let asked = 0;
  for (const type of SERVED_RESOURCE_TYPES) {
    for (const param of registry.forType(type)) {
      const value = sampleValue(param, registry);
      if (value === undefined) continue;
      asked++;
      const response = await server.inject({ method: 'GET', url: `/fhir/${type}?${param.code}=${encodeURIComponent(value)}`, headers: STRICT });
      if (response.statusCode !== 200) refused.push(`${type}?${param.code}=${value}: ${response.statusCode} ${response.body.slice(0, 200)}`);
    }
  }
  t.ok(asked > 2000, `${asked} parameters asked`);
  t.same(refused, []);
});

t.test('a stored value of any parameter is found by :missing=false, and only then', async (t) => {
  const wrong: string[] = [];
  for (const type of CLIENT_WRITTEN_TYPES) {
    const created = await server.inject({ method: 'POST', url: `/fhir/${type}`, payload: { ...generatedResource(type), meta: { tag: [{ system: 'http://example.org/run', code: 'missing' }] } }, headers: { 'content-type': FHIR_JSON } });
    const resource = json(created);
    const indexed = indexedParams(resource);
    for (const param of registry.forType(type)) {
      // Every stored resource has an id and a lastUpdated, which are not index rows.
      if (param.type === 'special' || param.code === '_lastUpdated' || param.code === '_id') continue;
      const present = indexed.has(param.code);
      const response = await server.inject({ method: 'GET', url: `/fhir/${type}?_id=${resource.id}&${param.code}:missing=false`, headers: STRICT });
      const found = response.statusCode === 200 && json(response).entry?.length === 1;
      if (found !== present) wrong.push(`${type}.${param.code} (${param.expression}): value ${present ? 'present' : 'absent'}, :missing=false ${response.statusCode === 200 ? (found ? 'found it' : 'did not find it') : response.statusCode}`);
    }
  }
  t.same(wrong, []);
});

/** The parameters for which the resource has index rows (what `:missing` is about, as in HAPI FHIR). */
function indexedParams(resource: Resource): Set<string> {
  const rows = extractIndexRows(resource, registry);
  return new Set(Object.values(rows).flatMap((list: Array<{ param: string }>) => list.map((row) => row.param)));
}

t.test('compartment search: each type in each compartment that lists it', async (t) => {
  const refused: string[] = [];
  for (const [compartmentType, compartment] of loadCompartments()) {
    for (const type of compartment.params.keys()) {
      if (!SERVED_RESOURCE_TYPES.includes(type)) continue;
      const response = await server.inject({ method: 'GET', url: `/fhir/${compartmentType}/x/${type}` });
      if (response.statusCode !== 200) refused.push(`${compartmentType}/x/${type}: ${response.statusCode}`);
    }
  }
  t.same(refused, []);
});

const BUNDLE_TAG = { system: 'http://example.org/run', code: 'bundles' };

t.test('Bundle: document, collection and message are stored; transaction, batch, searchset and history are not', async (t) => {
  const collection = await server.inject({ method: 'POST', url: '/fhir/Bundle', payload: { resourceType: 'Bundle', meta: { tag: [BUNDLE_TAG] }, type: 'collection', entry: [{ fullUrl: 'urn:uuid:8d1c6f5e-2a0b-4c3d-9e8f-7a6b5c4d3e2f', resource: generatedResource('Observation') }] }, headers: { 'content-type': FHIR_JSON } });
  t.equal(collection.statusCode, 201, collection.body.slice(0, 300));
  const read = await server.inject({ method: 'GET', url: `/fhir/Bundle/${json(collection).id}` });
  t.equal(json(read).entry[0].resource.resourceType, 'Observation', 'stored whole, entries included');
  const byType = await server.inject({ method: 'GET', url: `/fhir/Bundle?type=collection&_tag=${BUNDLE_TAG.system}|${BUNDLE_TAG.code}` });
  t.equal(json(byType).entry.length, 1, 'searchable by type');
  for (const type of ['transaction', 'batch', 'searchset', 'history']) {
    const refused = await server.inject({ method: 'POST', url: '/fhir/Bundle', payload: { resourceType: 'Bundle', meta: { tag: [BUNDLE_TAG] }, type }, headers: { 'content-type': FHIR_JSON } });
    t.equal(refused.statusCode, 422, `${type}: 422`);
    t.match(json(refused).issue[0].diagnostics, `type '${type}' is not stored`);
  }
  const count = await server.inject({ method: 'GET', url: `/fhir/Bundle?_tag=${BUNDLE_TAG.system}|${BUNDLE_TAG.code}&_summary=count` });
  t.equal(json(count).total, 1, 'nothing stored by the refused ones');
});
