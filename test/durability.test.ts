/**
 * Crash durability of transaction bundles: a server process is SIGKILLed while several senders stream
 * bundles at it, then restarted on the same store. Every acknowledged bundle must be there whole (patient,
 * every clinical resource, searchable); every unacknowledged one must be there whole or not at all.
 *
 * On the PostgreSQL run the server's tables live in a database created for this test; on the PGlite run
 * in a PGlite data directory in a temp dir (PGlite must recover after SIGKILL as PostgreSQL does).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import t from 'tap';
import { openDatabase } from '../src/store/open-database.ts';
import { openingDatabase } from '../src/store/encryption.ts';
import { testDataKeys } from './helpers/app.ts';
import { clinicalCounts, CLINICAL_TYPES, frenchTransaction, INS_SYSTEM, MARKER_SYSTEM, patientNir } from './helpers/french-bundles.ts';
import { createScratchStore, getJson, postJson, startServerProcess, type ServerProcess } from './helpers/server-process.ts';

// Two server starts (seconds of validator building each, more on a busy machine) and a stream of bundles.

const SENDERS = 4;
const CLINICAL = 7; // per bundle: 3 immunizations, 1 allergy, 2 medication statements, 1 document
const MAX_BUNDLES = 400;
/** Kill once this many bundles have been acknowledged (or when STREAM_MS has passed with at least one). */
const KILL_AFTER_ACKS = 12;
const STREAM_MS = 120_000;
const RUN = randomBytes(3).toString('hex');
/** Patient numbers far from other suites' (each bundle is a new patient). */
const FIRST_PATIENT = 700_000 + Math.floor(Math.random() * 100_000);

type Fate = 'acknowledged' | 'in-flight' | 'rejected';
interface Sent {
  index: number;
  marker: string;
  fate: Fate;
  status?: number;
  /** Locations the transaction-response gave, for acknowledged bundles. */
  locations?: string[];
}

const bundleFor = (index: number, marker: string) => frenchTransaction(FIRST_PATIENT + index, { clinical: CLINICAL, pdfBytes: 3000, marker });

