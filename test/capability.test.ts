import { readFileSync } from 'node:fs';
import t, { type Test } from 'tap';
import type { LightMyRequestResponse } from 'fastify';
import type { CapabilityStatement, CapabilityStatementRestResource } from 'fhir/r4';
import { CONFORMANCE_RESOURCE_TYPES, isServedResourceType, SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';
import { FRENCH_DEFAULT_PROFILES } from '../src/fhir/validation/default-profiles.ts';
import { loadValidationContext } from '../src/fhir/validation/profile-validator.ts';
import { CAPABILITY_CODE, ROUTES } from '../src/router/interaction.ts';
import { loadCompartments } from '../src/search/compartment.ts';
import { resolveOAuthUris } from '../src/security/authorization-server.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import { createReferenceTargets, minimalResource } from './helpers/fixtures.ts';
import { sampleValue } from './helpers/search-values.ts';

/**
 * capability-statement.json is what clients (and conformance tools) believe about this server. These
 * tests keep it true both ways: everything it declares is served, and everything served is declared.
 */
const declared: CapabilityStatement = JSON.parse(readFileSync(new URL('../capability-statement.json', import.meta.url), 'utf8'));
const rest = declared.rest?.find((r) => r.mode === 'server');
const declaredResources: CapabilityStatementRestResource[] = rest?.resource ?? [];
const declaredSystemCodes = (rest?.interaction ?? []).map((i) => i.code as string);
const declaredCodes = (type: string) => (declaredResources.find((r) => r.type === type)?.interaction ?? []).map((i) => i.code as string);

// With the audit trail on, as the server runs by default: AuditEvents exist only as the server records them.
const server = await startTestServer(t, { audit: true });
await createReferenceTargets(server);
const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method: 'POST', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });
const put = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  server.inject({ method: 'PUT', url, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });
const get = (url: string, headers: Record<string, string> = {}) => server.inject({ method: 'GET', url, headers: { accept: FHIR_JSON, ...headers } });
const del = (url: string) => server.inject({ method: 'DELETE', url });

type Tap = Test;

/** A fresh instance of `type`, created over HTTP; the setup of each interaction check. */
async function seed(t: Tap, type: string): Promise<{ id: string; url: string }> {
  if (type === 'AuditEvent') return seedAuditEvent(t);
  const res = await post(`/fhir/${type}`, minimalResource(type));
  t.equal(res.statusCode, 201, `setup: created a ${type}`);
  const id = json(res).id as string;
  return { id, url: `/fhir/${type}/${id}` };
}

let audited = 0;
/** An AuditEvent, which no client may create: the server records one for a read, found by what was read. */
async function seedAuditEvent(t: Tap): Promise<{ id: string; url: string }> {
  const marker = `cap-audited-${++audited}`;
  await get(`/fhir/Patient/${marker}`);
  const bundle = json(await get(`/fhir/AuditEvent?entity=Patient/${marker}`));
  t.equal(bundle.entry?.length, 1, 'setup: the read of an unknown Patient is on record');
  const id = bundle.entry[0].resource.id as string;
  return { id, url: `/fhir/AuditEvent/${id}` };
}

/** Writes the server refuses on its append-only audit trail (src/security/audit-trail.ts), with their status. */
const REFUSED_AUDIT_WRITES: Record<string, number> = { create: 403, update: 405, patch: 405, delete: 405 };

function assertHistoryBundle(t: Tap, res: LightMyRequestResponse, what: string) {
  t.equal(res.statusCode, 200, `${what} answers 200`);
  const bundle = json(res);
  t.equal(bundle.resourceType, 'Bundle');
  t.equal(bundle.type, 'history');
  return bundle as { total: number; entry?: Array<{ fullUrl: string; resource?: { resourceType: string; id: string }; request: { method: string } }> };
}

/**
 * How to perform each interaction code a resource may declare, proving it is served for `type`.
 * A code declared in the file but missing here fails the test: the declaration would go unproven.
 */
