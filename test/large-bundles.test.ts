import { randomBytes } from 'node:crypto';
import t from 'tap';
import { MAX_BUFFERED_JSON } from '../src/store/repository.ts';
import type { SqlExecutor } from '../src/store/database.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

const MB = 1024 * 1024;
const BUNDLE_BODY_LIMIT = 24 * MB;
const server = await startTestServer(t, { bodyLimit: MB, bundleBodyLimit: BUNDLE_BODY_LIMIT, bundleMaxEntries: 100 });

/** Sizes of the statements that write new resources, in transactions too (on the driver's handle, under the store's opening wrapper). */
const insertSizes: number[] = [];
const { transaction } = server.rawDb;
server.rawDb.transaction = (work) =>
  transaction((tx) =>
    work({
      query<Row>(sql: string, params?: unknown[], name?: string) {
        if (sql.startsWith('WITH new AS')) insertSizes.push(params!.reduce<number>((size, param) => size + String(param).length, 0));
        return tx.query<Row>(sql, params, name);
      },
    } satisfies SqlExecutor),
  );

/** A Patient of about `size` characters of JSON, random so that they stay about that size once compressed and sealed. */
const patient = (family: string, size: number) => ({ resourceType: 'Patient', name: [{ family }], extension: [{ url: 'http://example.org/note', valueString: randomBytes(size / 2).toString('hex') }] });

const transactionOf = (resources: object[]) => ({ resourceType: 'Bundle', type: 'transaction', entry: resources.map((resource) => ({ resource, request: { method: 'POST', url: 'Patient' } })) });

const post = (body: unknown) => server.inject({ method: 'POST', url: '/fhir', payload: JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });

const count = async (family: string) => json(await server.inject({ method: 'GET', url: `/fhir/Patient?family=${family}&_summary=count` })).total as number;

t.test('a 20 MB transaction is written whole, in statements of bounded size, and answered entry by entry', async (t) => {
  insertSizes.length = 0;
  const res = await post(transactionOf(Array.from({ length: 40 }, () => patient('Gros', 500 * 1024))));
  t.equal(res.statusCode, 200);
  const answer = json(res);
  t.equal(answer.entry.length, 40);
  t.ok(answer.entry.every((entry: any) => entry.response.status === '201 Created' && entry.resource.extension[0].valueString.length === 500 * 1024), 'every entry answered with its resource');
  t.equal(await count('Gros'), 40, 'all stored');
  t.ok(insertSizes.length >= 4, `written in ${insertSizes.length} statements, not one`);
  t.ok(Math.max(...insertSizes) < 2 * MAX_BUFFERED_JSON, `the largest statement carries ${(Math.max(...insertSizes) / MB).toFixed(1)} MB`);
});

t.test('a large transaction failing after some of its statements stores nothing', async (t) => {
  const resources: object[] = Array.from({ length: 30 }, () => patient('Annule', 500 * 1024));
  // Updates come after creates (R4 http.html#trules): this one fails once the creates are written.
  const body = transactionOf(resources);
  body.entry.push({ resource: { resourceType: 'Patient', id: 'absent', name: [{ family: 'Annule' }] }, request: { method: 'PUT', url: 'Patient/absent', ifMatch: 'W/"7"' } } as never);
  insertSizes.length = 0;
  const res = await post(body);
  t.equal(res.statusCode, 412);
  t.ok(insertSizes.length >= 3, 'statements were written before the failure');
  t.equal(await count('Annule'), 0, 'none of it is stored');
});

t.test('over BUNDLE_BODY_LIMIT or BUNDLE_MAX_ENTRIES: 413, nothing stored', async (t) => {
  const tooLarge = await post(transactionOf(Array.from({ length: 30 }, () => patient('Trop', MB))));
  t.equal(tooLarge.statusCode, 413);
  t.equal(json(tooLarge).issue[0].code, 'too-long');
  const tooMany = await post(transactionOf(Array.from({ length: 101 }, () => patient('Trop', 10))));
  t.equal(tooMany.statusCode, 413);
  t.equal(await count('Trop'), 0);
});
