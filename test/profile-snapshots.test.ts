import { readFileSync } from 'node:fs';
import t from 'tap';
import { buildSnapshots } from '../profiles/build-snapshots.ts';

t.test("the project's profiles carry the snapshot their differential generates", async (t) => {
  const built = buildSnapshots();
  t.equal(built.length, 4);
  for (const [path, definition] of built) {
    const committed = JSON.parse(readFileSync(path, 'utf8'));
    t.same(committed.snapshot, definition.snapshot, `${path} is up to date (node --import tsx profiles/build-snapshots.ts)`);
  }
});
