/**
 * What the patient's consent costs a search (issue 18): EXPLAIN (ANALYZE, BUFFERS) of the same searches run
 * with all access (no condition), a professional with no rule in play, and the same professional once some
 * patients opposed them and others closed their record, on a population of BENCH_PATIENTS patients with
 * BENCH_IMMUNIZATIONS immunizations and a document each (one in ten masked).
 *
 *   BENCH_DATABASE_URL=postgres://… node --import tsx scripts/bench/consent-scope.ts
 *
 * Environment: BENCH_DATABASE_URL (required), BENCH_PATIENTS (20000), BENCH_IMMUNIZATIONS (5), BENCH_SCHEMA
 * (reuse that schema when it holds data; a new one is made and kept otherwise). Results: scripts/bench/results/consent-scope.md.
 */
import { writeFileSync } from 'node:fs';
import type { Resource } from 'fhir/r4';
import { parseSearch } from '../../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../../src/search/registry.ts';
import { accessFromToken } from '../../src/security/authorisation.ts';
import { ALL_ACCESS, type AccessContext } from '../../src/store/access.ts';
import { DEFAULT_BINARY_INLINE_LIMIT } from '../../src/store/binary-store.ts';
import type { Database } from '../../src/store/database.ts';
import { DEFAULT_MAX_INDEX_ROWS } from '../../src/store/index-writer.ts';
import { migrate } from '../../src/store/migrate.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { sqlStorage } from '../../src/store/storage.ts';

const URL_ = process.env.BENCH_DATABASE_URL;
if (!URL_?.startsWith('postgres')) throw new Error('BENCH_DATABASE_URL=postgres://… is required');
const PATIENTS = Number(process.env.BENCH_PATIENTS ?? 20_000);
const IMMUNIZATIONS = Number(process.env.BENCH_IMMUNIZATIONS ?? 5);
const schema = process.env.BENCH_SCHEMA ?? `bench_consent_${PATIENTS}`;
const VISIBILITY = 'https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument';
const PRIVACY = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] };

const db = await openDatabase(URL_, { schema });
await migrate(db);
const registry = new SearchParameterRegistry(loadSearchParameters());
const store = await sqlStorage(db).open({ registry, maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });

const { rows: counted } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM resource WHERE resource_type = 'Patient'`);
if ((counted[0]?.n ?? 0) === 0) {
  const started = Date.now();
  await store.create({ resourceType: 'Practitioner', id: 'pro', name: [{ family: 'Pro' }] } as Resource, 'pro');
  for (let first = 0; first < PATIENTS; first += 500) {
    await store.unitOfWork(async (unit) => {
      for (let n = first; n < Math.min(first + 500, PATIENTS); n++) {
        const patient = `p${n}`;
        await unit.create({ resourceType: 'Patient', name: [{ family: `F${n % 997}` }], gender: n % 2 ? 'male' : 'female' } as Resource, patient);
        for (let i = 0; i < IMMUNIZATIONS; i++) {
          await unit.create({ resourceType: 'Immunization', status: 'completed', patient: { reference: `Patient/${patient}` }, occurrenceDateTime: `20${10 + (i % 15)}-01-02`,
            vaccineCode: { coding: [{ system: 'http://hl7.org/fhir/sid/cvx', code: String(100 + ((n + i) % 40)) }] } } as Resource, `${patient}-i${i}`);
        }
        await unit.create({ resourceType: 'DocumentReference', status: 'current', subject: { reference: `Patient/${patient}` }, author: [{ reference: 'Practitioner/pro' }],
          ...(n % 10 === 0 ? { securityLabel: [{ coding: [{ system: VISIBILITY, code: 'MASQUE_PS' }] }] } : {}),
          content: [{ attachment: { contentType: 'text/plain', url: 'urn:x' } }] } as Resource, `${patient}-d`);
      }
    });
  }
  await db.query('ANALYZE');
  console.log(`loaded ${PATIENTS} patients in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