const PERFORM: Record<string, (t: Tap, type: string) => Promise<void>> = {
  async create(t, type) {
    const res = await post(`/fhir/${type}`, minimalResource(type));
    t.equal(res.statusCode, 201);
    const body = json(res);
    t.equal(body.resourceType, type);
    t.match(body.id, /^[A-Za-z0-9\-.]{1,64}$/);
    t.equal(res.headers.location, `http://localhost/fhir/${type}/${body.id}/_history/1`);
  },
  async read(t, type) {
    const { id, url } = await seed(t, type);
    const res = await get(url);
    t.equal(res.statusCode, 200);
    t.equal(json(res).resourceType, type);
    t.equal(json(res).id, id);
    t.equal(res.headers.etag, 'W/"1"');
  },
  async vread(t, type) {
    const { id, url } = await seed(t, type);
    const res = await get(`${url}/_history/1`);
    t.equal(res.statusCode, 200);
    t.equal(json(res).id, id);
    t.equal(json(res).meta.versionId, '1');
  },
  async update(t, type) {
    const { id, url } = await seed(t, type);
    const res = await put(url, { ...minimalResource(type), id });
    t.equal(res.statusCode, 200, 'update of an existing resource answers 200');
    t.equal(json(res).id, id);
    t.equal(json(res).meta.versionId, '2');
    t.equal(json(await get(url)).meta.versionId, '2', 'the update is what read returns');
  },
  async delete(t, type) {
    const { url } = await seed(t, type);
    const res = await del(url);
    t.equal(res.statusCode, 204);
    t.equal((await get(url)).statusCode, 410, 'the deleted resource reads as gone');
  },
  async 'history-instance'(t, type) {
    const { id, url } = await seed(t, type);
    if (!declaredCodes(type).includes('update')) {
      // Never updated (the audit trail): its history is its one version.
      const bundle = assertHistoryBundle(t, await get(`${url}/_history`), 'instance history');
      t.equal(bundle.total, 1);
      t.ok(bundle.entry?.every((e) => e.fullUrl === `http://localhost/fhir/${type}/${id}` && e.resource?.id === id), 'only this instance');
      return;
    }
    t.equal((await put(url, { ...minimalResource(type), id })).statusCode, 200, 'setup: a second version');
    const bundle = assertHistoryBundle(t, await get(`${url}/_history`), 'instance history');
    t.equal(bundle.total, 2);
    t.same(bundle.entry?.map((e) => e.request.method), ['PUT', 'POST'], 'both versions, newest first');
    t.ok(bundle.entry?.every((e) => e.fullUrl === `http://localhost/fhir/${type}/${id}` && e.resource?.id === id), 'only this instance');
  },
  async patch(t, type) {
    const { url } = await seed(t, type);
    const res = await server.inject({
      method: 'PATCH',
      url,
      payload: JSON.stringify([{ op: 'add', path: '/language', value: 'fr' }]),
      headers: { 'content-type': 'application/json-patch+json' },
    });
    t.equal(res.statusCode, 200);
    t.equal(json(res).language, 'fr');
    t.equal(json(res).meta.versionId, '2');
  },
  async 'search-type'(t, type) {
    const { id } = await seed(t, type);
    const res = await get(`/fhir/${type}?_id=${id}`);
    t.equal(res.statusCode, 200);
    const bundle = json(res);
    t.equal(bundle.type, 'searchset');
    t.same(bundle.entry.map((e: any) => e.resource.id), [id], 'finds the instance by _id');
  },
  async 'history-type'(t, type) {
    const { id } = await seed(t, type);
    // Type history lists a write once every transaction that began writing before it has ended, other
    // sessions' on a shared PostgreSQL server included (change-feed.ts): wait for it rather than race them.
    let response = await get(`/fhir/${type}/_history?_count=1000`);
    for (let waited = 0; waited < 30_000 && !json(response).entry?.some((e: { resource?: { id: string } }) => e.resource?.id === id); waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      response = await get(`/fhir/${type}/_history?_count=1000`);
    }
    const bundle = assertHistoryBundle(t, response, 'type history');
    t.ok(bundle.entry?.some((e) => e.resource?.id === id), 'includes the instance just created');
    // Deletion entries carry no resource: their type is in fullUrl.
    t.ok(bundle.entry?.every((e) => e.fullUrl.startsWith(`http://localhost/fhir/${type}/`)), `only ${type} versions`);
  },
};

/** A built-in definition of each conformance type (loaded from files, not stored). */
const KNOWN_CONFORMANCE: Record<string, { id: string; url: string }> = {
  CodeSystem: { id: 'administrative-gender', url: 'http://hl7.org/fhir/administrative-gender' },
  StructureDefinition: { id: 'fr-core-patient', url: 'https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient' },
  ValueSet: { id: 'administrative-gender', url: 'http://hl7.org/fhir/ValueSet/administrative-gender' },
};

