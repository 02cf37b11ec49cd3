/**
 * The PGlite driver prepares a named statement once (SqlExecutor.query's `name`), as the PostgreSQL driver
 * does per connection: PGlite runs on the server's thread, and planning an access-checked read on every call
 * cost a third of a read's CPU (issue 17 item 7). What a statement gives back, and how its errors leave the
 * session and its transactions, stay those of an unnamed one. PGlite-only, so it runs the same on both suite runs.
 */
import t from 'tap';
import { openDatabase } from '../src/store/open-database.ts';

const db = await openDatabase('memory://');
t.teardown(() => db.close());
await db.exec('CREATE TABLE item (id text PRIMARY KEY, n int NOT NULL, tags text[], note jsonb)');
const prepared = async () => (await db.query<{ name: string; statement: string }>('SELECT name, statement FROM pg_prepared_statements ORDER BY name')).rows;

t.test('a named statement is prepared once and then run with each call’s parameters, typed and parsed as an unnamed one', async (t) => {
  const insert = 'INSERT INTO item (id, n, tags, note) VALUES ($1, $2, $3, $4)';
  t.same(await db.query(insert, ['a', 1, ['x', 'y'], { k: 1 }], 'test_insert'), { rows: [], rowCount: 1 });
  t.same(await db.query(insert, ['b', 2, null, null], 'test_insert'), { rows: [], rowCount: 1 });
  const select = 'SELECT id, n, tags, note FROM item WHERE n >= $1 ORDER BY id';
  const named = await db.query(select, [1], 'test_select');
  t.same(named, await db.query(select, [1]), 'the same rows as unnamed');
  t.same(named.rows, [{ id: 'a', n: 1, tags: ['x', 'y'], note: { k: 1 } }, { id: 'b', n: 2, tags: null, note: null }]);
  t.same((await db.query(select, [2], 'test_select')).rows.map((row) => row.id), ['b'], 'the parameters of this call');
  t.same((await prepared()).map((row) => row.name), ['test_insert', 'test_select'], 'each prepared once in the session');
});

t.test('a statement that does not parse is refused every time, and its name then serves a text that does', async (t) => {
  await t.rejects(db.query('SELEC 1', [], 'test_broken'), { code: '42601' });
  await t.rejects(db.query('SELEC 1', [], 'test_broken'), { code: '42601' });
  t.same((await db.query<{ one: number }>('SELECT 1 AS one', [], 'test_broken')).rows, [{ one: 1 }]);
  t.ok((await prepared()).some((row) => row.name === 'test_broken' && row.statement === 'SELECT 1 AS one'));
});

t.test('a named statement failing in a transaction rolls it back, and the session goes on', async (t) => {
  const insert = 'INSERT INTO item (id, n) VALUES ($1, $2)';
  await t.rejects(
    db.transaction(async (tx) => {
      await tx.query(insert, ['c', 3], 'test_insert_plain');
      await tx.query(insert, ['a', 4], 'test_insert_plain');
    }),
    { code: '23505' },
  );
  t.same((await db.query('SELECT id FROM item WHERE id = $1', ['c'], 'test_by_id')).rows, [], 'the transaction’s first write is gone');
  await db.transaction(async (tx) => {
    await tx.query(insert, ['c', 3], 'test_insert_plain');
  });
  t.same((await db.query('SELECT id FROM item WHERE id = $1', ['c'], 'test_by_id')).rows, [{ id: 'c' }]);
  await t.rejects(db.query(insert, ['c', 5], 'test_insert_plain'), { code: '23505' }, 'outside a transaction too');
  t.same((await db.query('SELECT count(*)::int AS n FROM item', [], 'test_count')).rows, [{ n: 3 }]);
});

t.test('a named statement outside a transaction waits for one in progress rather than running inside it', async (t) => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const transaction = db.transaction(async (tx) => {
    await tx.query('INSERT INTO item (id, n) VALUES ($1, $2)', ['d', 6], 'test_insert_plain');
    await held;
    throw new Error('rolled back');
  });
  const outside = db.query<{ n: number }>('SELECT count(*)::int AS n FROM item', [], 'test_count');
  await new Promise((resolve) => setTimeout(resolve, 50));
  release();
  await t.rejects(transaction, /rolled back/);
  t.same((await outside).rows, [{ n: 3 }], 'it saw neither the uncommitted row nor its rollback');
});