t.test(`SIGKILL during a stream of transaction bundles (${SENDERS} senders) on ${process.env.DATABASE_URL?.startsWith('postgres') ? 'PostgreSQL' : 'PGlite'}: acknowledged bundles whole, others all-or-nothing`, async (t) => {
  const store = await createScratchStore('durability');
  t.teardown(() => store.drop());
  let server: ServerProcess = await startServerProcess(store.url);
  t.teardown(() => server.stop());

  // --- the stream, and the kill ---------------------------------------------------------------------
  const sent: Sent[] = [];
  let next = 0;
  let acknowledged = 0;
  let killed = false;
  let inFlightAtKill = 0;
  let inFlight = 0;
  // On PostgreSQL, a connection of our own to see the server's transactions at the moment of the kill.
  const observer = store.kind === 'postgres' ? new pg.Client({ connectionString: store.url }) : undefined;
  observer?.on('error', () => {}); // dropped with the database at the end
  await observer?.connect();
  let openAtKill: string | undefined;
  let killing = false;
  const kill = async () => {
    if (killing) return;
    killing = true; // senders keep streaming until the signal itself
    const activity = await observer
      ?.query<{ state: string; n: number }>(
        `SELECT state, count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY state`,
      )
      .catch(() => undefined);
    openAtKill = activity?.rows.map((r) => `${r.n} ${r.state}`).join(', ');
    killed = true;
    inFlightAtKill = inFlight;
    server.child.kill('SIGKILL');
  };
  const deadline = setTimeout(() => {
    if (acknowledged > 0) void kill();
  }, STREAM_MS);
  const sender = async () => {
    while (!killed && next < MAX_BUNDLES) {
      const index = next++;
      const record: Sent = { index, marker: `dur-${RUN}-${index}`, fate: 'in-flight' };
      sent.push(record);
      inFlight++;
      try {
        const answer = await postJson(`${server.base}/fhir`, bundleFor(index, record.marker));
        record.status = answer.status;
        if (answer.status === 200 && answer.body?.type === 'transaction-response') {
          record.fate = 'acknowledged';
          record.locations = answer.body.entry.map((e: any) => e.response.location);
          acknowledged++;
          // Kill a few milliseconds after an acknowledgement, so that commits are under way on other connections.
          if (acknowledged === KILL_AFTER_ACKS) setTimeout(() => void kill(), Math.floor(Math.random() * 15));
        } else {
          record.fate = 'rejected';
        }
      } catch {
        // The connection died with the server: never acknowledged.
      } finally {
        inFlight--;
      }
    }
  };
  await Promise.all(Array.from({ length: SENDERS }, sender));
  clearTimeout(deadline);
  if (!killing) await kill();
  const exit = await server.exited;
  await observer?.end();
  t.equal(exit.signal, 'SIGKILL', 'the server died by SIGKILL');

  const acked = sent.filter((s) => s.fate === 'acknowledged');
  const rejected = sent.filter((s) => s.fate === 'rejected');
  const unacknowledged = sent.filter((s) => s.fate === 'in-flight');
  t.comment(`sent ${sent.length} bundles: ${acked.length} acknowledged, ${unacknowledged.length} unanswered, ${rejected.length} rejected; ${inFlightAtKill} in flight at the kill` + (openAtKill === undefined ? '' : `; the server's connections just before it: ${openAtKill}`));
  t.same(rejected.map((r) => r.status), [], 'no bundle was rejected before the kill');
  t.ok(acked.length >= 1, 'some bundles were acknowledged before the kill');
  t.ok(inFlightAtKill >= 1, 'the kill hit while bundles were in flight');

  // --- restart on the same store -----------------------------------------------------------------------
  server = await startServerProcess(store.url);
  const fhir = `${server.base}/fhir`;
  const expected = clinicalCounts(CLINICAL);
  const total = async (query: string) => {
    const answer = await getJson(`${fhir}/${query}${query.includes('?') ? '&' : '?'}_summary=count`);
    if (answer.status !== 200) throw new Error(`GET ${query}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body.total as number;
  };
  /** How many of each type bundle `s` left behind, seen through search (the index written with the rows). */
  const presence = async (s: Sent) => {
    const counts: Record<string, number> = { Patient: await total(`Patient?identifier=${INS_SYSTEM}|${patientNir(FIRST_PATIENT + s.index)}`) };
    for (const type of CLINICAL_TYPES) counts[type] = await total(`${type}?identifier=${MARKER_SYSTEM}|${s.marker}`);
    return counts;
  };
  const whole = { Patient: 1, ...expected };
  const none = { Patient: 0, ...Object.fromEntries(CLINICAL_TYPES.map((type) => [type, 0])) };

  for (const s of acked) {
    t.same(await presence(s), whole, `acknowledged bundle ${s.index} is whole after the restart`);
    const reads = await Promise.all(s.locations!.map((location) => getJson(`${fhir}/${location.replace(/^.*\/fhir\//, '').replace(/\/_history\/\d+$/, '')}`)));
    t.same(reads.map((r) => r.status), s.locations!.map(() => 200), `every location bundle ${s.index} answered reads back`);
  }
  let landed = 0;
  for (const s of unacknowledged) {
    const counts = await presence(s);
    const isWhole = JSON.stringify(counts) === JSON.stringify(whole);
    const isNone = JSON.stringify(counts) === JSON.stringify(none);
    if (isWhole) landed++;
    t.ok(isWhole || isNone, `unacknowledged bundle ${s.index} is all or nothing: ${JSON.stringify(counts)}`);
  }
  t.comment(`${landed} of ${unacknowledged.length} unacknowledged bundles had committed before the kill`);

  // Sending the unacknowledged bundles again (what a sender does) completes them without duplicating patients.
  for (const s of unacknowledged) {
    const again = await postJson(fhir, bundleFor(s.index, `${s.marker}-retry`));
    t.equal(again.status, 200, `bundle ${s.index} sent again after the restart is accepted`);
    t.equal(await total(`Patient?identifier=${INS_SYSTEM}|${patientNir(FIRST_PATIENT + s.index)}`), 1, `still one patient for bundle ${s.index}'s INS`);
  }

  // --- the rows themselves, read straight from the store once the server has stopped cleanly ----------
  await server.stop();
  // Content is sealed (encryption at rest): read it opened with the server's master key, then look for the markers.
  const db = openingDatabase(await openDatabase(store.url), testDataKeys());
  try {
    const contents = async (table: string) => (await db.query<{ content: string }>(`SELECT content FROM ${table} WHERE content IS NOT NULL`)).rows.map((row) => row.content);
    const current = await contents('resource');
    const history = await contents('resource_history');
    const holding = (texts: string[], marker: string) => texts.filter((text) => text.includes(`"${marker}"`)).length;
    const byMarker = new Map(sent.map((s) => [s.marker, { resources: holding(current, s.marker), versions: holding(history, s.marker) }]));
    for (const s of sent) {
      const row = byMarker.get(s.marker)!;
      if (s.fate === 'acknowledged') t.same([row.resources, row.versions], [CLINICAL, CLINICAL], `bundle ${s.index}: ${CLINICAL} current rows and ${CLINICAL} history rows`);
      else t.ok([0, CLINICAL].includes(row.resources) && row.resources === row.versions, `bundle ${s.index}: rows all or nothing (${row.resources} current, ${row.versions} history)`);
    }
    const orphans = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM search_token s WHERE NOT EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = s.resource_type AND r.id = s.resource_id)`,
    );
    t.equal(orphans.rows[0]?.n, 0, 'no search index row without its resource');
  } finally {
    await db.close();
  }
});
