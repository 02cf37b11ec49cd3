/**
 * The audit trail survives a crash (issue 18, item 4b): a server process with the trail on (FHIR_AUDIT
 * default) is SIGKILLed while several readers read distinct resources, then restarted on the same store.
 * Every read that was answered 200 before the kill must have its AuditEvent (a read's event commits before
 * its data leaves: security/audit-trail.ts); each read names one resource, read once, as its marker.
 *
 * On the PostgreSQL run the server's tables live in a database created for this test; on the PGlite run in
 * a PGlite data directory in a temp dir (PGlite must recover after SIGKILL as PostgreSQL does).
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { openDatabase } from '../src/store/open-database.ts';
import { openingDatabase } from '../src/store/encryption.ts';
import { testDataKeys } from './helpers/app.ts';
import { createScratchStore, getJson, postJson, startServerProcess, type ServerProcess } from './helpers/server-process.ts';

const READERS = 6;
/** Distinct resources, each read at most once: more than the readers get through before the kill. */
const RESOURCES = 1500;
/** Kill once this many reads have been answered. */
const KILL_AFTER_ANSWERS = 150;
const RUN = randomBytes(3).toString('hex');
const idOf = (index: number) => `audit-kill-${RUN}-${index}`;

t.test(`SIGKILL during reads under load (${READERS} readers) on ${process.env.DATABASE_URL?.startsWith('postgres') ? 'PostgreSQL' : 'PGlite'}: every answered read has its AuditEvent`, async (t) => {
  const store = await createScratchStore('audit_kill');
  t.teardown(() => store.drop());
  let server: ServerProcess = await startServerProcess(store.url);
  t.teardown(() => server.stop());

  // The resources read, written in one transaction (Practitioners: reference data, no patient compartment).
  const entries = Array.from({ length: RESOURCES }, (_, index) => ({
    resource: { resourceType: 'Practitioner', id: idOf(index), name: [{ family: `Lecteur${index}` }] },
    request: { method: 'PUT', url: `Practitioner/${idOf(index)}` },
  }));
  const written = await postJson(`${server.base}/fhir`, { resourceType: 'Bundle', type: 'transaction', entry: entries });
  t.equal(written.status, 200, 'the resources to read are written');

  // --- the reads, and the kill --------------------------------------------------------------------------
  const answered: number[] = [];
  const otherStatuses: number[] = [];
  let next = 0;
  let killed = false;
  let inFlight = 0;
  let inFlightAtKill = 0;
  const kill = () => {
    if (killed) return;
    killed = true;
    inFlightAtKill = inFlight;
    server.child.kill('SIGKILL');
  };
  const reader = async () => {
    while (!killed && next < RESOURCES) {
      const index = next++;
      inFlight++;
      try {
        const answer = await getJson(`${server.base}/fhir/Practitioner/${idOf(index)}`);
        if (answer.status === 200 && answer.body?.id === idOf(index)) {
          answered.push(index);
          if (answered.length === KILL_AFTER_ANSWERS) kill();
        } else otherStatuses.push(answer.status);
      } catch {
        // The connection died with the server (or the body was cut): never answered.
      } finally {
        inFlight--;
      }
    }
  };
  await Promise.all(Array.from({ length: READERS }, reader));
  kill();
  const exit = await server.exited;
  t.equal(exit.signal, 'SIGKILL', 'the server died by SIGKILL');
  t.same(otherStatuses, [], 'no read was refused or failed before the kill');
  t.ok(answered.length >= KILL_AFTER_ANSWERS, `${answered.length} reads were answered before the kill`);
  t.ok(inFlightAtKill >= 1, `the kill hit while reads were in flight (${inFlightAtKill})`);

  // --- restart on the same store: the server recovers it, then the trail is read from the rows ------------
  server = await startServerProcess(store.url);
  // Not a read of a marked resource: its event would stand in for a missing one.
  const after = await getJson(`${server.base}/fhir/metadata`);
  t.equal(after.status, 200, 'the restarted server answers');
  await server.stop();

  // AuditEvents are sealed (encryption at rest): read them opened with the server's master key.
  const db = openingDatabase(await openDatabase(store.url), testDataKeys());
  try {
    const { rows } = await db.query<{ content: string }>(`SELECT content FROM resource WHERE resource_type = 'AuditEvent'`);
    const audited = new Set<number>();
    for (const { content } of rows.filter((row) => row.content.includes(`audit-kill-${RUN}-`))) {
      const event = JSON.parse(content);
      if (event.action !== 'R' || event.outcome !== '0' || event.subtype?.[0]?.code !== 'read') continue;
      for (const entity of event.entity ?? []) {
        const match = new RegExp(`^Practitioner/audit-kill-${RUN}-(\\d+)(/_history/\\d+)?$`).exec(entity.what?.reference ?? '');
        if (match) audited.add(Number(match[1]));
      }
    }
    const missing = answered.filter((index) => !audited.has(index));
    t.same(missing, [], `every one of the ${answered.length} answered reads has its successful read AuditEvent`);
    t.comment(`${audited.size} reads on record for ${answered.length} answered, ${inFlightAtKill} in flight at the kill`);
  } finally {
    await db.close();
  }
});
