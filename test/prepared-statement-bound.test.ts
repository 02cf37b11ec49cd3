// Named statements are bounded per connection (MAX_PREPARED_STATEMENTS): their names come from their texts, so a
// client varying a search's shape would otherwise add prepared statements, each holding memory in the database
// session, for as long as the connection lives. Past the bound, PGlite closes the least recently run; a
// PostgreSQL connection is closed when released and the pool opens another. Every statement still answers.
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { openDatabase } from '../src/store/open-database.ts';

const BOUND = 5;
const url = process.env.DATABASE_URL ?? 'memory://';
const schema = url.startsWith('postgres') ? `test_prepared_${process.pid}_${randomBytes(4).toString('hex')}` : undefined;
const db = await openDatabase(url, { maxPreparedStatements: BOUND, ...(schema ? { schema } : {}) });
t.teardown(async () => {
  if (schema) await db.exec(`DROP SCHEMA ${schema} CASCADE`);
  await db.close();
});

/** Prepared statements of the session the next pooled statement runs on (the one the last released, when idle). */
const preparedHere = async () => Number((await db.query<{ n: number | string }>('SELECT count(*) AS n FROM pg_prepared_statements')).rows[0]!.n);
const statement = (k: number) => ({ sql: `SELECT $1::int + ${k} AS n`, name: `test_bound_${k}` });

t.test('past the bound, statements still answer, and no session keeps more than the bound', async (t) => {
  for (let round = 0; round < 2; round++) {
    for (let k = 0; k < 4 * BOUND; k++) {
      const { sql, name } = statement(k);
      t.same((await db.query<{ n: number }>(sql, [round], name)).rows, [{ n: round + k }], `statement ${k}, round ${round}`);
      t.ok((await preparedHere()) <= BOUND, `at most ${BOUND} prepared after statement ${k}`);
    }
  }
});

t.test('the statements a transaction runs count too', async (t) => {
  await db.transaction(async (tx) => {
    for (let k = 0; k < 3 * BOUND; k++) {
      const { sql, name } = statement(100 + k);
      t.same((await tx.query<{ n: number }>(sql, [1], name)).rows, [{ n: 101 + k }]);
    }
  });
  t.ok((await preparedHere()) <= BOUND, `at most ${BOUND} prepared after the transaction`);
  const { sql, name } = statement(100);
  t.same((await db.query<{ n: number }>(sql, [2], name)).rows, [{ n: 102 }], 'a statement of the transaction runs again');
});

t.test('within the bound, a statement stays prepared: run again, it is not prepared anew', async (t) => {
  const { sql, name } = statement(1000);
  await db.query(sql, [0], name);
  const before = await db.query<{ prepare_time: string }>('SELECT prepare_time::text FROM pg_prepared_statements WHERE name = $1', [name]);
  await db.query(sql, [1], name);
  const after = await db.query<{ prepare_time: string }>('SELECT prepare_time::text FROM pg_prepared_statements WHERE name = $1', [name]);
  t.equal(before.rows.length, 1, 'prepared in this session');
  t.same(after.rows, before.rows, 'the same preparation');
});
