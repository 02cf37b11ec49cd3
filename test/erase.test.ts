import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Resource } from 'fhir/r4';
import { authorizationStore } from '../src/store/authorization.ts';
import { DataKeys, LocalKeyWrapper } from '../src/store/encryption.ts';
import { openStorage } from '../src/store/storage.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import { DEFAULT_MAX_INDEX_ROWS } from '../src/store/index-writer.ts';
import { DEFAULT_BINARY_INLINE_LIMIT } from '../src/store/binary-store.ts';
import type { Database } from '../src/store/database.ts';
import { FHIR_JSON, json, onPostgres, startTestServer, TEST_MASTER_KEY } from './helpers/app.ts';
import { drainAuditLog } from '../src/store/audit-log.ts';

// Closing a record (issue 18 item 3): Patient/{id}/$erase destroys the patient's data key and deletes its
// record, so that afterwards nothing of it can be read in the tables, nor, on PGlite, in the data folder.
const NAME = 'Zyxwortelbaum';
const SECRET = 'INS-Quirinalis-88412';
const LETTER = 'Ostrogothic discharge letter';

const server = await startTestServer(t, { audit: true });
const registry = new SearchParameterRegistry(loadSearchParameters());

/** The erased strings as they could sit in a row: text, and hex of bytes (bytea as text). */
const NEEDLES = [NAME, SECRET, LETTER, Buffer.from(SECRET).toString('hex'), Buffer.from(LETTER).toString('hex')];

const post = async (body: Record<string, unknown>, headers: Record<string, string> = {}) => {
  const response = await server.inject({ method: 'POST', url: `/fhir/${body.resourceType as string}`, payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON, ...headers } });
  if (response.statusCode !== 201) throw new Error(`${body.resourceType as string} not created: ${response.body}`);
  return json(response);
};

/** A patient's record: the patient, an Observation, a document with its Binary, a Consent; and what reads it leave in the trail. */
async function writeRecord(name: string, secret: string, letter: string) {
  const patient = await post({ resourceType: 'Patient', name: [{ family: name, given: ['Aurelia'] }], identifier: [{ system: 'urn:test:patient-number', value: secret }] });
  const observation = await post({ resourceType: 'Observation', status: 'final', code: { text: `${name} glycaemia` }, subject: { reference: `Patient/${patient.id}` }, note: [{ text: secret }] });
  const document = await post({ resourceType: 'DocumentReference', status: 'current', description: `${name} ${letter}`, subject: { reference: `Patient/${patient.id}` }, content: [{ attachment: { contentType: 'text/plain', title: letter } }] });
  const binary = await post({ resourceType: 'Binary', contentType: 'text/plain', securityContext: { reference: `DocumentReference/${document.id}` }, data: Buffer.from(`${letter} for ${name}, ${secret}. `.repeat(40)).toString('base64') });
  const consent = await post({
    resourceType: 'Consent',
    status: 'active',
    scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: `Patient/${patient.id}` },
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
  });
  // Reads and searches leave AuditEvents about the patient, and an update a second version in history. A search
  // that names no patient but finds them (by identifier) is on their trail too, its query holding the identifier.
  await server.inject({ method: 'GET', url: `/fhir/Patient/${patient.id}` });
  await server.inject({ method: 'GET', url: `/fhir/Observation?subject=Patient/${patient.id}` });
  await server.inject({ method: 'GET', url: `/fhir/Patient?identifier=${encodeURIComponent(`urn:test:patient-number|${secret}`)}` });
  await server.inject({ method: 'PUT', url: `/fhir/Observation/${observation.id}`, payload: JSON.stringify({ ...observation, status: 'amended' }), headers: { 'content-type': FHIR_JSON } });
  return { patient, observation, document, binary, consent };
}

const TABLES = [
  'resource', 'resource_history', 'search_token', 'search_string', 'search_date', 'search_reference', 'search_uri', 'search_number', 'search_quantity',
  'search_composite', 'search_position', 'compartment_member', 'consent_rule', 'resource_visibility', 'binary_context', 'binary_content', 'binary_chunk', 'data_key',
  'version_member', 'version_visibility', 'authz_account',
];

/** Rows of every table of the store, as text, that hold one of `needles`. */
async function rowsHolding(db: Database, needles: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const table of TABLES) {
    const { rows } = await db.query<{ row: string }>(`SELECT t::text AS row FROM ${table} t`);
    for (const { row } of rows) if (needles.some((needle) => row.includes(needle))) found.push(`${table}: ${row.slice(0, 160)}`);
  }
  return found;
}

