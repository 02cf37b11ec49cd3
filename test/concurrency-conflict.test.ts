/**
 * A request the database undoes because it met a concurrent one (a deadlock, a serialization failure) is the
 * client's conflict, not a server fault: 409 with an OperationOutcome saying to send it again, and nothing of
 * it written. The deadlock is a real one, made on PostgreSQL by a second connection that locks, in the
 * opposite order, the rows a transaction Bundle deletes; PGlite runs one statement at a time and cannot
 * deadlock, so there only the mapping of the driver's codes is checked.
 */
import t from 'tap';
import { failureAnswer, isConcurrencyConflict, isStorageUnavailable } from '../src/store/unavailable.ts';
import { FHIR_JSON, json, onPostgres, startTestServer } from './helpers/app.ts';

t.test('a deadlock or a serialization failure answers 409 conflict; other failures keep their answers', async (t) => {
  const withCode = (code: string, message: string) => Object.assign(new Error(message), { code });
  for (const error of [withCode('40P01', 'deadlock detected'), withCode('40001', 'could not serialize access due to concurrent update'), new Error('wrapped', { cause: withCode('40P01', 'deadlock detected') })]) {
    t.ok(isConcurrencyConflict(error), error.message);
    t.notOk(isStorageUnavailable(error), `${error.message} is not an outage`);
    const answer = failureAnswer(error, 'req-1');
    t.equal(answer.status, 409);
    t.equal(answer.outcome.issue[0]?.code, 'conflict');
    t.match(answer.outcome.issue[0]?.diagnostics, /send it again \(request req-1\)/);
  }
  t.equal(failureAnswer(withCode('23505', 'duplicate key value violates unique constraint')).status, 500, 'a constraint violation stays a server fault');
  t.equal(failureAnswer(withCode('57P01', 'terminating connection due to administrator command')).status, 503, 'an outage stays 503');
  t.notOk(isConcurrencyConflict(new Error('plain')));
});

if (onPostgres) {
  t.test('a transaction Bundle that deadlocks with another transaction: 409, and neither of its deletes done', async (t) => {
    const server = await startTestServer(t);
    const ids: string[] = [];
    for (const family of ['Premier', 'Second']) {
      const created = await server.inject({ method: 'POST', url: '/fhir/Patient', headers: { 'content-type': FHIR_JSON }, payload: { resourceType: 'Patient', name: [{ family }] } });
      t.equal(created.statusCode, 201);
      ids.push(json(created).id);
    }
    const [first, second] = ids as [string, string];
    const lockRow = (tx: { query(sql: string, params: unknown[]): Promise<unknown> }, id: string) =>
      tx.query(`SELECT 1 FROM resource WHERE resource_type = 'Patient' AND id = $1 FOR UPDATE`, [id]);
    const blockedBackends = async () =>
      (await server.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype IN ('transactionid', 'tuple')`)).rows[0]!.n;

    let answer: Awaited<ReturnType<typeof server.inject>> | undefined;
    await server.db.transaction(async (tx) => {
      // This connection holds the second patient; the Bundle deletes the first, then waits for the second.
      await lockRow(tx, second);
      const bundle = server.inject({
        method: 'POST',
        url: '/fhir',
        headers: { 'content-type': FHIR_JSON },
        payload: {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [
            { request: { method: 'DELETE', url: `Patient/${first}` } },
            { request: { method: 'DELETE', url: `Patient/${second}` } },
          ],
        },
      });
      const waitingSince = Date.now();
      while ((await blockedBackends()) === 0) {
        if (Date.now() - waitingSince > 30_000) throw new Error('the Bundle never waited for the locked patient');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      // Now lock the first, which the Bundle holds: a cycle. The Bundle's backend, waiting longer, finds it
      // first (deadlock_timeout) and is undone; this one then gets its lock.
      await lockRow(tx, first);
      answer = await bundle;
    });
    t.equal(answer!.statusCode, 409, 'the undone Bundle is a conflict');
    t.equal(json(answer!).resourceType, 'OperationOutcome');
    t.equal(json(answer!).issue[0].code, 'conflict');
    for (const id of ids) t.equal((await server.inject({ method: 'GET', url: `/fhir/Patient/${id}` })).statusCode, 200, `Patient/${id} is still there`);
  });
}