const PERFORM_SYSTEM: Record<string, (t: Tap) => Promise<void>> = {
  async transaction(t) {
    const res = await post('/fhir', {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [{ fullUrl: 'urn:uuid:0c3f9c1e-1111-4c1e-9c1e-000000000001', resource: minimalResource('Organization'), request: { method: 'POST', url: 'Organization' } }],
    });
    t.equal(res.statusCode, 200);
    t.equal(json(res).type, 'transaction-response');
    t.equal(json(res).entry[0].response.status, '201 Created');
  },
  async batch(t) {
    const res = await post('/fhir', {
      resourceType: 'Bundle',
      type: 'batch',
      entry: [{ resource: minimalResource('Organization'), request: { method: 'POST', url: 'Organization' } }, { request: { method: 'GET', url: 'Organization/none' } }],
    });
    t.equal(res.statusCode, 200);
    t.equal(json(res).type, 'batch-response');
    t.same(json(res).entry.map((e: any) => e.response.status), ['201 Created', '404 Not Found']);
  },
  async 'search-system'(t) {
    const patient = await seed(t, 'Patient');
    const organization = await seed(t, 'Organization');
    const bundle = json(await get(`/fhir?_id=${patient.id},${organization.id}`));
    t.equal(bundle.type, 'searchset');
    t.same(bundle.entry.map((e: any) => `${e.resource.resourceType}/${e.resource.id}`).sort(), [`Organization/${organization.id}`, `Patient/${patient.id}`].sort());
  },
  async 'history-system'(t) {
    const patient = await seed(t, 'Patient');
    const organization = await seed(t, 'Organization');
    const bundle = assertHistoryBundle(t, await get('/fhir/_history?_count=1000'), 'system history');
    const seen = new Set(bundle.entry?.map((e) => `${e.resource?.resourceType}/${e.resource?.id}`));
    t.ok(seen.has(`Patient/${patient.id}`), 'includes a Patient version');
    t.ok(seen.has(`Organization/${organization.id}`), 'includes an Organization version: history spans types');
  },
};

t.test('the statement has one server rest entry declaring resources', async (t) => {
  t.equal(declared.resourceType, 'CapabilityStatement');
  t.equal(declared.rest?.length, 1);
  t.ok(rest, 'rest[0].mode is server');
  t.ok(declaredResources.length > 0);
});

t.test('(a) every declared type-level interaction is really served', async (t) => {
  for (const resource of declaredResources) {
    const type = resource.type;
    const codes = declaredCodes(type);
    t.equal(new Set(codes).size, codes.length, `${type} declares each interaction once`);
    for (const code of codes) {
      await t.test(`${type} ${code}`, async (t) => {
        const perform = PERFORM[code];
        if (!perform) return t.fail(`capability-statement.json declares ${code} on ${type}, which no test exercises`);
        await perform(t, type);
      });
    }
  }
});

t.test('(a) every declared system-level interaction is really served', async (t) => {
  t.ok(declaredSystemCodes.length > 0, 'the statement declares system interactions');
  for (const code of declaredSystemCodes) {
    await t.test(`system ${code}`, async (t) => {
      const perform = PERFORM_SYSTEM[code];
      if (!perform) return t.fail(`capability-statement.json declares system-level ${code}, which no test exercises`);
      await perform(t);
    });
  }
});

t.test('(b) every route the router serves is declared, for every served type', async (t) => {
  for (const route of ROUTES) {
    for (const [method, kind] of Object.entries(route.methods)) {
      if (kind === 'operation') continue; // operations are checked one by one below
      const code = CAPABILITY_CODE[kind];
      if (route.pattern.startsWith(':type')) {
        for (const type of SERVED_RESOURCE_TYPES) {
          if (type === 'AuditEvent' && REFUSED_AUDIT_WRITES[code] !== undefined) {
            // Not declared, and refused as such: the audit trail is the server's own and append-only.
            t.notOk(declaredCodes(type).includes(code), `${code} is not declared on AuditEvent`);
            const url = `/fhir/${route.pattern.replace(':type', type).replace(':id', 'cap-refused')}`;
            const res = await server.inject({ method: method as 'PUT', url, payload: method === 'PATCH' ? '[]' : JSON.stringify({ resourceType: type }), headers: { 'content-type': method === 'PATCH' ? 'application/json-patch+json' : FHIR_JSON } });
            t.equal(res.statusCode, REFUSED_AUDIT_WRITES[code], `${method} ${url} is refused`);
            t.equal(json(res).resourceType, 'OperationOutcome');
            continue;
          }
          t.ok(declaredCodes(type).includes(code), `${method} ${route.pattern} (${code}) is declared on ${type}`);
        }
      } else if (kind === 'capabilities') {
        const res = await get(`/fhir/${route.pattern}`);
        t.equal(res.statusCode, 200, `${method} /fhir/${route.pattern} answers`);
        t.equal(json(res).resourceType, 'CapabilityStatement');
      } else {
        t.ok(declaredSystemCodes.includes(code), `${method} ${route.pattern} (${code}) is declared at system level`);
      }
    }
  }
});