// A rerun measures "no rule in play" again: the rules of the previous run's Consents go (their next write remakes them).
await db.query(`DELETE FROM consent_rule WHERE consent_id LIKE 'bench-%'`);
// As the router binds it: the caller's identities resolved once for the request (ResourceStore.resolveCaller).
const professional: AccessContext = await store.resolveCaller(accessFromToken({ scopes: ['user/*.rs'], fhirUser: 'Practitioner/other', clientId: 'gp', purposeOfUse: [] }));
const SEARCHES: Array<[string, string]> = [
  ['Immunization', 'vaccine-code=http://hl7.org/fhir/sid/cvx|107&_total=accurate&_count=20'],
  ['Patient', '_has:Immunization:patient:vaccine-code=http://hl7.org/fhir/sid/cvx|107&_count=20'],
  ['DocumentReference', 'patient=Patient/p123'],
];

/** EXPLAIN (ANALYZE, BUFFERS) of every statement a search runs with `access`: total execution ms and shared buffers. */
async function explain(access: AccessContext, type: string, query: string): Promise<{ ms: number; buffers: number; statements: number }> {
  const statements: Array<[string, unknown[] | undefined]> = [];
  const recording: Database = { ...db, query: (sql, params, name) => (statements.push([sql, params]), db.query(sql, params, name)) } as Database;
  const recorded = await sqlStorage(recording).open({ registry, maxIndexRows: DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit: DEFAULT_BINARY_INLINE_LIMIT });
  const request = parseSearch([type], [...new URLSearchParams(query)] as Array<[string, string]>, registry, { strict: true, baseUrl: 'http://x/fhir' });
  await recorded.forAccess(access).search(request, { baseUrl: 'http://x/fhir', path: type });
  let ms = 0;
  let buffers = 0;
  let count = 0;
  for (const [sql, params] of statements) {
    if (!/^\s*(WITH|SELECT)/i.test(sql)) continue;
    count++;
    const best = { ms: Infinity, buffers: 0 };
    for (let run = 0; run < 5; run++) {
      const { rows } = await db.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, params);
      const plan = (rows[0]!['QUERY PLAN'] as any)[0];
      const shared = (plan.Plan['Shared Hit Blocks'] ?? 0) + (plan.Plan['Shared Read Blocks'] ?? 0);
      if (plan['Execution Time'] < best.ms) Object.assign(best, { ms: plan['Execution Time'], buffers: shared });
    }
    ms += best.ms;
    buffers += best.buffers;
  }
  return { ms, buffers, statements: count };
}

const cell = (r: { ms: number; buffers: number; statements: number }) => `${r.ms.toFixed(2)} ms, ${r.buffers} buffers, ${r.statements} statements`;

const lines = [`# Consent in the search SQL: EXPLAIN ANALYZE (best of 5 per statement), ${PATIENTS} patients, ${PATIENTS * (IMMUNIZATIONS + 2)} resources, PostgreSQL`, '',
  '| search | all access (no condition) | professional, no rule in play | professional, rules in play (1% opposed them, 1% closed) |', '|---|---|---|---|'];
const results = new Map<string, string[]>();
for (const [type, query] of SEARCHES) results.set(`${type}?${query}`, [await explain(ALL_ACCESS, type, query), await explain(professional, type, query)].map(cell));

for (let n = 7; n < PATIENTS; n += 100) {
  const closing = n % 200 === 7;
  await store.update({ resourceType: 'Consent', id: `bench-${n}`, status: 'active', scope: PRIVACY, category: [{ text: 'DMP' }], patient: { reference: `Patient/p${n}` }, policyRule: { text: 'opt-out' },
    provision: closing ? { type: 'deny' } : { type: 'permit', provision: [{ type: 'deny', actor: [{ reference: { reference: 'Practitioner/other' } }] }] } } as Resource & { id: string });
}
await db.query('ANALYZE consent_rule');
for (const [type, query] of SEARCHES) {
  results.get(`${type}?${query}`)!.push(cell(await explain(professional, type, query)));
}
for (const [search, cells] of results) lines.push(`| \`${search}\` | ${cells.join(' | ')} |`);
const text = lines.join('\n') + '\n';
console.log(text);
writeFileSync(new URL('./results/consent-scope.md', import.meta.url), text);
await db.close();
