/**
 * The change feed (src/store/change-feed.ts): every committed write exactly once, read from a cursor; a
 * rolled-back write never. On PostgreSQL also under concurrency: a write that commits while an earlier one
 * is still in flight is held back, not skipped, and a reader polling while two writer processes and a
 * WORKERS=2 server write ends with exactly the committed writes.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Bundle, Patient } from 'fhir/r4';
import t from 'tap';
import { FhirError } from '../src/fhir/outcome.ts';
import { FEED_HORIZON, readChanges, type ChangePage } from '../src/store/change-feed.ts';
import { joinTransaction, type Database } from '../src/store/database.ts';
import { openDatabase } from '../src/store/open-database.ts';
import { Repository } from '../src/store/repository.ts';
import { loadMigrations, migrate } from '../src/store/migrate.ts';
import { FHIR_JSON, json, onPostgres, openTestDatabase, startTestServer } from './helpers/app.ts';
import { minimalResource } from './helpers/fixtures.ts';
import { createScratchStore, postJson, startServerProcess } from './helpers/server-process.ts';

t.setTimeout(600_000);

const keyOf = (change: { resourceType: string; id: string; versionId: number }) => `${change.resourceType}/${change.id}/${change.versionId}`;

/** Reads the feed from `cursor` in pages of `limit` until a page comes back short; every change, in order. */
async function drain(db: Database, cursor: string | undefined, limit: number): Promise<{ changes: ChangePage['changes']; next: string; pages: number }> {
  const changes: ChangePage['changes'] = [];
  let pages = 0;
  for (;;) {
    const page = await readChanges(db, cursor, limit);
    pages++;
    changes.push(...page.changes);
    cursor = page.next;
    if (page.changes.length < limit) return { changes, next: cursor, pages };
  }
}

/**
 * Waits until every committed write is below the feed's horizon. On PostgreSQL other test files write in the
 * same database (a schema each) and their transactions in flight hold this file's feed back too.
 */
async function settle(db: Database): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const { rows } = await db.query<{ behind: boolean }>(`SELECT EXISTS (SELECT FROM resource_history WHERE xid >= ${FEED_HORIZON}) AS behind`);
    if (!rows[0]!.behind) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('the change feed did not reach the last committed write within 120 s');
}

/** Every version the history table holds (committed writes only: a rolled-back one left no row). */
async function historyKeys(db: Database): Promise<string[]> {
  const { rows } = await db.query<{ key: string }>(`SELECT resource_type || '/' || id || '/' || version_id AS key FROM resource_history`);
  return rows.map((row) => row.key).sort();
}