t.test('(b) the operations served are the operations declared, at the declared levels', async (t) => {
  const { defaultOperations } = await import('../src/operations/index.ts');
  const served = defaultOperations().list();
  const declaredSystem = (rest?.operation ?? []).map((o) => o.name).sort();
  t.same(declaredSystem, served.filter((o) => o.levels.includes('system')).map((o) => o.name).sort(), 'system-level operations');
  for (const resource of declaredResources) {
    const declaredOps = (resource.operation ?? []).map((o) => o.name).sort();
    const servedOps = served.filter((o) => (o.levels.includes('type') || o.levels.includes('instance')) && (!o.resourceTypes || o.resourceTypes.includes(resource.type))).map((o) => o.name).sort();
    t.same(declaredOps, servedOps, `${resource.type} operations`);
  }
  const unknown = await get('/fhir/Patient/$no-such-operation');
  t.equal(unknown.statusCode, 404, 'an undeclared operation is not served');
  t.equal(json(unknown).resourceType, 'OperationOutcome');
});

t.test('(b) ROUTES is all that is served: other methods on its paths answer 405 with Allow', async (t) => {
  const concrete = (pattern: string) => `/fhir/${pattern.replace(':type', 'Patient').replace(':id', 'cap-405').replace(':vid', '1').replace(':compartmentType', 'Immunization').replace('$:operation', '$no-such-operation')}`;
  for (const route of ROUTES) {
    const allowed = Object.keys(route.methods);
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'] as const) {
      if (allowed.includes(method)) continue;
      const withBody = method === 'POST' || method === 'PUT' || method === 'PATCH';
      const res = await server.inject({
        method,
        url: concrete(route.pattern),
        ...(withBody ? { payload: JSON.stringify(minimalResource('Patient')), headers: { 'content-type': FHIR_JSON } } : {}),
      });
      t.equal(res.statusCode, 405, `${method} ${concrete(route.pattern)}`);
      t.equal(json(res).resourceType, 'OperationOutcome');
      t.same(res.headers.allow?.toString().split(', ').sort(), [...allowed].sort(), 'Allow lists what the route serves');
    }
  }
});

t.test('(b) interactions the statement does not declare are refused, not half-served', async (t) => {
  // R4 TypeRestfulInteraction codes with the request a client would send to perform each. A client
  // must learn that the interaction is not there (404/405), not that its body is wrong (400/415).
  const typeLevel: Record<string, (type: string) => Promise<LightMyRequestResponse>> = {
    patch: (type) =>
      server.inject({ method: 'PATCH', url: `/fhir/${type}/undeclared`, payload: '[]', headers: { 'content-type': 'application/json-patch+json' } }),
    'search-type': (type) => get(`/fhir/${type}`),
  };
  for (const type of SERVED_RESOURCE_TYPES) {
    for (const [code, perform] of Object.entries(typeLevel)) {
      if (declaredCodes(type).includes(code)) continue;
      const res = await perform(type);
      t.ok([404, 405].includes(res.statusCode), `${code} on ${type} is not served (${res.statusCode})`);
      t.equal(json(res).resourceType, 'OperationOutcome');
    }
  }
  const systemLevel: Record<string, () => Promise<LightMyRequestResponse>> = {
    transaction: () => post('/fhir', { resourceType: 'Bundle', type: 'transaction', entry: [] }),
    batch: () => post('/fhir', { resourceType: 'Bundle', type: 'batch', entry: [] }),
    'search-system': () => get('/fhir?_id=x'),
  };
  for (const [code, perform] of Object.entries(systemLevel)) {
    if (declaredSystemCodes.includes(code)) continue;
    const res = await perform();
    t.ok([404, 405].includes(res.statusCode), `system ${code} is not served (${res.statusCode})`);
    t.equal(json(res).resourceType, 'OperationOutcome');
  }
});

