// The ResourceStore contract (src/store/resource-store.ts) as tests over any engine: a store passes when
// it gives these answers, whatever holds its data. Run it with `storeContract(t, open)`; each case uses
// its own resources, so one store serves the whole suite.
import { randomUUID } from 'node:crypto';
import type { Immunization, Patient, Resource } from 'fhir/r4';
import type { Test } from 'tap';
import { FhirError } from '../../src/fhir/outcome.ts';
import type { ResponseBundle } from '../../src/fhir/resource-text.ts';
import { parseSearch } from '../../src/search/parse.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../../src/search/registry.ts';
import { ALL_ACCESS, type AccessContext, type MatchCriteria, type ResourceStore } from '../../src/store/resource-store.ts';

export type StoreFactory = () => Promise<{ store: ResourceStore; close(): Promise<void> }>;

type Tap = Test;

let registry: SearchParameterRegistry | undefined;

/** The R4 search parameters, which the store indexes and the contract searches by. */
export function contractRegistry(): SearchParameterRegistry {
  return (registry ??= new SearchParameterRegistry(loadSearchParameters()));
}

const SYSTEM = 'urn:dossier:store-contract';
const BASE = 'http://contract.test/fhir';

function search(resourceType: string, query: string) {
  return parseSearch([resourceType], [...new URLSearchParams(query)], contractRegistry(), { strict: true, baseUrl: BASE });
}

/** Criteria as a conditional interaction gives them: at most a few ids, no total, locked by their text. */
function criteria(resourceType: string, query: string): MatchCriteria {
  return { resourceType, search: { ...search(resourceType, query), count: 11, total: 'none' }, lockKey: `${resourceType}?${query}` };
}

function patient(value: string, extra: Partial<Patient> = {}): Patient {
  return { resourceType: 'Patient', identifier: [{ system: SYSTEM, value }], name: [{ family: 'Contract', given: [value] }], ...extra };
}

function immunization(patientReference: string): Resource {
  const resource: Immunization = { resourceType: 'Immunization', status: 'completed', vaccineCode: { text: 'contract' }, patient: { reference: patientReference }, occurrenceDateTime: '2024-05-02' };
  return resource;
}

function matchIds(bundle: ResponseBundle): string[] {
  return (bundle.entry ?? []).filter((entry) => entry.search?.mode === 'match').map((entry) => entry.resource!.id!);
}