const record = await writeRecord(NAME, SECRET, LETTER);
const other = await writeRecord('Keepwell', 'INS-Untouched-1', 'Visigothic note');

t.test('the tables hold the record in its index rows only, until erased', async (t) => {
  const found = await rowsHolding(server.rawDb, NEEDLES);
  t.ok(found.length > 0, 'the scan finds the clear index rows, so it can fail');
  t.notOk(found.some((row) => /^(resource|resource_history|binary_chunk): /.test(row)), 'content, history and bytes are sealed');
});

t.test('only the patient themselves or an administrator may erase a record, by POST', async (t) => {
  const as = async (token: string) => server.inject({ method: 'POST', url: `/fhir/Patient/${record.patient.id}/$erase`, headers: { authorization: `Bearer ${token}` } });
  const practitioner = await server.token({ scope: 'user/*.cruds', fhirUser: 'Practitioner/dr-house' });
  t.equal((await as(practitioner)).statusCode, 403, 'a professional with every permission');
  const otherPatient = await server.token({ scope: 'patient/*.cruds', patient: other.patient.id, fhirUser: `Patient/${other.patient.id}` });
  t.equal((await as(otherPatient)).statusCode, 403, 'another patient');
  const launchedOnly = await server.token({ scope: 'patient/*.cruds', patient: record.patient.id, fhirUser: 'Practitioner/dr-house' });
  t.equal((await as(launchedOnly)).statusCode, 403, "a professional's app launched on the patient");
  const readOnly = await server.token({ scope: 'system/*.rs' });
  t.equal((await as(readOnly)).statusCode, 403, 'a system client that may not delete');
  const get = await server.inject({ method: 'GET', url: `/fhir/Patient/${record.patient.id}/$erase` });
  t.equal(get.statusCode, 405);
  // It vacuums outside any transaction: not a transaction's entry, not even an administrator's (a batch's entries run each on its own).
  const admin = await server.token({ scope: 'system/*.cruds' });
  const inTransaction = await server.inject({
    method: 'POST',
    url: '/fhir',
    payload: JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: { resourceType: 'Parameters' }, request: { method: 'POST', url: `Patient/${record.patient.id}/$erase` } }] }),
    headers: { 'content-type': FHIR_JSON, authorization: `Bearer ${admin}` },
  });
  t.equal(inTransaction.statusCode, 400, 'refused as a transaction entry');
  t.match(json(inTransaction).issue[0].diagnostics, /cannot run inside a transaction Bundle/);
  t.equal((await server.inject({ method: 'GET', url: `/fhir/Patient/${record.patient.id}` })).statusCode, 200, 'nothing was erased');
});