/** A syntactically valid value for a parameter of each type, enough to prove the engine accepts it. */
const SAMPLE_VALUE: Record<string, string> = {
  token: 'http://example.org|x',
  string: 'x',
  date: 'ge2020-01-01',
  reference: 'Patient/x',
  uri: 'http://example.org/x',
  number: '1',
  quantity: '5|http://unitsofmeasure.org|mg',
  composite: 'a$b',
};

t.test('(b) every declared search parameter is accepted, and every one the engine has is declared', async (t) => {
  const { registry } = await import('./helpers/search.ts');
  for (const resource of declaredResources) {
    const declaredParams = resource.searchParam ?? [];
    const engineParams = registry.forType(resource.type)
      .map((p) => `${p.code}:${p.type}`)
      .sort();
    t.same(declaredParams.map((p) => `${p.name}:${p.type}`).sort(), engineParams, `${resource.type}: declared = engine's parameters, with their types`);
    for (const param of declaredParams) {
      const engineParam = registry.get(resource.type, param.name);
      const value = engineParam ? sampleValue(engineParam, registry)! : SAMPLE_VALUE[param.type]!;
      const res = await get(`/fhir/${resource.type}?${param.name}=${encodeURIComponent(value)}`, { prefer: 'handling=strict' });
      t.equal(res.statusCode, 200, `${resource.type}?${param.name} (${param.type}) is searchable`);
    }
  }
  for (const param of rest?.searchParam ?? []) {
    const res = await get(`/fhir?_type=Patient&${param.name}=${encodeURIComponent(SAMPLE_VALUE[param.type]!)}`, { prefer: 'handling=strict' });
    t.equal(res.statusCode, 200, `system search by ${param.name}`);
  }
  // Every R4 compartment, by its official definition's URL, and each searchable for a type it holds.
  const compartments = loadCompartments();
  t.same(rest?.compartment, [...compartments.values()].map((c) => c.url));
  t.same(rest?.compartment, ['patient', 'encounter', 'relatedPerson', 'practitioner', 'device'].map((id) => `http://hl7.org/fhir/CompartmentDefinition/${id}`));
  for (const [type, path] of [['Patient', 'Immunization'], ['Encounter', 'DocumentReference'], ['RelatedPerson', 'DocumentReference'], ['Practitioner', 'Immunization'], ['Device', 'DocumentReference']] as const) {
    t.ok(compartments.get(type)?.params.has(path), `${path} is in the ${type} compartment`);
    t.equal((await get(`/fhir/${type}/x/${path}`)).statusCode, 200, `the ${type} compartment is searchable`);
  }
  t.equal((await get('/fhir/Practitioner/x/Consent')).statusCode, 404, 'a type outside a compartment is not searched in it');
});

t.test("(b) each type's supportedProfile is every profile the validator holds its resources to, and each is checked", async (t) => {
  const loaded = loadValidationContext().registry.all();
  for (const resource of declaredResources) {
    const type = resource.type;
    const declaredProfiles = resource.supportedProfile ?? [];
    t.equal(new Set(declaredProfiles).size, declaredProfiles.length, `${type} lists each profile once`);
    // Every resource profile of the type the validator has loaded: a resource claiming one is held to it.
    const known = loaded.filter((d) => d.kind === 'resource' && d.derivation === 'constraint' && d.type === type && d.snapshot).map((d) => d.url);
    t.same([...declaredProfiles].sort(), known.sort(), `${type}: declared = the validator's profiles of the type`);
    const fallback = FRENCH_DEFAULT_PROFILES[type];
    if (fallback) t.equal(declaredProfiles[0], fallback, `${type}: its default profile first`);
    for (const profile of declaredProfiles) {
      // This server runs without default profiles: the nominated one is the only profile checked.
      const res = await post(`/fhir/${type}/$validate?profile=${encodeURIComponent(profile)}`, minimalResource(type));
      t.equal(res.statusCode, 200);
      t.notOk(json(res).issue.some((i: any) => i.code === 'not-supported' || /is a profile of/.test(i.diagnostics)), `${type} is validated against ${profile}`);
    }
  }
  t.ok(declaredResources.some((r) => (r.supportedProfile?.length ?? 0) > 0), 'the French profiles are declared');
  // FR Core INS asks for an INS identifier, which base R4 does not.
  const ins = declaredResources.find((r) => r.type === 'Patient')?.supportedProfile?.find((url) => url.endsWith('/fr-core-patient-ins'));
  t.ok(ins, 'FR Core INS Patient is declared');
  const hasErrors = async (body: unknown) => json(await post('/fhir/Patient/$validate', body)).issue.some((i: any) => i.severity === 'error');
  t.notOk(await hasErrors(minimalResource('Patient')), 'a Patient claiming nothing passes here');
  t.ok(await hasErrors({ ...minimalResource('Patient'), meta: { profile: [ins] } }), 'claiming a declared profile, it is held to it');
});

