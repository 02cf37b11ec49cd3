import pg from 'pg';
import t from 'tap';
import { onPostgres } from './helpers/app.ts';
import { childrenOf, createScratchStore, existsProcess, getJson, postJson, startServerProcess, until } from './helpers/server-process.ts';

if (onPostgres) {
  t.test('WORKERS=2 runs two server processes on one port, replaces one that dies, and stops them all on SIGTERM', async (t) => {
    const store = await createScratchStore('workers');
    t.teardown(() => store.drop());
    const server = await startServerProcess(store.url, { env: { WORKERS: '2' } });
    t.teardown(() => server.stop());
    const primary = server.child.pid!;
    t.ok(await until(() => childrenOf(primary).length === 2), 'two server processes under the primary');

    // Whichever process answers, they share one store: what one created, the others read.
    const created = await postJson(`${server.base}/fhir/Patient`, { resourceType: 'Patient', name: [{ family: 'Ouvrier' }] });
    t.equal(created.status, 201);
    for (let i = 0; i < 6; i++) t.equal((await getJson(`${server.base}/fhir/Patient/${created.body.id}`)).status, 200);
    // Identifiers are indexed hashed under one index key, which both processes loaded at their start (made by the first).
    const identified = await postJson(`${server.base}/fhir/Patient`, { resourceType: 'Patient', identifier: [{ system: 'urn:test:ins', value: 'WORKERS-INS-1' }] });
    t.equal(identified.status, 201);
    for (let i = 0; i < 6; i++) t.equal((await getJson(`${server.base}/fhir/Patient?identifier=urn:test:ins|WORKERS-INS-1`)).body.total, 1, 'found by whichever process answers');
    const db = new pg.Client({ connectionString: store.url });
    await db.connect();
    t.equal((await db.query(`SELECT count(*)::int AS n FROM data_key WHERE owner = 'search-index'`)).rows[0].n, 1, 'one index key for the store');
    await db.end();

    const [victim] = childrenOf(primary);
    process.kill(victim!, 'SIGKILL');
    t.ok(
      await until(() => {
        const now = childrenOf(primary);
        return now.length === 2 && !now.includes(victim!);
      }),
      'the dead process is replaced',
    );
    t.ok(await until(() => fetch(`${server.base}/health`).then((r) => r.ok, () => false)), 'still serving');
    const workers = childrenOf(primary);

    server.child.kill('SIGTERM');
    const { code } = await server.exited;
    t.equal(code, 0, 'the primary exits cleanly once its servers have', { logs: server.logs.slice(-10) });
    t.same(workers.filter((pid) => existsProcess(pid)), [], 'no server process outlives it');
  });
} else {
  t.test('WORKERS=2 on the embedded PGlite store is refused at start with the reason', async (t) => {
    const store = await createScratchStore('workers');
    t.teardown(() => store.drop());
    const error = await startServerProcess(store.url, { env: { WORKERS: '2' } }).then(
      () => undefined,
      (e: Error) => e,
    );
    t.ok(error, 'the server does not start');
    t.match(error?.message, /WORKERS > 1 needs DATABASE_URL=postgres/);
  });
}