t.test('the patient erases their own record: nothing of it is readable afterwards, the rest untouched', async (t) => {
  await drainAuditLog(server.db);
  const { rows: auditBefore } = await server.db.query<{ id: string }>(
    `SELECT id FROM resource WHERE resource_type = 'AuditEvent' AND id IN (SELECT resource_id FROM search_reference WHERE resource_type = 'AuditEvent' AND target_type = 'Patient' AND target_id = $1)`,
    [record.patient.id],
  );
  t.ok(auditBefore.length >= 8, `the trail has events about the patient (${auditBefore.length})`);
  // The patient's login for the embedded authorization server (npm run account), named after them.
  await server.rawDb.query(`INSERT INTO authz_account (username, password_hash, fhir_user, patient) VALUES ($1, 'scrypt$hash', $2, $2)`, [`${NAME}.Aurelia`, `Patient/${record.patient.id}`]);
  // What the authorization server remembers about her (as oidc-provider's records and ours name it): her session,
  // approval, grant and refresh token; a practitioner's grant with her as launch context and its refresh token; an
  // EHR launch and a picker choice naming her. And the same about the other patient, which must stay.
  const authz = authorizationStore(server.rawDb);
  const remember = async (patient: string, account: string) => {
    const records: Array<[string, string, Record<string, unknown>]> = [
      ['Session', `session-${account}`, { accountId: account, authorizations: {} }],
      ['Approval', JSON.stringify([account, 'app']), { accountId: account, clientId: 'app', scopes: ['patient/*.rs'] }],
      ['Grant', `grant-${account}`, { accountId: account, clientId: 'app', jti: `grant-${account}` }],
      ['LaunchContext', `grant-${account}`, { grantId: `grant-${account}`, patient, fhirUser: `Patient/${patient}` }],
      ['RefreshToken', `refresh-${account}`, { accountId: account, grantId: `grant-${account}`, clientId: 'app' }],
      ['Grant', `grant-dr-${patient}`, { accountId: 'dr-house', clientId: 'app', jti: `grant-dr-${patient}` }],
      ['LaunchContext', `grant-dr-${patient}`, { grantId: `grant-dr-${patient}`, patient, encounter: 'e1', fhirUser: 'Practitioner/dr-house' }],
      ['RefreshToken', `refresh-dr-${patient}`, { accountId: 'dr-house', grantId: `grant-dr-${patient}`, clientId: 'app' }],
      ['AuthorizationCode', `code-dr-${patient}`, { accountId: 'dr-house', grantId: `grant-dr-${patient}`, clientId: 'app' }],
      ['Launch', `launch-${patient}`, { patient }],
      ['InteractionForm', `form-${patient}`, { uid: `form-${patient}`, csrf: 'x', patient: `Patient/${patient}` }],
    ];
    for (const [model, id, payload] of records) await authz.saveRecord(model, id, payload, 3600);
    return records;
  };
  const hers = await remember(record.patient.id, `${NAME}.Aurelia`);
  await server.rawDb.query(`INSERT INTO authz_account (username, password_hash, fhir_user, patient) VALUES ('keepwell', 'scrypt$hash', $1, $1)`, [`Patient/${other.patient.id}`]);
  const theirs = await remember(other.patient.id, 'keepwell');
  await authz.saveRecord('Approval', JSON.stringify(['dr-house', 'app']), { accountId: 'dr-house', clientId: 'app', scopes: ['user/*.rs'] }, 3600);
  const own = await server.token({ scope: 'patient/*.cruds', patient: record.patient.id, fhirUser: `Patient/${record.patient.id}` });
  const erased = await server.inject({ method: 'POST', url: `/fhir/Patient/${record.patient.id}/$erase`, headers: { authorization: `Bearer ${own}` } });
  t.equal(erased.statusCode, 200, erased.body);
  t.equal(json(erased).resourceType, 'OperationOutcome');

  // Scanned before any request after the erasure: those would leave events of their own.
  t.same(await rowsHolding(server.rawDb, NEEDLES), [], 'no row of any table holds the record in clear, the patient\'s login account included');
  // With the master key and a cold cache, what is left cannot be opened to the record either: not a resource, not
  // an AuditEvent's details (its queries, base64, decoded), not an event naming the patient (but the erasure's own).
  const fresh = new DataKeys(new LocalKeyWrapper(Buffer.from(TEST_MASTER_KEY, 'base64')));
  const { rows } = await server.rawDb.query<{ content: string }>(`SELECT content FROM resource WHERE content IS NOT NULL UNION ALL SELECT content FROM resource_history WHERE content IS NOT NULL`);
  const opened = await fresh.openAll(server.rawDb, rows.map((row) => row.content));
  t.ok(opened.some((text) => text === null), 'AuditEvents sealed under the destroyed key stay sealed');
  const readable = opened.filter((text): text is string => text !== null).map((text) => {
    const resource = JSON.parse(text) as { resourceType: string; entity?: Array<{ query?: string }> };
    const queries = resource.resourceType === 'AuditEvent' ? (resource.entity ?? []).flatMap((e) => (e.query ? [Buffer.from(e.query, 'base64').toString('utf8')] : [])) : [];
    return [text, ...queries].join('\n');
  });
  t.same(readable.filter((text) => NEEDLES.some((needle) => text.includes(needle))), [], 'nothing that opens is about the record, audit details included');
  const naming = readable.filter((text) => text.includes(`"Patient/${record.patient.id}`) && !text.includes('"$erase"'));
  t.same(naming, [], 'no readable AuditEvent names the patient, but the erasure\'s own');

  for (const [type, id] of [['Patient', record.patient.id], ['Observation', record.observation.id], ['DocumentReference', record.document.id], ['Binary', record.binary.id], ['Consent', record.consent.id]]) {
    t.equal((await server.inject({ method: 'GET', url: `/fhir/${type}/${id}` })).statusCode, 404, `${type} is gone`);
  }
  t.equal(json(await server.inject({ method: 'GET', url: `/fhir/Patient?identifier=${SECRET}` })).total, 0);
  t.equal(json(await server.inject({ method: 'GET', url: `/fhir/Observation/${record.observation.id}/_history` })).total ?? 0, 0);
  for (const { id } of auditBefore) {
    const audit = await server.inject({ method: 'GET', url: `/fhir/AuditEvent/${id}` });
    t.equal(audit.statusCode, 410, `AuditEvent/${id} about the patient is kept, unreadable`);
  }
  t.match(json(erased).issue[0].diagnostics, / 11 authorization records .* forgotten/, 'her 11 authorization records, her accounts\' and her launch contexts\', went');
  for (const [model, id] of hers) t.notOk(await authz.record(model, id), `her ${model} ${id} is forgotten`);
  for (const [model, id] of theirs) t.ok(await authz.record(model, id), `the other patient's ${model} stays`);
  t.ok(await authz.record('Approval', JSON.stringify(['dr-house', 'app'])), "the practitioner's own approval of the app stays");

  const kept = json(await server.inject({ method: 'GET', url: `/fhir/Patient/${other.patient.id}` }));
  t.equal(kept.name[0].family, 'Keepwell');
  const keptBinary = await server.inject({ method: 'GET', url: `/fhir/Binary/${other.binary.id}`, headers: { accept: 'text/plain' } });
  t.match(keptBinary.body, /INS-Untouched-1/);
  t.equal(json(await server.inject({ method: 'GET', url: `/fhir/Observation?subject=Patient/${other.patient.id}` })).total, 1);
});