t.test('(c) the declared resource types are exactly the served ones', async (t) => {
  const types = declaredResources.map((r) => r.type);
  t.equal(new Set(types).size, types.length, 'each type declared once');
  t.same([...types].sort(), [...SERVED_RESOURCE_TYPES].sort(), 'the stored types, conformance types included');
  for (const type of CONFORMANCE_RESOURCE_TYPES) t.ok(isServedResourceType(type), `${type} is stored like any other type`);
});

t.test('(c) the built-in conformance resources are read and searched beside the stored ones, and are read-only', async (t) => {
  for (const type of CONFORMANCE_RESOURCE_TYPES) {
    const { id, url } = KNOWN_CONFORMANCE[type]!;
    const read = await get(`/fhir/${type}/${id}`);
    t.equal(read.statusCode, 200, `the built-in ${type}/${id} is read`);
    t.equal(json(read).url, url);
    const byUrl = json(await get(`/fhir/${type}?url=${encodeURIComponent(url)}`));
    t.same(byUrl.entry.map((e: any) => e.resource.id), [id], `the built-in ${type} is found by url`);
    const body = { resourceType: type, id, status: 'draft' };
    for (const res of [
      await put(`/fhir/${type}/${id}`, body),
      await del(`/fhir/${type}/${id}`),
      await server.inject({ method: 'PATCH', url: `/fhir/${type}/${id}`, payload: '[]', headers: { 'content-type': 'application/json-patch+json' } }),
    ]) {
      t.equal(res.statusCode, 405, `${res.raw.req.method} on the built-in ${type}/${id}`);
      t.equal(json(res).resourceType, 'OperationOutcome');
      t.equal(res.headers.allow, 'GET');
    }
    t.equal((await get(`/fhir/${type}/${id}/_history`)).statusCode, 404, `the built-in ${type} has no stored history`);
    t.equal((await get(`/fhir/${type}/no-such-definition`)).statusCode, 404);
  }
});

t.test('(c) an undeclared resource type answers 404 with an OperationOutcome', async (t) => {
  // Parameters is an R4 type without a RESTful endpoint (R4 parameters.html); Observatoin is no type at all (a typo).
  t.notOk(declaredResources.some((r) => r.type === 'Parameters'), 'Parameters is not declared');
  const parameters = { resourceType: 'Parameters', parameter: [{ name: 'x', valueString: 'y' }] };
  for (const res of [
    await get('/fhir/Parameters/x'),
    await post('/fhir/Parameters', parameters),
    await put('/fhir/Parameters/x', { ...parameters, id: 'x' }),
    await get('/fhir/Parameters/_history'),
    await get('/fhir/Observatoin/x'),
  ]) {
    t.equal(res.statusCode, 404);
    t.equal(json(res).resourceType, 'OperationOutcome');
    t.equal(json(res).issue[0].code, 'not-found');
  }
  t.match(json(await get('/fhir/Parameters/x')).issue[0].diagnostics, /Parameters/, 'the outcome names the type');
});

t.test('(d) fhirVersion and format are true', async (t) => {
  t.equal(declared.fhirVersion, '4.0.1');
  t.ok(declared.format.includes('application/fhir+json'), 'declares application/fhir+json');
  for (const format of declared.format) {
    const res = await get(`/fhir/metadata?_format=${encodeURIComponent(format)}`);
    t.equal(res.statusCode, 200, `_format=${format} is produced`);
    t.match(res.headers['content-type'], /^application\/(fhir\+)?json/);
    t.equal(json(res).resourceType, 'CapabilityStatement');
  }
  t.notOk(declared.format.some((f) => /xml/.test(f)), 'XML is not declared');
  t.equal((await get('/fhir/metadata?_format=xml')).statusCode, 406, 'and is not produced');
});

