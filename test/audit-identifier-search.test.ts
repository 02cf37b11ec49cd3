// The trail's index rows are built from the event itself (security/audit-index-rows.ts) rather than extracted;
// with encryption at rest they must hold identifiers as extraction would, hashed: the client of an event is an
// identifier (`agent.who.identifier`, the SMART client id), and an auditor searching the trail by it
// (`AuditEvent?agent:identifier=…`) must find the events, while the index holds no client id in clear.
import type { AuditEvent, Bundle } from 'fhir/r4';
import t from 'tap';
import { FHIR_JSON, startTestServer } from './helpers/app.ts';

const CLIENT_ID_SYSTEM = 'urn:ietf:params:oauth:client-id';
const CLIENT = 'labo-7f3c91d2';

t.test('the trail searched by its client identifier, on an encrypting server', async (t) => {
  const server = await startTestServer(t, { audit: true });
  const admin = await server.token({ scope: 'system/*.cruds', clientId: 'auditor-app' });
  const lab = await server.token({ scope: 'system/*.cruds', clientId: CLIENT });
  const created = await server.inject({ method: 'POST', url: '/fhir/Patient', headers: { authorization: `Bearer ${lab}`, 'content-type': FHIR_JSON }, payload: JSON.stringify({ resourceType: 'Patient', name: [{ family: 'Trace' }] }) });
  t.equal(created.statusCode, 201);
  const read = await server.inject({ method: 'GET', url: `/fhir/Patient/${created.json().id}`, headers: { authorization: `Bearer ${lab}` } });
  t.equal(read.statusCode, 200);

  const search = async (value: string) => {
    const res = await server.inject({ method: 'GET', url: `/fhir/AuditEvent?agent:identifier=${encodeURIComponent(value)}`, headers: { authorization: `Bearer ${admin}` } });
    t.equal(res.statusCode, 200);
    return ((res.json() as Bundle).entry ?? []).map((entry) => entry.resource as AuditEvent);
  };
  const events = await search(`${CLIENT_ID_SYSTEM}|${CLIENT}`);
  t.ok(events.length >= 2, `the lab's create and read are found by its client id (${events.length})`);
  for (const event of events) t.ok(event.agent?.some((agent) => agent.who?.identifier?.value === CLIENT), 'each names that client');
  t.same(await search(`${CLIENT_ID_SYSTEM}|another-client`), [], 'another client id finds none of them');

  const { rows } = await server.rawDb.query<{ row: string }>('SELECT t::text AS row FROM search_reference t');
  t.notOk(rows.some((row) => row.row.includes(CLIENT)), 'no index row holds the client id in clear');
});
