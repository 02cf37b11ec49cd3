/**
 * A PostgreSQL outage under load, on a throwaway cluster of this file's own: the database is killed (`pg_ctl -m immediate stop`) while
 * creates, reads and transactions are going on, then started again. While it is down every answer is a
 * 503 with Retry-After and an OperationOutcome and no server process dies; once it is back the server
 * serves again without a restart, and no acknowledged write is lost. The cluster's tests do not depend on
 * the suite's store, so they run once, in the suite's PostgreSQL run (CI runs both): the embedded PGlite
 * has no server to lose, and the same minute and a half twice bought nothing.
 */
import pg from 'pg';
import t from 'tap';
import { startThrowawayCluster } from '../scripts/bench/lib/pg-cluster.ts';
import { isStorageUnavailable } from '../src/store/unavailable.ts';
import { onPostgres } from './helpers/app.ts';
import { authHeaders, childrenOf, existsProcess, logEntries, postJson, spawnServerProcess, startServerProcess, until, untilHealthy, type ServerProcess } from './helpers/server-process.ts';

t.setTimeout(300_000);

/** Generous bound on the recovery, not a performance target: a loaded CI machine is slow to do anything. */
const RECOVERY_BOUND_MS = 30_000;
const SENDERS = 6;

t.test('which driver failures are an outage: the database unreachable, not a conflict between requests', async (t) => {
  const withCode = (code: string, message = `error ${code}`) => Object.assign(new Error(message), { code });
  for (const error of [
    withCode('ECONNREFUSED'),
    withCode('ECONNRESET'),
    withCode('57P01', 'terminating connection due to administrator command'),
    withCode('57P03', 'the database system is starting up'),
    withCode('08006'),
    new Error('Connection terminated unexpectedly'),
    new Error('Client has encountered a connection error and is not queryable'),
    new Error('timeout exceeded when trying to connect'),
    new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')], ''),
  ]) {
    t.ok(isStorageUnavailable(error), `${(error as { code?: string }).code ?? error.message}: unavailable`);
  }
  for (const error of [
    withCode('40001', 'could not serialize access due to concurrent update'),
    withCode('40P01', 'deadlock detected'),
    withCode('23505', 'duplicate key value violates unique constraint'),
    withCode('54000', 'index row size exceeds btree version 4 maximum'),
    new Error('something else'),
    'not an error',
  ]) {
    t.notOk(isStorageUnavailable(error), `${(error as { code?: string }).code ?? String(error)}: not an outage`);
  }
});