t.test('(d) /metadata serves the declared statement', async (t) => {
  const served = json<CapabilityStatement>(await get('/fhir/metadata'));
  t.equal(served.fhirVersion, declared.fhirVersion);
  t.same(served.format, declared.format);
  // Only the SMART oauth-uris, paths in the file, are served absolute on the server's origin.
  const expected = structuredClone(declared.rest!);
  resolveOAuthUris(expected[0]!.security!, 'http://localhost');
  t.same(served.rest, expected, 'the served rest section is the file, its endpoints on the server origin');
  t.equal(served.kind, 'instance');
  t.equal(served.implementation?.url, 'http://localhost/fhir', 'an instance statement names its base URL');
});

t.test('(d) versioning, readHistory and updateCreate match behaviour', async (t) => {
  for (const resource of declaredResources) {
    const type = resource.type;
    await t.test(type, async (t) => {
      t.ok(resource.versioning, 'versioning is declared');
      if (resource.versioning === 'versioned' && !declaredCodes(type).includes('update')) {
        // Never updated (the audit trail): its one version is numbered all the same.
        const { url } = await seed(t, type);
        const read = await get(url);
        t.equal(json(read).meta.versionId, '1', 'meta.versionId is maintained');
        t.equal(read.headers.etag, 'W/"1"');
      } else if (resource.versioning === 'versioned' || resource.versioning === 'versioned-update') {
        const { id, url } = await seed(t, type);
        const updated = await put(url, { ...minimalResource(type), id });
        t.equal(json(updated).meta.versionId, '2', 'meta.versionId is maintained');
        t.equal(updated.headers.etag, 'W/"2"');
        if (resource.versioning === 'versioned-update') {
          t.equal((await put(url, { ...minimalResource(type), id }, { 'if-match': 'W/"1"' })).statusCode, 412, 'a stale If-Match is refused');
        }
      }
      if (resource.readHistory === true) {
        const { id, url } = await seed(t, type);
        t.equal((await put(url, { ...minimalResource(type), id, language: 'fr' })).statusCode, 200, 'setup: version 2');
        t.equal(json(await get(url)).language, 'fr');
        const v1 = await get(`${url}/_history/1`);
        t.equal(v1.statusCode, 200, 'a past version is readable by vread');
        t.equal(json(v1).meta.versionId, '1');
        t.equal(json(v1).language, undefined, 'vread returns the past content, not the current one');
      }
      if (resource.updateCreate === true) {
        const id = `cap-new-${type.toLowerCase()}`;
        const res = await put(`/fhir/${type}/${id}`, { ...minimalResource(type), id });
        t.equal(res.statusCode, 201, 'PUT of a new id creates it');
        t.equal(json(res).id, id, 'with the client-chosen id');
        t.equal((await get(`/fhir/${type}/${id}`)).statusCode, 200);
      } else {
        const body = minimalResource(type);
        t.ok((await put(`/fhir/${type}/cap-no-create`, { ...body, id: 'cap-no-create' })).statusCode >= 400, 'PUT of a new id is refused');
      }
      t.ok(resource.conditionalRead === undefined || resource.conditionalRead === 'not-supported', 'conditionalRead is not claimed');
      if (resource.conditionalCreate) {
        const { id } = await seed(t, type);
        const again = await post(`/fhir/${type}`, minimalResource(type), { 'if-none-exist': `_id=${id}` });
        t.equal(again.statusCode, 200, 'If-None-Exist matching one resource creates nothing');
        t.equal(json(again).id, id);
      }
      if (resource.conditionalUpdate) {
        const { id } = await seed(t, type);
        const res = await put(`/fhir/${type}?_id=${id}`, minimalResource(type));
        t.equal(res.statusCode, 200, 'PUT with criteria updates the one match');
        t.equal(json(res).id, id);
        t.equal(json(res).meta.versionId, '2');
      }
      if (resource.conditionalDelete === 'single') {
        const { id, url } = await seed(t, type);
        t.equal((await server.inject({ method: 'DELETE', url: `/fhir/${type}?_id=${id}` })).statusCode, 204, 'DELETE with criteria deletes the one match');
        t.equal((await get(url)).statusCode, 410);
      }
    });
  }
});