t.test('an administrator erases a record; an unknown patient is 404', async (t) => {
  const admin = await server.token({ scope: 'system/*.cruds' });
  const erased = await server.inject({ method: 'POST', url: `/fhir/Patient/${other.patient.id}/$erase`, headers: { authorization: `Bearer ${admin}` } });
  t.equal(erased.statusCode, 200, erased.body);
  t.equal((await server.inject({ method: 'GET', url: `/fhir/Patient/${other.patient.id}` })).statusCode, 404);
  const unknown = await server.inject({ method: 'POST', url: '/fhir/Patient/never-was/$erase', headers: { authorization: `Bearer ${admin}` } });
  t.equal(unknown.statusCode, 404);
});

/** Files under `dir` whose bytes hold one of `needles`. */
function filesHolding(dir: string, needles: string[]): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, entry);
    if (!statSync(path).isFile()) continue;
    const bytes = readFileSync(path);
    for (const needle of needles) if (bytes.includes(Buffer.from(needle))) found.push(`${entry}: ${needle}`);
  }
  return found;
}

t.test('on PGlite, the data folder holds nothing of an erased record: tables, indexes, write-ahead log', { skip: onPostgres ? 'the data folder is PGlite\'s' : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dossier-erase-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const storage = await openStorage(dir, {}, new DataKeys(new LocalKeyWrapper(Buffer.from(TEST_MASTER_KEY, 'base64'))));
  const store = await storage.open({ registry, maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });
  await store.migrate();
  const patient = await store.create({ resourceType: 'Patient', name: [{ family: NAME }], identifier: [{ system: 'urn:test:patient-number', value: SECRET }] } as Resource);
  await store.create({ resourceType: 'Observation', status: 'final', code: { text: `${NAME} glycaemia` }, subject: { reference: `Patient/${patient.id}` } } as Resource);
  const document = await store.create({ resourceType: 'DocumentReference', status: 'current', description: `${NAME} ${LETTER}`, subject: { reference: `Patient/${patient.id}` }, content: [{ attachment: { title: LETTER } }] } as Resource);
  await store.create({ resourceType: 'Binary', contentType: 'text/plain', securityContext: { reference: `DocumentReference/${document.id}` }, data: Buffer.from(`${LETTER} ${SECRET} `.repeat(40)).toString('base64') } as Resource);
  await store.create({ resourceType: 'AuditEvent', type: { code: 'rest' }, recorded: new Date().toISOString(), agent: [{ requestor: true }], source: { observer: { display: 'dossier' } }, entity: [{ what: { reference: `Patient/${patient.id}` }, description: `${NAME} read` }] } as Resource);
  await store.create({ resourceType: 'Patient', name: [{ family: 'Keepwell' }] } as Resource);
  t.ok(filesHolding(dir, [NAME, SECRET]).length > 0, 'before erasure, the folder holds the clear index rows (the scan can fail)');

  await store.eraseRecord(patient.id);
  await storage.close();
  t.same(filesHolding(dir, NEEDLES), [], 'after erasure, no file holds the record in clear');
  t.ok(filesHolding(dir, ['Keepwell']).length > 0, 'the other patient is still there');
});
