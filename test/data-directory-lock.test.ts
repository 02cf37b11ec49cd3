/**
 * A PGlite data directory belongs to one server process: a second server on it refuses to start, saying
 * why, and a server killed without a chance to clean up (SIGKILL) does not leave it locked. PGlite-only,
 * so it runs the same on both suite runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { authHeaders, postJson, spawnServerProcess, startServerProcess, untilHealthy } from './helpers/server-process.ts';

t.setTimeout(300_000);

t.test('a second server on a PGlite data directory in use refuses to start with a clear message; after a SIGKILL of the first, a new server starts on it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dossier-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'pglite');

  const first = await startServerProcess(dataDir);
  t.teardown(() => first.stop());
  const kept = await postJson(`${first.base}/fhir/Patient`, { resourceType: 'Patient', name: [{ family: 'Premier' }] });
  t.equal(kept.status, 201);

  const second = await spawnServerProcess(dataDir);
  t.teardown(() => second.stop());
  const serving = await untilHealthy(second).then(() => true, () => false);
  t.notOk(serving, 'the second server does not serve');
  if (serving) await second.stop();
  const { code } = await second.exited;
  t.equal(code, 1, 'the second server exits with status 1');
  const output = second.logs.join('\n');
  t.match(output, `the data directory ${dataDir} is in use by another server (process ${first.child.pid})`, 'and says which server holds the directory');
  t.notMatch(output, /\n\s+at /, 'in a log line, not a stack trace');
  t.equal(first.child.exitCode, null, 'the first server is still running');
  t.equal((await fetch(`${first.base}/fhir/Patient/${kept.body.id}`, { headers: await authHeaders(first.base) })).status, 200, 'and still serving');

  first.child.kill('SIGKILL');
  await first.exited;
  const third = await startServerProcess(dataDir);
  t.teardown(() => third.stop());
  t.equal((await fetch(`${third.base}/fhir/Patient/${kept.body.id}`, { headers: await authHeaders(third.base) })).status, 200, 'a new server starts on the directory of the killed one, with its data');
  t.equal((await postJson(`${third.base}/fhir/Patient`, { resourceType: 'Patient', name: [{ family: 'Suivant' }] })).status, 201, 'and writes to it');
});