/** Fails unless `promise` rejects with a FhirError of `status` (the store's 404, 410, 412…). */
async function failsWith(t: Tap, promise: Promise<unknown>, status: number, message = `${status}`): Promise<void> {
  try {
    await promise;
    t.fail(`${message}: ${status} expected, but it succeeded`);
  } catch (error) {
    t.equal(error instanceof FhirError ? error.status : error, status, message);
  }
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function storeContract(t: Tap, open: StoreFactory): void {
  let store: ResourceStore;
  t.before(async () => {
    const opened = await open();
    store = opened.store;
    t.teardown(() => opened.close());
  });

  t.test('create, read, vread, update, delete: a deleted resource reads 410, its old versions still read', async (t) => {
    const created = await store.create(patient('lifecycle'));
    t.equal(created.versionId, 1);
    t.ok(created.id, 'the store assigns an id');
    t.equal((created.resource.meta ?? {}).versionId, '1', 'meta.versionId is stamped');
    const read = await store.read('Patient', created.id);
    t.same((read.resource as Patient).identifier, [{ system: SYSTEM, value: 'lifecycle' }]);

    const { resource: second, created: isNew } = await store.update({ ...patient('lifecycle', { gender: 'female' }), id: created.id });
    t.equal(isNew, false);
    t.equal(second.versionId, 2);
    t.equal(((await store.read('Patient', created.id)).resource as Patient).gender, 'female');

    const { versionId } = await store.delete('Patient', created.id);
    t.equal(versionId, 3, 'the deletion is a version of its own');
    await failsWith(t, store.read('Patient', created.id), 410);
    t.equal(((await store.vread('Patient', created.id, 1)).resource as Patient).gender, undefined, 'version 1 as it was');
    t.equal(((await store.vread('Patient', created.id, 2)).resource as Patient).gender, 'female', 'version 2 as it was');
    await failsWith(t, store.vread('Patient', created.id, 3), 410, 'the deletion version has no content');
    t.same(await store.delete('Patient', created.id), {}, 'deleting again deletes nothing');

    const { resource: again, created: recreated } = await store.update({ ...patient('lifecycle'), id: created.id });
    t.equal(recreated, true, 'an update of a deleted resource brings it back');
    t.equal(again.versionId, 4);
  });

  t.test('an unknown id is 404 for read, vread and readBinary; an update with a new id creates it', async (t) => {
    const id = randomUUID();
    await failsWith(t, store.read('Patient', id), 404);
    await failsWith(t, store.vread('Patient', id, 1), 404);
    await failsWith(t, store.readBinary(id), 404);
    t.same(await store.delete('Patient', id), {}, 'nothing to delete');
    const { resource, created } = await store.update({ ...patient('client-id'), id });
    t.equal(created, true);
    t.equal(resource.id, id);
    t.equal(resource.versionId, 1);
  });

  t.test('If-Match that is not the current version: 412, and nothing is written', async (t) => {
    const created = await store.create(patient('if-match'));
    await failsWith(t, store.update({ ...patient('if-match', { gender: 'male' }), id: created.id }, { ifMatch: 2 }), 412);
    await failsWith(t, store.delete('Patient', created.id, { ifMatch: 2 }), 412);
    await failsWith(t, store.patch('Patient', created.id, async (current) => ({ ...current.resource, gender: 'male' }) as Resource, { ifMatch: 2 }), 412);
    const current = await store.read('Patient', created.id);
    t.equal(current.versionId, 1, 'still version 1');
    t.equal((current.resource as Patient).gender, undefined);
    const history = await store.history({ resourceType: 'Patient', id: created.id, count: 10 });
    t.equal(history.total, 1, 'no version was added');

    const { resource } = await store.update({ ...patient('if-match', { gender: 'male' }), id: created.id }, { ifMatch: 1 });
    t.equal(resource.versionId, 2, 'the matching version is updated');
  });

  t.test('If-Match on a resource that does not exist (or no longer does): 412, nothing created', async (t) => {
    const id = randomUUID();
    await failsWith(t, store.update({ ...patient('absent'), id }, { ifMatch: 1 }), 412);
    await failsWith(t, store.read('Patient', id), 404, 'not created');
    await failsWith(t, store.delete('Patient', id, { ifMatch: 1 }), 412);
    const created = await store.create(patient('absent-deleted'));
    await store.delete('Patient', created.id);
    await failsWith(t, store.update({ ...patient('absent-deleted'), id: created.id }, { ifMatch: 2 }), 412, 'a deletion is not a version to match');
    await failsWith(t, store.read('Patient', created.id), 410, 'still deleted');
  });

  t.test('20 concurrent updates of one resource: versions 1 to 21, none lost', async (t) => {
    const created = await store.create(patient('concurrent'));
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, n) => store.update({ ...patient('concurrent', { name: [{ family: 'Contract', given: [`writer-${n}`] }] }), id: created.id })),
    );
    t.same(results.map((result) => result.resource.versionId).sort((a, b) => a - b), Array.from({ length: 20 }, (_, n) => n + 2), 'each update made a version of its own');
    const history = await store.history({ resourceType: 'Patient', id: created.id, count: 100 });
    t.same(history.entries.map((entry) => entry.versionId), Array.from({ length: 21 }, (_, n) => 21 - n), 'history holds versions 21 to 1');
    const writers = history.entries.slice(0, 20).map((entry) => (entry.resource!.resource as Patient).name![0]!.given![0]).sort();
    t.same(writers, Array.from({ length: 20 }, (_, n) => `writer-${n}`).sort(), 'every writer is in exactly one version');
    t.equal((await store.read('Patient', created.id)).versionId, 21);
  });

  t.test('10 concurrent conditional creates with the same criteria, each locking and matching in its unit: one resource', async (t) => {
    const value = `once-${randomUUID()}`;
    const condition = criteria('Patient', `identifier=${SYSTEM}|${value}`);
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () =>
        store.unitOfWork(async (unit) => {
          const [matches = []] = await unit.match([condition], { lock: true });
          if (matches.length > 0) return 'matched';
          await unit.create(patient(value));
          return 'created';
        }),
      ),
    );
    t.same(outcomes.filter((outcome) => outcome === 'created'), ['created'], 'one unit created, the others found it');
    const found = await store.search(search('Patient', `identifier=${SYSTEM}|${value}&_total=accurate`), { baseUrl: BASE, path: 'Patient' });
    t.equal(found.total, 1);
    t.equal(matchIds(found).length, 1);
  });

  t.test('match: live resources only, in a unit or not, at most the criteria count', async (t) => {
    const value = `match-${randomUUID()}`;
    const kept = await store.create(patient(value));
    const removed = await store.create(patient(value));
    await store.delete('Patient', removed.id);
    const [matches] = await store.match([criteria('Patient', `identifier=${SYSTEM}|${value}`)]);
    t.same(matches, [kept.id]);
    const [none, both] = await store.unitOfWork((unit) =>
      unit.match([criteria('Patient', `identifier=${SYSTEM}|nothing-${value}`), criteria('Patient', `identifier=${SYSTEM}|${value}`)], { lock: true }),
    );
    t.same(none, [], 'each criteria its own answer, in order');
    t.same(both, [kept.id]);
  });

  t.test('existing: of the references given, the live ones, in one call; in a unit its own writes, buffered ones included', async (t) => {
    const live = await store.create(patient(`existing-${randomUUID()}`));
    const removed = await store.create(patient(`existing-${randomUUID()}`));
    await store.delete('Patient', removed.id);
    const unknown = `Patient/${randomUUID()}`;
    const found = await store.existing([`Patient/${live.id}`, `Patient/${removed.id}`, unknown, `Organization/${live.id}`, `Patient/${live.id}`]);
    t.same([...found], [`Patient/${live.id}`], 'a deleted, unknown or other-typed one is not there');
    t.same([...(await store.existing([]))], [], 'nothing asked, nothing found');
    const inUnit = await store.unitOfWork(async (unit) => {
      const created = await unit.create(patient(`existing-${randomUUID()}`));
      return { id: created.id, found: await unit.existing([`Patient/${created.id}`]) };
    });
    t.same([...inUnit.found], [`Patient/${inUnit.id}`]);
  });

  t.test('readMany: of the references given, the live resources the access sees, as stored, in (type, id) order, each once', async (t) => {
    const [first, second] = [await store.create(patient(`many-${randomUUID()}`)), await store.create(patient(`many-${randomUUID()}`))].sort((a, b) => (a.id < b.id ? -1 : 1));
    const practitioner = await store.create({ resourceType: 'Practitioner', name: [{ family: 'Contract' }] } as Resource);
    const removed = await store.create(patient(`many-${randomUUID()}`));
    await store.delete('Patient', removed.id);
    const read = await store.readMany([`Practitioner/${practitioner.id}`, `Patient/${second!.id}`, `Patient/${removed.id}`, `Patient/${randomUUID()}`, `Organization/${first!.id}`, `Patient/${first!.id}`, `Patient/${second!.id}`]);
    t.same(read.map((r) => `${r.resourceType}/${r.id}`), [`Patient/${first!.id}`, `Patient/${second!.id}`, `Practitioner/${practitioner.id}`], 'deleted, unknown and other-typed ones left out; by type, then id');
    t.equal(read[0]!.json, (await store.read('Patient', first!.id)).json, 'each as a read gives it');
    t.same(await store.readMany([]), [], 'nothing asked, nothing read');
    const hiding = store.forAccess({ ...ALL_ACCESS, hiddenCompartments: [{ type: 'Patient', id: second!.id }] });
    t.same((await hiding.readMany([`Patient/${first!.id}`, `Patient/${second!.id}`])).map((r) => r.id), [first!.id], 'what the access hides is not read');
    const inUnit = await store.unitOfWork(async (unit) => {
      const created = await unit.create(patient(`many-${randomUUID()}`));
      return { id: created.id, read: await unit.readMany([`Patient/${created.id}`]) };
    });
    t.same(inUnit.read.map((r) => r.id), [inUnit.id], 'in a unit, its own (buffered) writes');
  });

  t.test('referrers: live resources whose current version references the targets; a referrer updated to drop it, or deleted, no longer is', async (t) => {
    const target = await store.create(patient(`referred-${randomUUID()}`));
    const other = await store.create(patient(`referred-${randomUUID()}`));
    const first = await store.create(immunization(`Patient/${target.id}`));
    const second = await store.create(immunization(`Patient/${target.id}`));
    const elsewhere = await store.create(immunization(`Patient/${other.id}`));
    const found = await store.referrers([`Patient/${target.id}`], 10);
    t.same(found.map((r) => r.source).sort(), [`Immunization/${first.id}`, `Immunization/${second.id}`].sort());
    t.ok(found.every((r) => r.target === `Patient/${target.id}` && r.param === 'patient' && r.visible), 'each with its target, parameter and visibility');
    t.equal((await store.referrers([`Patient/${target.id}`, `Patient/${other.id}`], 1)).length, 1, 'at most limit');
    await store.update({ ...immunization(`Patient/${other.id}`), id: first.id });
    await store.delete('Immunization', second.id);
    t.same(await store.referrers([`Patient/${target.id}`], 10), [], 'dropped and deleted referrers are gone');
    t.same((await store.referrers([`Patient/${other.id}`], 10)).map((r) => r.source).sort(), [`Immunization/${first.id}`, `Immunization/${elsewhere.id}`].sort());
    const inUnit = await store.unitOfWork(async (unit) => {
      const created = await unit.create(immunization(`Patient/${target.id}`));
      return { id: created.id, found: await unit.referrers([`Patient/${target.id}`], 10) };
    });
    t.same(inUnit.found.map((r) => r.source), [`Immunization/${inUnit.id}`], 'in a unit, its own (buffered) writes count');
    t.same(await store.referrers([], 10), []);
  });

  t.test('referrers through a restricted store: a hidden referrer still counts, marked not visible', async (t) => {
    const seen = await store.create(patient(`seen-${randomUUID()}`));
    const withheld = await store.create(patient(`withheld-${randomUUID()}`));
    const practitioner = await store.create({ resourceType: 'Practitioner', name: [{ family: 'Contract' }] } as Resource);
    const performed = (patientId: string) => ({ ...immunization(`Patient/${patientId}`), performer: [{ actor: { reference: `Practitioner/${practitioner.id}` } }] }) as Resource;
    const visible = await store.create(performed(seen.id));
    const hidden = await store.create(performed(withheld.id));
    const restricted = store.forAccess({ ...ALL_ACCESS, hiddenCompartments: [{ type: 'Patient', id: withheld.id }] });
    const found = await restricted.referrers([`Practitioner/${practitioner.id}`], 10);
    t.same(
      found.map((r) => [r.source, r.visible]).sort(),
      [[`Immunization/${visible.id}`, true], [`Immunization/${hidden.id}`, false]].sort(),
    );
  });

  t.test('40 concurrent pairs of a write naming a resource (existing with lock) and its delete (then referrers): never both', async (t) => {
    const pairs = 40;
    const targets = await Promise.all(Array.from({ length: pairs }, () => store.create(patient(`raced-${randomUUID()}`))));
    const jitter = () => sleep(Math.random() * 4);
    const outcomes = await Promise.all(
      targets.map(async (target, index) => {
        const reference = `Patient/${target.id}`;
        // Each side waits a little inside its unit, between its check and its commit: without the lock a
        // delete would commit in that gap, and both would succeed.
        const startWrite = () => store
          .unitOfWork(async (unit) => {
            await jitter();
            const found = await unit.existing([reference], { lock: true });
            if (!found.has(reference)) throw FhirError.notFound(`${reference} is gone`);
            await jitter();
            return (await unit.create(immunization(reference))).id;
          })
          .then((id) => ({ written: id }), (error: unknown) => ({ written: undefined, error }));
        const startRemove = () => store
          .unitOfWork(async (unit) => {
            await jitter();
            await unit.delete('Patient', target.id);
            await jitter();
            if ((await unit.referrers([reference], 1)).length > 0) throw new FhirError(409, [{ code: 'conflict', diagnostics: `${reference} is referenced` }]);
            return true;
          })
          .then(() => ({ deleted: true }), (error: unknown) => ({ deleted: false, error }));
        // Half the pairs start their delete first (a store that runs one unit at a time takes them in that order).
        let write: ReturnType<typeof startWrite>;
        let remove: ReturnType<typeof startRemove>;
        if (index % 2 === 0) {
          write = startWrite();
          remove = startRemove();
        } else {
          remove = startRemove();
          write = startWrite();
        }
        return { reference, ...(await write), ...(await remove) };
      }),
    );
    const unexpected = outcomes.flatMap((o) => [o as { error?: unknown }].filter((x) => x.error !== undefined && !(x.error instanceof FhirError)).map((x) => String(x.error)));
    t.same(unexpected, [], 'each side succeeds or is refused, nothing else');
    const both = outcomes.filter((o) => o.written !== undefined && o.deleted);
    t.same(both.map((o) => o.reference), [], 'no write and delete of its target both committed');
    t.ok(outcomes.every((o) => o.written !== undefined || o.deleted), 'one of each pair always succeeds');
    for (const outcome of outcomes) {
      const live = (await store.existing([outcome.reference])).has(outcome.reference);
      const referrers = await store.referrers([outcome.reference], 10);
      if (referrers.length > 0 && !live) t.fail(`${outcome.reference} is deleted but still referenced`);
    }
    t.comment(`${outcomes.filter((o) => o.written !== undefined).length} writes and ${outcomes.filter((o) => o.deleted).length} deletes succeeded`);
  });

  t.test('a unitOfWork that throws leaves nothing: no resource, no version, nothing a search finds', async (t) => {
    const value = `rolled-back-${randomUUID()}`;
    const existing = await store.create(patient(`kept-${value}`));
    let createdId: string | undefined;
    await t.rejects(
      store.unitOfWork(async (unit) => {
        createdId = (await unit.create(patient(value))).id;
        await unit.update({ ...patient(value), id: existing.id });
        await unit.delete('Patient', (await unit.create(patient(value))).id);
        t.equal((await unit.read('Patient', createdId)).id, createdId, 'the unit reads its own writes');
        throw new Error('the unit fails');
      }),
      { message: 'the unit fails' },
    );
    await failsWith(t, store.read('Patient', createdId!), 404, 'the created resource is gone');
    t.equal((await store.history({ resourceType: 'Patient', id: createdId!, count: 10 })).total, 0, 'and so is its history');
    const kept = await store.read('Patient', existing.id);
    t.equal(kept.versionId, 1, 'the update was undone');
    t.equal((kept.resource as Patient).identifier![0]!.value, `kept-${value}`);
    const found = await store.search(search('Patient', `identifier=${SYSTEM}|${value}&_total=accurate`), { baseUrl: BASE, path: 'Patient' });
    t.equal(found.total, 0, 'the index has none of it');
    t.same(matchIds(found), []);
  });

  t.test('a nested unitOfWork joins the open one: it sees its writes, and goes with it', async (t) => {
    const value = `nested-${randomUUID()}`;
    let outerId: string | undefined;
    let innerId: string | undefined;
    await t.rejects(
      store.unitOfWork(async (outer) => {
        outerId = (await outer.create(patient(value))).id;
        innerId = await outer.unitOfWork(async (inner) => {
          t.equal((await inner.read('Patient', outerId!)).id, outerId, 'the inner unit sees the outer one\'s write');
          return (await inner.create(patient(value))).id;
        });
        t.equal((await outer.read('Patient', innerId)).id, innerId, 'the outer unit sees the inner one\'s write before either ends');
        throw new Error('the outer unit fails');
      }),
      { message: 'the outer unit fails' },
    );
    await failsWith(t, store.read('Patient', outerId!), 404);
    await failsWith(t, store.read('Patient', innerId!), 404, 'the inner unit did not commit on its own');

    const [a, b] = await store.unitOfWork(async (outer) => [(await outer.create(patient(value))).id, await outer.unitOfWork(async (inner) => (await inner.create(patient(value))).id)]);
    t.equal((await store.read('Patient', a!)).versionId, 1, 'a unit that succeeds keeps its writes');
    t.equal((await store.read('Patient', b!)).versionId, 1, 'and its nested unit\'s');
  });

  t.test('history: newest first, paged by its cursor, _since from an instant', async (t) => {
    const created = await store.create(patient('history'));
    await sleep(5);
    await store.update({ ...patient('history', { gender: 'other' }), id: created.id });
    await sleep(5);
    const third = await store.update({ ...patient('history', { gender: 'female' }), id: created.id });
    await sleep(5);
    await store.delete('Patient', created.id);

    const first = await store.history({ resourceType: 'Patient', id: created.id, count: 3 });
    t.equal(first.total, 4);
    t.same(first.entries.map((entry) => [entry.versionId, entry.method]), [[4, 'DELETE'], [3, 'PUT'], [2, 'PUT']]);
    t.equal(first.entries[0]!.resource, undefined, 'a deletion has no resource');
    t.equal(first.entries[1]!.resource!.versionId, 3);
    t.ok(first.nextBefore !== undefined, 'a next page');
    const second = await store.history({ resourceType: 'Patient', id: created.id, count: 3, before: first.nextBefore });
    t.same(second.entries.map((entry) => [entry.versionId, entry.method]), [[1, 'POST']]);
    t.equal(second.nextBefore, undefined, 'the last page');

    const since = await store.history({ resourceType: 'Patient', id: created.id, count: 10, since: third.resource.lastUpdated });
    t.same(since.entries.map((entry) => entry.versionId), [4, 3], 'versions written at or after the instant');
    t.equal(since.total, 2);

    const typeLevel = await store.history({ resourceType: 'Patient', count: 2 });
    t.equal(typeLevel.entries[0]!.id, created.id, 'type history: the latest write first');
    t.ok(typeLevel.total >= 4);
    const system = await store.history({ count: 1 });
    t.equal(system.entries.length, 1);
  });

  t.test('readChanges: each committed write once from the cursor before it, a rolled-back one never; a made-up cursor is 400', async (t) => {
    // The feed shows a write once every transaction that began before it has ended: wait for it, boundedly.
    const readAll = async (cursor: string | undefined, until: (keys: string[]) => boolean) => {
      const keys: string[] = [];
      const deadline = Date.now() + 60_000;
      do {
        const page = await store.readChanges(cursor, 500);
        keys.push(...page.changes.map((c) => `${c.resourceType}/${c.id}/${c.versionId}/${c.method}`));
        cursor = page.next;
        if (page.changes.length < 500 && !until(keys)) await sleep(50);
      } while (!until(keys) && Date.now() < deadline);
      return { keys, cursor };
    };
    const start = await store.readChanges(undefined, 1);
    const created = await store.create(patient(`feed-${randomUUID()}`));
    await store.update({ ...patient('feed-updated'), id: created.id });
    let rolledBack: string | undefined;
    await store
      .unitOfWork(async (unit) => {
        rolledBack = (await unit.create(patient('feed-rolled-back'))).id;
        throw new Error('roll back');
      })
      .catch(() => undefined);
    const mine = (keys: string[]) => keys.filter((key) => key.startsWith(`Patient/${created.id}/`) || key.startsWith(`Patient/${rolledBack}/`));
    const { keys, cursor } = await readAll(start.next, (found) => mine(found).length >= 2);
    t.same(mine(keys), [`Patient/${created.id}/1/POST`, `Patient/${created.id}/2/PUT`], 'both versions, in order, once each; nothing of the rolled-back unit');
    const again = await store.readChanges(cursor, 500);
    t.same(mine(again.changes.map((c) => `${c.resourceType}/${c.id}/${c.versionId}/${c.method}`)), [], 'the next read does not repeat them');
    await failsWith(t, store.readChanges('not-a-cursor', 10), 400, 'a made-up cursor');
  });

  t.test('search: by token and string, _count pages, _total=accurate counts every match, deleted ones excluded', async (t) => {
    const family = `Family${randomUUID().replace(/-/g, '')}`;
    const ids: string[] = [];
    for (let n = 0; n < 5; n++) ids.push((await store.create(patient(`${family}-${n}`, { name: [{ family, given: [`G${n}`] }] }))).id);
    await store.delete('Patient', ids[4]!);

    const byString = await store.search(search('Patient', `family=${family.toLowerCase().slice(0, 20)}&_count=2&_total=accurate`), { baseUrl: BASE, path: 'Patient' });
    t.equal(byString.total, 4, 'a string matches case-insensitively by prefix; the deleted one is not counted');
    t.equal(matchIds(byString).length, 2, '_count bounds the page');
    t.ok(byString.link?.some((link) => link.relation === 'next'), 'with a next page');

    const byToken = await store.search(search('Patient', `identifier=${SYSTEM}|${family}-2`), { baseUrl: BASE, path: 'Patient' });
    t.same(matchIds(byToken), [ids[2]]);
    const byDeletedToken = await store.search(search('Patient', `identifier=${SYSTEM}|${family}-4&_total=accurate`), { baseUrl: BASE, path: 'Patient' });
    t.equal(byDeletedToken.total, 0);
    const estimate = await store.search(search('Patient', `family=${family}&_total=estimate`), { baseUrl: BASE, path: 'Patient' });
    t.ok(typeof estimate.total === 'number', '_total=estimate gives a number');
  });

  t.test('search: _include and _revinclude', async (t) => {
    const owner = await store.create(patient(`owner-${randomUUID()}`));
    const linked = await store.create({ resourceType: 'Patient', identifier: [{ system: SYSTEM, value: `linked-${owner.id}` }], link: [{ other: { reference: `Patient/${owner.id}` }, type: 'seealso' }] } as Patient);
    const included = await store.search(search('Patient', `_id=${linked.id}&_include=Patient:link`), { baseUrl: BASE, path: 'Patient' });
    t.same((included.entry ?? []).map((entry) => [entry.search?.mode, entry.resource!.id]), [['match', linked.id], ['include', owner.id]]);
    const revincluded = await store.search(search('Patient', `_id=${owner.id}&_revinclude=Patient:link`), { baseUrl: BASE, path: 'Patient' });
    t.same((revincluded.entry ?? []).map((entry) => [entry.search?.mode, entry.resource!.id]), [['match', owner.id], ['include', linked.id]]);
  });

  t.test('readRecord: a patient\'s members then what they reference, each once across pages; filters; a made-up cursor is 400', async (t) => {
    const gp = await store.create({ resourceType: 'Practitioner', name: [{ family: 'Record' }] } as Resource);
    const org = await store.create({ resourceType: 'Organization', name: 'Record' } as Resource);
    const owner = await store.create(patient(`record-${randomUUID()}`, { generalPractitioner: [{ reference: `Practitioner/${gp.id}` }] }));
    const other = await store.create(patient(`record-other-${randomUUID()}`, { managingOrganization: { reference: `Organization/${org.id}` } }));
    const observation = (subject: string, date: string) =>
      ({ resourceType: 'Observation', status: 'final', code: { text: 'pouls' }, subject: { reference: `Patient/${subject}` }, effectiveDateTime: date, performer: [{ reference: `Organization/${org.id}` }] }) as Resource;
    const members = [`Patient/${owner.id}`];
    const byDate = new Map<string, string>();
    for (const date of ['2020-01-01', '2024-06-01', '2024-07-01']) byDate.set(date, `Observation/${(await store.create(observation(owner.id, date))).id}`);
    members.push(...byDate.values());
    const deleted = await store.create(observation(owner.id, '2024-08-01'));
    await store.delete('Observation', deleted.id);
    await store.create(observation(other.id, '2024-06-01'));
    const key = (e: { resource: { resourceType: string; id: string } }) => `${e.resource.resourceType}/${e.resource.id}`;

    const seen: Array<[string, string]> = [];
    let cursor: string | undefined;
    do {
      const page = await store.readRecord({ patients: [owner.id], count: 2, ...(cursor ? { cursor } : {}) });
      t.ok(page.entries.length <= 2, 'at most count entries');
      seen.push(...page.entries.map((e) => [e.mode, key(e)] as [string, string]));
      cursor = page.next;
    } while (cursor);
    const referenced = [`Organization/${org.id}`, `Practitioner/${gp.id}`].sort();
    t.same(seen, [...[...members].sort().map((k) => ['match', k]), ...referenced.map((k) => ['include', k])], 'members in key order, then the referenced ones, each once; not the deleted one nor the other patient\'s');

    const ofType = await store.readRecord({ patients: [owner.id], count: 100, types: ['Observation'] });
    t.same(ofType.entries.map(key).sort(), members.filter((k) => k.startsWith('Observation/')).sort(), 'types');
    const care = await store.readRecord({
      patients: [owner.id], count: 100, types: ['Observation'],
      careDates: { params: new Map([['Observation', 'date']]), from: '2024-01-01T00:00:00Z', to: '2024-06-30T00:00:00Z' },
    });
    t.same(care.entries.map(key), [byDate.get('2024-06-01')], 'care dates');
    const vital = await store.create({ ...observation(owner.id, '2024-09-01'), category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }] } as Resource);
    const laboratory = await store.create({ ...observation(owner.id, '2024-09-02'), category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'laboratory' }] }] } as Resource);
    const tokens = await store.readRecord({
      patients: [owner.id], count: 100, types: ['Observation', 'Patient'],
      tokens: [{ type: 'Observation', param: 'category', system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }],
    });
    t.same(tokens.entries.map(key).sort(), [`Observation/${vital.id}`, `Patient/${owner.id}`].sort(), 'tokens: Observations of the category only; other types whole');
    const anyCode = await store.readRecord({
      patients: [owner.id], count: 100, types: ['Observation'],
      tokens: [{ type: 'Observation', param: 'category', system: 'http://terminology.hl7.org/CodeSystem/observation-category' }],
    });
    t.same(anyCode.entries.map(key).sort(), [`Observation/${vital.id}`, `Observation/${laboratory.id}`].sort(), 'a token without a code: any code of its system');
    const vitalOnly = [{ type: 'Observation', param: 'category', system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }];
    const allTypes = await store.readRecord({ patients: [owner.id], count: 100, membersOnly: true, tokens: vitalOnly });
    t.same(allTypes.entries.map(key).sort(), [`Observation/${vital.id}`, `Patient/${owner.id}`].sort(), 'tokens, every type');
    const twoPatients = await store.readRecord({ patients: [owner.id, other.id], count: 100, types: ['Observation'], tokens: vitalOnly });
    t.same(twoPatients.entries.map(key), [`Observation/${vital.id}`], 'tokens, several patients');
    const both = await store.readRecord({ patients: [owner.id, other.id], count: 100, types: ['Patient'] });
    t.same(both.entries.map(key).sort(), [`Patient/${owner.id}`, `Patient/${other.id}`].sort(), 'several patients');
    const later = await store.readRecord({ patients: [owner.id], count: 100, since: new Date(Date.now() + 60_000).toISOString() });
    t.same(later.entries, [], 'since');
    await failsWith(t, store.readRecord({ patients: [owner.id], count: 2, cursor: 'not-a-cursor' }), 400, 'a made-up cursor');
  });

  t.test('recordPatients: the patients whose records hold the resources given, each once, in one call; none for what is in no record', async (t) => {
    const first = await store.create(patient(`members-${randomUUID()}`));
    const second = await store.create(patient(`members-${randomUUID()}`));
    const observation = (subject: string) => ({ resourceType: 'Observation', status: 'final', code: { text: 'glycémie' }, subject: { reference: `Patient/${subject}` } }) as Resource;
    const ofFirst = await store.create(observation(first.id));
    const ofSecond = await store.create(observation(second.id));
    const shared = await store.create({ resourceType: 'Appointment', status: 'booked', participant: [first, second].map((p) => ({ actor: { reference: `Patient/${p.id}` }, status: 'accepted' })) } as Resource);
    const gp = await store.create({ resourceType: 'Practitioner', name: [{ family: 'Hors dossier' }] } as Resource);
    const ids = async (...resources: Array<{ resourceType: string; id: string }>) => (await store.recordPatients(resources)).sort();
    t.same(await ids(ofFirst, ofSecond, ofFirst), [first.id, second.id].sort(), "each Observation's patient, once");
    t.same(await ids(shared), [first.id, second.id].sort(), 'a resource in two records: both');
    t.same(await ids(first), [first.id], 'a Patient is in its own record');
    t.same(await ids(gp, { resourceType: 'Observation', id: 'never-was' }), [], 'a Practitioner, an unknown id: none');
    t.same(await ids(), [], 'nothing asked, nothing answered');
  });

  t.test('recordAuditEvents: recorded events are read, searched and listed at once; in a unit, they roll back with it', async (t) => {
    const owner = await store.create(patient(`audited-${randomUUID()}`));
    const event = (action: string) => ({
      resourceType: 'AuditEvent',
      type: { system: 'http://terminology.hl7.org/CodeSystem/audit-event-type', code: 'rest' },
      action,
      recorded: new Date().toISOString(),
      agent: [{ requestor: true }],
      source: { observer: { display: 'contract' } },
      entity: [{ what: { reference: `Patient/${owner.id}` } }],
    }) as Resource;
    const reference = (action: string) => ({ token: [{ param: 'action', system: 'http://hl7.org/fhir/audit-event-action', code: action, text: null }], string: [], date: [], reference: [{ param: 'patient', targetType: 'Patient', targetId: owner.id, url: null, identifierSystem: null, identifierValue: null }], uri: [], number: [], quantity: [], composite: [], position: [] });
    await store.recordAuditEvents([{ resource: event('R'), indexRows: reference('R') }, { resource: event('E'), indexRows: reference('E') }]);
    await failsWith(t, store.unitOfWork(async (unit) => {
      await unit.recordAuditEvents([{ resource: event('D'), indexRows: reference('D') }]);
      throw FhirError.badRequest('rolled back');
    }), 400, 'a unit that fails');
    const context = { baseUrl: BASE, path: 'AuditEvent' };
    const found = await store.search(search('AuditEvent', `patient=${owner.id}`), context);
    const actions = (found.entry ?? []).map((entry) => (JSON.parse((entry.resource as unknown as { json: string }).json) as { action?: string }).action).sort();
    t.same(actions, ['E', 'R'], 'both searchable at once, the rolled-back one never');
    const [first] = matchIds(found);
    t.equal((await store.read('AuditEvent', first!)).resourceType, 'AuditEvent', 'read by id');
    const history = await store.history({ resourceType: 'AuditEvent', count: 10 });
    t.ok(history.entries.some((entry) => entry.id === first), 'in the history of AuditEvents');
  });

  t.test('create with the index rows its writer built: searched by them, not by rows extracted again', async (t) => {
    const marker = `built-${randomUUID()}`;
    const rows = { token: [{ param: 'identifier', system: 'urn:built', code: marker, text: null }], string: [], date: [], reference: [], uri: [], number: [], quantity: [], composite: [], position: [] };
    const created = await store.create(patient(`given-${marker}`), undefined, { indexRows: rows });
    const context = { baseUrl: BASE, path: 'Patient' };
    t.same(matchIds(await store.search(search('Patient', `identifier=urn:built|${marker}`), context)), [created.id], 'found by the rows given');
    t.same(matchIds(await store.search(search('Patient', `identifier=${SYSTEM}|given-${marker}`), context)), [], 'not by what extraction would have given');
  });

  t.test('patch: the transform gets the current version under lock; concurrent patches lose no increment', async (t) => {
    const created = await store.create(patient('patch', { multipleBirthInteger: 0 }));
    const results = await Promise.all(
      Array.from({ length: 10 }, () =>
        store.patch('Patient', created.id, async (current) => {
          const resource = current.resource as Patient;
          // A pause between the read and the write: a store that did not lock would lose increments here.
          await sleep(2);
          return { ...resource, multipleBirthInteger: resource.multipleBirthInteger! + 1 };
        }),
      ),
    );
    t.same(results.map((result) => result.resource.versionId).sort((a, b) => a - b), Array.from({ length: 10 }, (_, n) => n + 2));
    const current = await store.read('Patient', created.id);
    t.equal((current.resource as Patient).multipleBirthInteger, 10, 'every increment kept');
    t.equal(current.versionId, 11);

    await failsWith(t, store.patch('Patient', created.id, async () => { throw FhirError.badRequest('the patch does not apply'); }), 400);
    t.equal((await store.read('Patient', created.id)).versionId, 11, 'a failing transform writes nothing');
    await failsWith(t, store.patch('Patient', randomUUID(), async (current) => current.resource), 404, 'patching an unknown resource: 404');
  });

  t.test('resolveCaller: a professional\'s identities as consent sees them, a role written through the store seen at once; others as they are', async (t) => {
    const [practitioner, role, organization] = [randomUUID(), randomUUID(), randomUUID()];
    const caller = (who: string): AccessContext => ({ ...ALL_ACCESS, who, subjectToConsent: true });
    await store.update({ resourceType: 'PractitionerRole', id: role, practitioner: { reference: `Practitioner/${practitioner}` }, organization: { reference: `Organization/${organization}` } } as Resource & { id: string });
    const resolved = await store.resolveCaller(caller(`Practitioner/${practitioner}`));
    t.equal(resolved.who, `Practitioner/${practitioner}`);
    t.same([...(resolved.callerIdentities?.opposable ?? [])].sort(), [`Organization/${organization}`, `Practitioner/${practitioner}`, `PractitionerRole/${role}`].sort(), 'an opposition may name the practitioner, its role or the role\'s organisation');
    t.same([...(resolved.callerIdentities?.authoring ?? [])].sort(), [`Practitioner/${practitioner}`, `PractitionerRole/${role}`].sort(), 'authors: the practitioner or its role');
    const asRole = await store.resolveCaller(caller(`PractitionerRole/${role}`));
    t.same([...(asRole.callerIdentities?.opposable ?? [])].sort(), [`Organization/${organization}`, `Practitioner/${practitioner}`, `PractitionerRole/${role}`].sort(), 'a role: itself, its practitioner and organisation');

    await store.update({ resourceType: 'PractitionerRole', id: role, practitioner: { reference: `Practitioner/${practitioner}` } } as Resource & { id: string });
    const again = await store.resolveCaller(caller(`Practitioner/${practitioner}`));
    t.same([...(again.callerIdentities?.opposable ?? [])].sort(), [`Practitioner/${practitioner}`, `PractitionerRole/${role}`].sort(), 'the organisation dropped from the role is no longer one of its identities');
    await store.unitOfWork((unit) => unit.delete('PractitionerRole', role));
    t.same((await store.resolveCaller(caller(`Practitioner/${practitioner}`))).callerIdentities?.opposable, [`Practitioner/${practitioner}`], 'its role deleted in a unit: the practitioner alone');
    t.same((await store.resolveCaller(caller('Device/robot'))).callerIdentities?.authoring, ['Device/robot'], 'another user: itself');

    for (const access of [ALL_ACCESS, { ...ALL_ACCESS, who: 'Patient/p', subjectToConsent: true }, { ...ALL_ACCESS, clientId: 'feeder', subjectToConsent: true }, { ...ALL_ACCESS, who: `Practitioner/${practitioner}` }]) {
      t.equal(await store.resolveCaller(access), access, `nothing to resolve: ${access.who ?? access.clientId ?? 'all access'}${access.subjectToConsent ? '' : ' (not subject to consent)'}`);
    }
  });
}