if (onPostgres) {
  // Fails, rather than skips, where PostgreSQL is not installed: CI always installs it.
  const cluster = await startThrowawayCluster();
  t.teardown(() => cluster.stop());

  interface Answer {
    kind: 'create' | 'read' | 'transaction';
    sentAt: number;
    doneAt: number;
    /** 0 when the request got no HTTP answer at all (connection refused or reset: a dead server). */
    status: number;
    retryAfter: string | null;
    body: any;
    error?: string;
  }

  async function send(kind: Answer['kind'], url: string, init?: RequestInit): Promise<Answer> {
    const sentAt = Date.now();
    try {
      const response = await fetch(url, { ...init, headers: { accept: 'application/fhir+json', 'content-type': 'application/fhir+json', ...(await authHeaders(url)) } });
      const text = await response.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
      return { kind, sentAt, doneAt: Date.now(), status: response.status, retryAfter: response.headers.get('retry-after'), body };
    } catch (error) {
      return { kind, sentAt, doneAt: Date.now(), status: 0, retryAfter: null, body: undefined, error: String((error as Error).cause ?? error) };
    }
  }

  /** Steady load: each sender creates a patient, reads one acknowledged before, posts a transaction of three. */
  function startLoad(base: string) {
    const answers: Answer[] = [];
    const acknowledged: string[] = [];
    let running = true;
    const patient = (family: string) => ({ resourceType: 'Patient', name: [{ family }] });
    const sender = async (n: number) => {
      for (let i = 0; running; i++) {
        const created = await send('create', `${base}/fhir/Patient`, { method: 'POST', body: JSON.stringify(patient(`Panne${n}-${i}`)) });
        answers.push(created);
        if (created.status === 201) acknowledged.push(created.body.id);
        if (acknowledged.length > 0) {
          const id = acknowledged[Math.floor(Math.random() * acknowledged.length)];
          answers.push(await send('read', `${base}/fhir/Patient/${id}`));
        }
        const bundle = {
          resourceType: 'Bundle',
          type: 'transaction',
          entry: [0, 1, 2].map((k) => ({ resource: patient(`Lot${n}-${i}-${k}`), request: { method: 'POST', url: 'Patient' } })),
        };
        const transaction = await send('transaction', `${base}/fhir`, { method: 'POST', body: JSON.stringify(bundle) });
        answers.push(transaction);
        if (transaction.status === 200) {
          for (const entry of transaction.body.entry) acknowledged.push(entry.response.location.split('/')[1]);
        }
      }
    };
    const senders = Array.from({ length: SENDERS }, (_, n) => sender(n));
    return {
      answers,
      acknowledged,
      async stop() {
        running = false;
        await Promise.all(senders);
      },
    };
  }

  /** A fresh database in the cluster, for one test's server; its DATABASE_URL. */
  async function createDatabase(name: string): Promise<string> {
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    const url = new URL(cluster.url);
    url.pathname = `/${name}`;
    return url.toString();
  }

  /** The pids that must survive the outage: the server, and with WORKERS > 1 its server processes too. */
  function serverPids(server: ServerProcess, workers: number): number[] {
    const primary = server.child.pid!;
    return workers > 1 ? [primary, ...childrenOf(primary)] : [primary];
  }

  for (const workers of [1, 2]) {
    t.test(`WORKERS=${workers}: while PostgreSQL is down every request gets 503 + Retry-After + OperationOutcome, no process dies, and it serves again without a restart once PostgreSQL is back`, async (t) => {
      const server = await startServerProcess(await createDatabase(`outage_workers_${workers}`), { env: { WORKERS: String(workers) } });
      t.teardown(() => server.stop());
      if (workers > 1) t.ok(await until(() => childrenOf(server.child.pid!).length === workers, 60_000), `${workers} server processes`);
      const pids = serverPids(server, workers);

      const load = startLoad(server.base);
      let databaseDown = false;
      // Whatever fails below, the load stops and PostgreSQL comes back for the next test.
      t.teardown(async () => {
        await load.stop();
        if (databaseDown) await cluster.restart();
      });
      t.ok(await until(() => load.acknowledged.length >= 30, 60_000), 'the load is served before the outage');

      databaseDown = true;
      await cluster.crash();
      const downAt = Date.now();
      // Long enough for every sender to meet the outage several times.
      const outageAnswers = () => load.answers.filter((a) => a.sentAt >= downAt).length;
      t.ok(await until(() => outageAnswers() >= SENDERS * 5, 30_000), 'requests go on being answered during the outage');
      const health = await send('read', `${server.base}/health`);
      t.equal(health.status, 503, '/health says 503 while the database is down');
      t.same(pids.filter((pid) => !existsProcess(pid)), [], 'every server process is alive during the outage');

      const restartAt = Date.now();
      await cluster.restart();
      databaseDown = false;
      const upAt = Date.now();
      const firstCreateAfter = () => load.answers.find((a) => a.kind === 'create' && a.status === 201 && a.sentAt >= upAt);
      t.ok(await until(() => firstCreateAfter() !== undefined, RECOVERY_BOUND_MS), `a create succeeds within ${RECOVERY_BOUND_MS / 1000} s of PostgreSQL accepting connections again`);
      const recoveredAt = firstCreateAfter()?.doneAt ?? Date.now();
      t.comment(`WORKERS=${workers}: first acknowledged create ${recoveredAt - upAt} ms after PostgreSQL accepted connections again (pg_ctl start took ${upAt - restartAt} ms)`);
      const acknowledgedBefore = load.acknowledged.length;
      t.ok(await until(() => load.acknowledged.length >= acknowledgedBefore + 30, 60_000), 'the load is served again');
      await load.stop();

      const during = load.answers.filter((a) => a.sentAt >= downAt && a.doneAt <= restartAt);
      t.ok(during.length >= SENDERS * 5, `${during.length} requests sent and answered while the database was down`);
      t.same(during.filter((a) => a.status !== 503).map((a) => `${a.kind} ${a.status} ${a.error ?? ''}`), [], 'every one of them is a 503');
      const failures = load.answers.filter((a) => a.status < 200 || a.status >= 300);
      t.same(
        failures.filter((a) => a.status !== 503 || a.retryAfter === null || a.body?.resourceType !== 'OperationOutcome').map((a) => ({ kind: a.kind, status: a.status, retryAfter: a.retryAfter, error: a.error, body: a.body })),
        [],
        'every failure, at any time, is a 503 with Retry-After and an OperationOutcome (no 500, no connection cut)',
      );
      t.equal(failures[0]?.body?.issue?.[0]?.code, 'transient', 'the outcome says the failure is transient');
      t.same(pids.filter((pid) => !existsProcess(pid)), [], 'no server process died');
      t.equal((await send('read', `${server.base}/health`)).status, 200, '/health says 200 again');

      const lost: string[] = [];
      for (const id of load.acknowledged) {
        const read = await send('read', `${server.base}/fhir/Patient/${id}`);
        if (read.status !== 200) lost.push(`${id}: ${read.status}`);
      }
      t.same(lost, [], `all ${load.acknowledged.length} acknowledged creates are there`);
    });
  }

  for (const workers of [1, 2]) {
    t.test(`WORKERS=${workers}: a server started while PostgreSQL is down waits for it, logging its retries with growing delays, and serves once it is back`, async (t) => {
      const url = await createDatabase(`start_in_outage_workers_${workers}`);
      await cluster.crash();
      let databaseDown = true;
      t.teardown(async () => {
        if (databaseDown) await cluster.restart();
      });

      const server = await spawnServerProcess(url, { env: { WORKERS: String(workers) } });
      t.teardown(() => server.stop());
      // With WORKERS=2 each server process waits and logs on its own: follow the first one to log.
      const retries = () => {
        const all = logEntries(server.logs).filter((entry) => entry.msg?.endsWith('the database is unreachable; retrying'));
        return all.filter((entry) => entry.pid === all[0]?.pid);
      };
      t.ok(await until(() => retries().length >= 3, 120_000), 'it logs its retries', { logs: server.logs.slice(-5) });
      const delays = retries().map((entry) => entry.retryInMs as number);
      t.ok(delays[1]! > delays[0]! && delays[2]! > delays[1]!, `each retry waits longer than the one before (${delays.slice(0, 3).join(', ')} ms)`);
      t.equal(server.child.exitCode, null, 'and has not exited');

      await cluster.restart();
      databaseDown = false;
      const upAt = Date.now();
      await untilHealthy(server, 120_000);
      t.comment(`WORKERS=${workers}: healthy ${Date.now() - upAt} ms after PostgreSQL accepted connections again`);
      const created = await postJson(`${server.base}/fhir/Patient`, { resourceType: 'Patient', name: [{ family: 'Tardif' }] });
      t.equal(created.status, 201, 'it serves');
    });
  }

  t.test('WORKERS=2: server processes that keep dying right after their start are replaced after growing delays, never given up on', async (t) => {
    const server = await startServerProcess(await createDatabase('quick_deaths'), { env: { WORKERS: '2' } });
    t.teardown(() => server.stop());
    const primary = server.child.pid!;
    t.ok(await until(() => childrenOf(primary).length === 2, 60_000), 'two server processes');
    // Five deaths, each of the process started last: the supervisor used to give up at the fourth quick one.
    let victim = childrenOf(primary)[0]!;
    for (let death = 1; death <= 5; death++) {
      const before = childrenOf(primary);
      process.kill(victim, 'SIGKILL');
      t.ok(await until(() => childrenOf(primary).some((pid) => !before.includes(pid)), 120_000), `death ${death}: replaced`);
      victim = childrenOf(primary).find((pid) => !before.includes(pid))!;
    }
    const deaths = logEntries(server.logs).filter((entry) => entry.msg === 'a server process died; starting another');
    t.equal(deaths.length, 5, 'each death logged');
    const delays = deaths.map((entry) => entry.restartInMs as number);
    t.ok(delays.slice(1).every((delay, i) => delay > delays[i]! || delay === 30_000), `growing restart delays (${delays.join(', ')} ms)`);
    t.equal(server.child.exitCode, null, 'the supervisor is still running');
    t.ok(await until(() => fetch(`${server.base}/health`).then((r) => r.ok, () => false), 120_000), 'and serving');
  });
}