t.test('every committed write appears exactly once, in order, whatever the page size; rolled-back writes never', async (t) => {
  const server = await startTestServer(t);
  const request = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', url: string, body?: unknown, contentType = FHIR_JSON) =>
    server.inject({ method, url, payload: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': contentType } });
  const start = await readChanges(server.db, undefined, 100);
  t.same(start.changes, [], 'a new store has no changes');

  const expected: string[] = [];
  const patient = json(await request('POST', '/fhir/Patient', minimalResource('Patient')));
  expected.push(`Patient/${patient.id}/1`);
  t.equal((await request('PUT', `/fhir/Patient/${patient.id}`, { ...patient, gender: 'other' })).statusCode, 200);
  expected.push(`Patient/${patient.id}/2`);
  const patched = await request('PATCH', `/fhir/Patient/${patient.id}`, [{ op: 'replace', path: '/gender', value: 'female' }], 'application/json-patch+json');
  t.equal(patched.statusCode, 200);
  expected.push(`Patient/${patient.id}/3`);
  t.equal((await request('DELETE', `/fhir/Patient/${patient.id}`)).statusCode, 204);
  expected.push(`Patient/${patient.id}/4`);

  const transaction = (entries: NonNullable<Bundle['entry']>): Bundle => ({ resourceType: 'Bundle', type: 'transaction', entry: entries });
  const committed = await request(
    'POST',
    '/fhir',
    transaction([0, 1, 2].map(() => ({ resource: minimalResource('Organization'), request: { method: 'POST', url: 'Organization' } }))),
  );
  t.equal(committed.statusCode, 200);
  for (const entry of json<Bundle>(committed).entry!) expected.push(entry.response!.location!.replace(/^.*\/fhir\//, '').replace('/_history/', '/'));

  const organization = json(await request('POST', '/fhir/Organization', minimalResource('Organization')));
  expected.push(`Organization/${organization.id}/1`);
  // Its creates are written before the conditional update fails: the whole transaction is rolled back.
  const refused = await request(
    'POST',
    '/fhir',
    transaction([
      { resource: minimalResource('Practitioner'), request: { method: 'POST', url: 'Practitioner' } },
      { resource: minimalResource('Practitioner'), request: { method: 'POST', url: 'Practitioner' } },
      { resource: { ...organization, active: false }, request: { method: 'PUT', url: `Organization/${organization.id}`, ifMatch: 'W/"9"' } },
    ]),
  );
  t.equal(refused.statusCode, 412, 'the transaction is refused');
  // And one rolled back after its write went out, by the store itself.
  let rolledBackId: string | undefined;
  await server.db
    .transaction(async (tx) => {
      rolledBackId = (await new Repository(joinTransaction(tx, server.db.driver)).create(minimalResource('Practitioner'))).id;
      throw new Error('roll back');
    })
    .catch(() => undefined);
  t.ok(rolledBackId, 'the rolled-back create was written before its rollback');

  t.same(await historyKeys(server.db), [...expected].sort(), 'the history table holds exactly the committed writes');
  await settle(server.db);
  for (const limit of [1, 2, 3, 100]) {
    const { changes, pages } = await drain(server.db, undefined, limit);
    t.same(changes.map(keyOf), expected, `pages of ${limit}: each committed write once, in the order they committed (${pages} reads)`);
  }
  const { changes } = await drain(server.db, undefined, 100);
  const methods = await server.db.query<{ method: string }>(`SELECT method FROM resource_history WHERE id = $1 ORDER BY version_id`, [patient.id]);
  t.same(changes.slice(0, 4).map((c) => c.method), methods.rows.map((r) => r.method), 'each change names its interaction as history does');
  t.same([changes[0]!.method, changes[1]!.method, changes[3]!.method], ['POST', 'PUT', 'DELETE']);
  t.match(changes[0], { resourceType: 'Patient', id: patient.id, versionId: 1, lastUpdated: patient.meta.lastUpdated });
  t.notOk(changes.some((c) => c.resourceType === 'Practitioner'), 'nothing of the rolled-back transactions');
});

t.test('a cursor goes on from where the last read stopped, and stays put while nothing new is final', async (t) => {
  const server = await startTestServer(t);
  const create = async () => {
    const id = json(await server.inject({ method: 'POST', url: '/fhir/Patient', payload: minimalResource('Patient'), headers: { 'content-type': FHIR_JSON } })).id as string;
    await settle(server.db);
    return id;
  };
  const first = await create();
  const second = await create();

  const read1 = await readChanges(server.db, undefined, 1);
  t.same(read1.changes.map((c) => c.id), [first]);
  const read2 = await readChanges(server.db, read1.next, 10);
  t.same(read2.changes.map((c) => c.id), [second], 'the next read starts after the last change read');
  const idle = await readChanges(server.db, read2.next, 10);
  t.same(idle.changes, [], 'nothing new');
  t.same((await readChanges(server.db, idle.next, 10)).changes, [], 'an idle cursor reads nothing again');

  const third = await create();
  t.same((await readChanges(server.db, idle.next, 10)).changes.map((c) => c.id), [third], 'a write after an idle read is found from its cursor');
  t.same((await readChanges(server.db, read2.next, 10)).changes.map((c) => c.id), [third], 'and from the older cursor');
  t.same((await readChanges(server.db, read1.next, 10)).changes.map((c) => c.id), [second, third], 'an old cursor is still good');
});

t.test('a store written before the feed existed: its versions come first, in their old order, then the new ones', async (t) => {
  const store = await openTestDatabase({ unmigrated: true });
  t.teardown(() => store.drop());
  await migrate(store.db, loadMigrations().filter((m) => m.version < 13));
  for (const [id, version] of [['ancien', 1], ['autre', 1], ['ancien', 2]] as const) {
    await store.db.query(
      `INSERT INTO resource_history (resource_type, id, version_id, last_updated, method, content) VALUES ('Patient', $1, $2, '2026-01-02T03:04:05Z', $3, '{}')`,
      [id, version, version === 1 ? 'POST' : 'PUT'],
    );
  }
  await migrate(store.db);
  const created = await new Repository(store.db).create({ resourceType: 'Patient' });
  await settle(store.db);
  const { changes } = await drain(store.db, undefined, 2);
  t.same(changes.map(keyOf), ['Patient/ancien/1', 'Patient/autre/1', 'Patient/ancien/2', `Patient/${created.id}/1`]);
});

t.test('a cursor the server did not issue, or a page size out of range, is a 400', async (t) => {
  const server = await startTestServer(t);
  for (const cursor of ['', 'abc', '12', '1.2.3', '-1.5', '99999999999999999999999.1', '1.9223372036854775808']) {
    const error = await readChanges(server.db, cursor, 10).catch((e: unknown) => e);
    t.ok(error instanceof FhirError && error.status === 400, `cursor '${cursor}'`);
  }
  for (const limit of [0, -1, 1.5, 10_001]) {
    const error = await readChanges(server.db, undefined, limit).catch((e: unknown) => e);
    t.ok(error instanceof FhirError && error.status === 400, `limit ${limit}`);
  }
});

if (onPostgres) {
  t.test('a write that commits while an earlier one is in flight is held back, from the feed and from history, not skipped', async (t) => {
    const server = await startTestServer(t);
    const request = (method: 'GET' | 'POST', url: string, body?: unknown) =>
      server.inject({ method, url, payload: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });
    await settle(server.db);
    const before = await readChanges(server.db, undefined, 100);

    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let written!: () => void;
    const wasWritten = new Promise<void>((resolve) => (written = resolve));
    let slowId = '';
    const slow = server.db.transaction(async (tx) => {
      slowId = (await new Repository(joinTransaction(tx, server.db.driver)).create({ resourceType: 'Patient', name: [{ family: 'Lent' }] } as Patient)).id;
      written();
      await released;
    });
    await wasWritten;
    const fast = json(await request('POST', '/fhir/Patient', { resourceType: 'Patient', name: [{ family: 'Rapide' }] }));
    t.equal((await request('GET', `/fhir/Patient/${fast.id}`)).statusCode, 200, 'the later write is committed and readable');

    // What a poller of seq would have done: it sees the later write now, moves past it, and then never
    // sees the earlier one, whose seq is smaller.
    const bySeq = await server.db.query<{ id: string; seq: string }>(`SELECT id, seq::text AS seq FROM resource_history`);
    t.same(bySeq.rows.map((r) => r.id), [fast.id], 'a plain read sees only the later write');

    const held = await readChanges(server.db, before.next, 100);
    t.same(held.changes, [], 'the feed holds the later write back while the earlier one is in flight');
    const history = json(await request('GET', '/fhir/_history'));
    t.equal(history.total, 0, 'history holds it back too');
    t.equal(json(await request('GET', `/fhir/Patient/${fast.id}/_history`)).total, 1, 'but not from its own history: one resource\'s versions commit in order');

    release();
    await slow;
    await settle(server.db);
    const after = await readChanges(server.db, held.next, 100);
    t.same(after.changes.map((c) => c.id), [slowId, fast.id], 'once it commits, both appear, the earlier first');
    const seqs = await server.db.query<{ id: string; seq: string }>(`SELECT id, seq::text AS seq FROM resource_history ORDER BY seq`);
    t.same(seqs.rows.map((r) => r.id), [slowId, fast.id], 'the earlier write has the smaller seq: a seq poller would have skipped it');
    const full = json(await request('GET', '/fhir/_history'));
    t.same(full.entry.map((e: any) => e.resource.id), [fast.id, slowId], 'history shows both, newest first');
  });

  t.test('history next links neither skip nor repeat while writes commit between pages', async (t) => {
    const server = await startTestServer(t);
    const request = (method: 'GET' | 'POST', url: string, body?: unknown) =>
      server.inject({ method, url, payload: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': FHIR_JSON } });
    const initial: string[] = [];
    for (let i = 0; i < 9; i++) initial.push(json(await request('POST', '/fhir/Practitioner', minimalResource('Practitioner'))).id);
    await settle(server.db);

    // A transaction that wrote before the first page was read, and commits between pages.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let written!: () => void;
    const wasWritten = new Promise<void>((resolve) => (written = resolve));
    let lateId = '';
    const late = server.db.transaction(async (tx) => {
      lateId = (await new Repository(joinTransaction(tx, server.db.driver)).create(minimalResource('Practitioner'))).id;
      written();
      await released;
    });
    await wasWritten;
    const afterLate = json(await request('POST', '/fhir/Practitioner', minimalResource('Practitioner'))).id as string;

    const seen: string[] = [];
    let next: string | undefined = '/fhir/Practitioner/_history?_count=4';
    let page = 0;
    while (next) {
      const bundle: any = json(await request('GET', next.replace(/^https?:\/\/[^/]+/, '')));
      seen.push(...(bundle.entry ?? []).map((e: any) => e.resource.id));
      next = bundle.link.find((l: any) => l.relation === 'next')?.url;
      if (++page === 1) {
        release();
        await late;
        for (let i = 0; i < 3; i++) await request('POST', '/fhir/Practitioner', minimalResource('Practitioner'));
      }
    }
    t.same(seen, [...initial].reverse(), 'the pages list exactly what was final at the first page, newest first, once each');
    t.notOk(seen.includes(afterLate), 'the write held back by the in-flight one is not listed');
    await settle(server.db);
    const now = json(await request('GET', '/fhir/Practitioner/_history?_count=100'));
    t.equal(now.total, 9 + 2 + 3, 'a new traversal lists everything');
    t.ok(now.entry.findIndex((e: any) => e.resource.id === lateId) > now.entry.findIndex((e: any) => e.resource.id === afterLate), 'the late transaction is listed as the older');
  });

  t.test('writers in two processes and a WORKERS=2 server, slow transactions, rollbacks: a polling reader ends with exactly the committed writes', async (t) => {
    const store = await createScratchStore('feed');
    t.teardown(() => store.drop());
    // Without the audit trail: the reader expects exactly the writers' writes, and each of the server's
    // answers would add an AuditEvent of its own (committed writes too, but nobody's to expect).
    const server = await startServerProcess(store.url, { env: { WORKERS: '2', FHIR_DEFAULT_PROFILES: 'none', FHIR_AUDIT: 'off' } });
    t.teardown(() => server.stop());
    const reader = await openDatabase(store.url);
    t.teardown(() => reader.close());

    const committed = new Set<string>();
    const rolledBack = new Set<string>();
    const writer = (label: string, rounds: number) =>
      new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./helpers/feed-writer.ts', import.meta.url)), store.url, label, String(rounds)], {
          cwd: fileURLToPath(new URL('../', import.meta.url)),
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let buffered = '';
        let stderr = '';
        let done = false;
        child.stdout.on('data', (chunk) => {
          buffered += String(chunk);
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines) {
            const outcome = JSON.parse(line) as { committed?: string; rolledBack?: string; done?: boolean };
            if (outcome.committed) committed.add(outcome.committed);
            if (outcome.rolledBack) rolledBack.add(outcome.rolledBack);
            if (outcome.done) done = true;
          }
        });
        child.stderr.on('data', (chunk) => (stderr += String(chunk)));
        child.on('exit', (code) => (code === 0 && done ? resolve() : reject(new Error(`writer ${label} exited ${code}: ${stderr}`))));
      });

    // HTTP writers: single creates and transaction Bundles, some refused (rolled back), spread over the two servers.
    const fhir = `${server.base}/fhir`;
    const httpWriter = async (label: string, rounds: number) => {
      for (let round = 0; round < rounds; round++) {
        if (round % 4 === 3) {
          const size = 5 + (round % 20);
          const refuse = round % 8 === 7;
          const entry: NonNullable<Bundle['entry']> = Array.from({ length: size }, (_, i) => ({
            resource: { resourceType: 'Organization', name: `${label}-${round}-${i}` },
            request: { method: 'POST', url: 'Organization' },
          }));
          if (refuse) entry.push({ resource: { resourceType: 'Organization', id: 'absente' }, request: { method: 'PUT', url: 'Organization/absente', ifMatch: 'W/"3"' } });
          const answer = await postJson(fhir, { resourceType: 'Bundle', type: 'transaction', entry });
          if (refuse) {
            t.not(answer.status, 200, 'a refused transaction is refused');
            continue;
          }
          if (answer.status !== 200) throw new Error(`transaction answered ${answer.status}: ${JSON.stringify(answer.body)}`);
          for (const e of answer.body.entry) committed.add(e.response.location.replace(/^.*\/fhir\//, '').replace('/_history/', '/'));
        } else {
          const answer = await postJson(`${fhir}/Organization`, { resourceType: 'Organization', name: `${label}-${round}` });
          if (answer.status !== 201) throw new Error(`create answered ${answer.status}: ${JSON.stringify(answer.body)}`);
          committed.add(`Organization/${answer.body.id}/1`);
        }
      }
    };

    // The reader polls all along, as a subscriber would, and remembers every change it was given.
    const seen = new Map<string, number>();
    let cursor: string | undefined;
    let reads = 0;
    const poll = async () => {
      const page = await readChanges(reader, cursor, 25);
      reads++;
      for (const change of page.changes) seen.set(keyOf(change), (seen.get(keyOf(change)) ?? 0) + 1);
      cursor = page.next;
      return page;
    };
    let writing = true;
    const polling = (async () => {
      while (writing) {
        await poll();
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    await Promise.all([writer('un', 60), writer('deux', 60), httpWriter('a', 40), httpWriter('b', 40), httpWriter('c', 40)]);
    writing = false;
    await polling;
    // Every writer has finished: the feed reaches past them as soon as no older transaction (of any
    // database on the server) is still running. Other test files share the server: wait for theirs.
    const deadline = Date.now() + 120_000;
    while ([...committed].some((key) => !seen.has(key)) && Date.now() < deadline) {
      const page = await poll();
      if (page.changes.length === 0) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await drain(reader, cursor, 25).then(({ changes }) => {
      for (const change of changes) seen.set(keyOf(change), (seen.get(keyOf(change)) ?? 0) + 1);
    });

    t.ok(committed.size > 300, `${committed.size} committed writes, ${rolledBack.size} rolled-back ones, read in ${reads} polls`);
    t.same([...seen].filter(([, times]) => times > 1), [], 'no change was given twice');
    t.same([...committed].filter((key) => !seen.has(key)), [], 'no committed write was missed');
    t.same([...seen.keys()].filter((key) => !committed.has(key)), [], 'nothing that was not a committed write');
    t.same([...rolledBack].filter((key) => [...seen.keys()].some((k) => k.startsWith(`${key}/`))), [], 'no rolled-back write');
    t.same(await historyKeys(reader), [...committed].sort(), 'and the history table agrees');
  });
}
