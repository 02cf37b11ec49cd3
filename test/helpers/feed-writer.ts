/**
 * A writer process for the change-feed test: `node --import tsx test/helpers/feed-writer.ts <DATABASE_URL> <label> <rounds>`.
 * Through the store's own Repository (as a server process writes), it interleaves fast creates and updates
 * with slow transactions held open by pg_sleep (so that later writers, here and in other processes, commit
 * past them) and transactions rolled back after writing. It prints one JSON line per outcome once it is
 * known: `{"committed":"Type/id/version"}` after the commit returned, `{"rolledBack":"Type/id"}` after
 * the rollback; then `{"done":true}`.
 */
import type { Patient } from 'fhir/r4';
import { joinTransaction, type SqlExecutor } from '../../src/store/database.ts';
import { openDatabase } from '../../src/store/open-database.ts';
import { Repository } from '../../src/store/repository.ts';

const [url, label, roundsText] = process.argv.slice(2);
if (!url || !label || !roundsText) throw new Error('usage: feed-writer.ts <DATABASE_URL> <label> <rounds>');
const rounds = Number(roundsText);

const db = await openDatabase(url);
const repo = new Repository(db);
const inTransaction = (tx: SqlExecutor) => new Repository(joinTransaction(tx, db.driver));
const say = (line: object) => process.stdout.write(`${JSON.stringify(line)}\n`);
const patient = (family: string): Patient => ({ resourceType: 'Patient', name: [{ family }] });

class Rollback extends Error {}

const ownPatients: string[] = [];
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (let round = 0; round < rounds; round++) {
  const kind = round % 5;
  if (kind === 0 || kind === 3) {
    // Fast: one create, committed in one statement.
    const created = await repo.create(patient(`${label}-${round}`));
    ownPatients.push(created.id);
    say({ committed: `Patient/${created.id}/${created.versionId}` });
  } else if (kind === 1 && ownPatients.length > 0) {
    const id = ownPatients[round % ownPatients.length]!;
    const { resource } = await repo.update({ ...patient(`${label}-${round}-updated`), id });
    say({ committed: `Patient/${id}/${resource.versionId}` });
  } else if (kind === 2 || kind === 1) {
    // Slow: its rows get an early id and seq, and it commits well after writes that came later.
    const written: string[] = [];
    await db.transaction(async (tx) => {
      const store = inTransaction(tx);
      const first = await store.create(patient(`${label}-${round}-slow`));
      written.push(`Patient/${first.id}/${first.versionId}`);
      await tx.query('SELECT pg_sleep($1)', [0.05 + (round % 4) * 0.1]);
      const second = await store.create(patient(`${label}-${round}-slow-b`));
      written.push(`Patient/${second.id}/${second.versionId}`);
    });
    for (const key of written) say({ committed: key });
  } else {
    // Written, held open a while, then rolled back: none of it may ever show in the feed.
    const attempted: string[] = [];
    await db
      .transaction(async (tx) => {
        const created = await inTransaction(tx).create(patient(`${label}-${round}-rolled-back`));
        attempted.push(`Patient/${created.id}`);
        await tx.query('SELECT pg_sleep(0.1)');
        throw new Rollback();
      })
      .catch((error: unknown) => {
        if (!(error instanceof Rollback)) throw error;
      });
    for (const key of attempted) say({ rolledBack: key });
  }
  await pause(round % 3);
}

say({ done: true });
await db.close();
