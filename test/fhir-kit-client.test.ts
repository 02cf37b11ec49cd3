import t, { type Test } from 'tap';
import type { AddressInfo } from 'node:net';
import { CapabilityTool, Client, type FhirResource } from 'fhir-kit-client';
import { startTestServer } from './helpers/app.ts';
import { createReferenceTargets, minimalResource } from './helpers/fixtures.ts';

/**
 * The server as a stock FHIR client sees it: a listening server driven by the npm `fhir-kit-client`,
 * unchanged and unconfigured beyond its base URL. What it needs is what any generic client needs.
 */
// Its Location and links name the address it is called by, which FHIR_ALLOWED_HOSTS lets the server use
// (localhost: the set-up's requests, injected).
const server = await startTestServer(t, { allowedHosts: ['127.0.0.1', 'localhost'] });
const { app } = server;
await createReferenceTargets(server);
await app.listen({ port: 0, host: '127.0.0.1' });
const baseUrl = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/fhir`;
const client = new Client({ baseUrl, bearerToken: server.authorization.slice('Bearer '.length) });

/** The HTTP status of the answer behind a resource the client returned. */
const statusOf = (resource: FhirResource) => Client.httpFor(resource).response?.status;
const headerOf = (resource: FhirResource, name: string) => Client.httpFor(resource).response?.headers.get(name);

type Tap = Test;

interface ClientError {
  response?: { status: number; data: any };
}

/** The error a client call rejected with; fails the test when the call succeeded instead. */
async function rejection(t: Tap, call: Promise<unknown>): Promise<ClientError> {
  try {
    await call;
  } catch (error) {
    return error as ClientError;
  }
  t.fail('the call was expected to fail');
  return {};
}

const patient = minimalResource('Patient') as FhirResource;

t.test('capabilityStatement() reads the statement, and the client understands it', async (t) => {
  const cs = await client.capabilityStatement();
  t.equal(statusOf(cs), 200);
  t.equal(cs.resourceType, 'CapabilityStatement');
  t.equal(cs.fhirVersion, '4.0.1');
  t.equal((cs.implementation as { url?: string }).url, baseUrl, 'the instance names the base URL the client used');
  const tool = new CapabilityTool(cs);
  for (const code of ['read', 'vread', 'create', 'update', 'delete', 'history-instance', 'history-type']) {
    t.ok(tool.resourceCan('Patient', code), `the client sees Patient ${code}`);
  }
  t.ok(tool.serverCan('history-system'), 'the client sees system history');
  t.ok(tool.resourceCan('Patient', 'patch'), 'and patch');
  t.notOk(tool.resourceCan('Patient', 'search-system'), 'but not what is undeclared');
});

t.test('create, read, vread, update, delete, then read is gone', async (t) => {
  const created = await client.create({ resourceType: 'Patient', body: patient });
  t.equal(statusOf(created), 201);
  const id = created.id as string;
  t.match(id, /^[A-Za-z0-9\-.]{1,64}$/);
  t.equal((created.meta as { versionId: string }).versionId, '1');
  t.equal(headerOf(created, 'location'), `${baseUrl}/Patient/${id}/_history/1`, 'Location uses the base URL the client called');

  const read = await client.read({ resourceType: 'Patient', id });
  t.equal(statusOf(read), 200);
  t.same(read, created, 'read returns what create returned');
  t.equal(headerOf(read, 'etag'), 'W/"1"');

  const updated = await client.update({ resourceType: 'Patient', id, body: { ...created, gender: 'other' } });
  t.equal(statusOf(updated), 200);
  t.equal((updated.meta as { versionId: string }).versionId, '2');
  t.equal(updated.gender, 'other');
  t.equal((await client.read({ resourceType: 'Patient', id })).gender, 'other', 'read sees the update');

  const v1 = await client.vread({ resourceType: 'Patient', id, version: '1' });
  t.equal(statusOf(v1), 200);
  t.equal(v1.gender, 'female', 'vread of version 1 returns the original');
  t.equal((v1.meta as { versionId: string }).versionId, '1');

  const deleted = await client.delete({ resourceType: 'Patient', id });
  t.equal(statusOf(deleted), 204);

  const gone = await rejection(t, client.read({ resourceType: 'Patient', id }));
  t.equal(gone.response?.status, 410, 'read after delete is 410 Gone');
  t.equal(gone.response?.data.resourceType, 'OperationOutcome');
  t.equal(gone.response?.data.issue[0].code, 'deleted');
  t.equal((await client.vread({ resourceType: 'Patient', id, version: '2' })).gender, 'other', 'past versions stay readable');
});

t.test('update of a new id creates it (update-as-create)', async (t) => {
  const created = await client.update({ resourceType: 'Organization', id: 'fkc-org-1', body: { ...minimalResource('Organization'), id: 'fkc-org-1' } as FhirResource });
  t.equal(statusOf(created), 201);
  t.equal(created.id, 'fkc-org-1');
  t.equal((await client.read({ resourceType: 'Organization', id: 'fkc-org-1' })).name, 'Centre hospitalier de Test');
});

t.test('history at instance, type and system level', async (t) => {
  const created = await client.create({ resourceType: 'Practitioner', body: minimalResource('Practitioner') as FhirResource });
  const id = created.id as string;
  await client.update({ resourceType: 'Practitioner', id, body: { ...created, active: true } });
  await client.delete({ resourceType: 'Practitioner', id });
  const other = await client.create({ resourceType: 'Immunization', body: minimalResource('Immunization') as FhirResource });

  const instance = await client.resourceHistory({ resourceType: 'Practitioner', id });
  t.equal(statusOf(instance), 200);
  t.equal(instance.resourceType, 'Bundle');
  t.equal(instance.type, 'history');
  t.equal(instance.total, 3);
  const entries = instance.entry as Array<{ request: { method: string }; response: { etag: string }; resource?: FhirResource }>;
  t.same(entries.map((e) => e.request.method), ['DELETE', 'PUT', 'POST'], 'newest first');
  t.same(entries.map((e) => e.response.etag), ['W/"3"', 'W/"2"', 'W/"1"']);
  t.equal(entries[0]?.resource, undefined, 'a deletion carries no resource');
  t.equal(entries[1]?.resource?.active, true);

  const type = await client.typeHistory({ resourceType: 'Practitioner' });
  t.equal(type.type, 'history');
  const typeUrls = (type.entry as Array<{ fullUrl: string }>).map((e) => e.fullUrl);
  t.ok(typeUrls.length >= 3);
  t.ok(typeUrls.every((url) => url.startsWith(`${baseUrl}/Practitioner/`)), 'only Practitioner versions');

  const system = await client.systemHistory();
  t.equal(statusOf(system), 200);
  t.equal(system.type, 'history');
  const systemUrls = (system.entry as Array<{ fullUrl: string }>).map((e) => e.fullUrl);
  t.ok(systemUrls.includes(`${baseUrl}/Practitioner/${id}`));
  t.ok(systemUrls.includes(`${baseUrl}/Immunization/${other.id}`), 'system history spans types');

  const viaDispatcher = await client.history({ resourceType: 'Practitioner', id });
  t.equal(viaDispatcher.total, 3, 'history() dispatches to instance history');
});

t.test('client errors carry an OperationOutcome the client can read', async (t) => {
  const missing = await rejection(t, client.read({ resourceType: 'Patient', id: 'fkc-does-not-exist' }));
  t.equal(missing.response?.status, 404);
  t.equal(missing.response?.data.resourceType, 'OperationOutcome');
  t.equal(missing.response?.data.issue[0].code, 'not-found');

  const created = await client.create({ resourceType: 'Patient', body: patient });
  const noVersion = await rejection(t, client.vread({ resourceType: 'Patient', id: created.id as string, version: '9' }));
  t.equal(noVersion.response?.status, 404);
  t.equal(noVersion.response?.data.resourceType, 'OperationOutcome');

  const invalid = await rejection(t, client.create({ resourceType: 'Patient', body: { resourceType: 'Patient', gender: 'unknown-value' } }));
  t.equal(invalid.response?.status, 400, 'an invalid resource is refused');
  t.equal(invalid.response?.data.resourceType, 'OperationOutcome');
  t.ok(invalid.response?.data.issue.some((i: { severity: string }) => i.severity === 'error'));

  const mismatch = await rejection(t, client.update({ resourceType: 'Patient', id: 'fkc-a', body: { ...patient, id: 'fkc-b' } }));
  t.equal(mismatch.response?.status, 400, 'an update whose body id differs from the URL is refused');
  t.equal(mismatch.response?.data.resourceType, 'OperationOutcome');

  const unserved = await rejection(t, client.read({ resourceType: 'Observation', id: 'x' }));
  t.equal(unserved.response?.status, 404, 'an unserved type is 404');
  t.equal(unserved.response?.data.resourceType, 'OperationOutcome');
});
