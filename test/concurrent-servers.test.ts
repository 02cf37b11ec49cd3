/**
 * Conditional creates and conditional updates racing across server processes. On the PostgreSQL run two
 * server processes share one (fresh) database, and the same requests go to both at once: the advisory lock
 * on the condition must make them queue, so each INS gets exactly one patient and its versions stay
 * contiguous. On the PGlite run two processes cannot share one data directory, so the same assertions run
 * against one server process with the same parallel requests (the test names say which).
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { onPostgres } from './helpers/app.ts';
import { clinicalCounts, CLINICAL_TYPES, frenchTransaction, INS_SYSTEM, MARKER_SYSTEM, patientNir } from './helpers/french-bundles.ts';
import { createScratchStore, getJson, postJson, startServerProcess, type ServerProcess } from './helpers/server-process.ts';
import { insPatient } from './helpers/validation-fixtures.ts';


const WHERE = onPostgres
  ? 'two server processes sharing one PostgreSQL'
  : 'one server process on PGlite (two processes cannot share a PGlite data directory), parallel requests';
const PATIENTS = 5;
const SENDS_PER_PATIENT = 10;
const CLINICAL = 4;
const UPDATES = 16;
const FIRST_PATIENT = 800_000 + Math.floor(Math.random() * 100_000);
const RUN = randomBytes(3).toString('hex');

const store = await createScratchStore('concurrent');
t.teardown(() => store.drop());
// Started together: on PostgreSQL both migrate the fresh database at once (they take turns under a lock).
const servers: ServerProcess[] = await Promise.all((onPostgres ? [0, 1] : [0]).map(() => startServerProcess(store.url)));
t.teardown(() => Promise.all(servers.map((server) => server.stop())));
const serverFor = (n: number) => servers[n % servers.length]!;
const search = async (n: number, query: string) => {
  const answer = await getJson(`${serverFor(n).base}/fhir/${query}`);
  if (answer.status !== 200) throw new Error(`GET ${query}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
};
const idOf = (location: string) => location.replace(/\/_history\/\d+$/, '').split('/').pop()!;

t.test(`${WHERE}: the same transaction bundle with a conditional create, sent ${SENDS_PER_PATIENT}× per INS in parallel with its criteria written two ways, yields one patient per INS`, async (t) => {
  const sends = Array.from({ length: PATIENTS * SENDS_PER_PATIENT }, (_, n) => {
    const patient = n % PATIENTS;
    const marker = `cs-${RUN}-${patient}`;
    const bundle = frenchTransaction(FIRST_PATIENT + patient, { clinical: CLINICAL, marker });
    // Every other sender writes the same criteria another way (the type in front, `|` encoded, the parameter twice).
    const identifier = `${INS_SYSTEM}|${patientNir(FIRST_PATIENT + patient)}`;
    if (n % 2 === 1) bundle.entry[0].request.ifNoneExist = `Patient?identifier=${encodeURIComponent(identifier)}&identifier=${identifier}`;
    return postJson(`${serverFor(n).base}/fhir`, bundle).then((answer) => ({ patient, answer }));
  });
  const results = await Promise.all(sends);
  t.same(results.filter((r) => r.answer.status !== 200).map((r) => [r.answer.status, r.answer.body]), [], 'every bundle is accepted');
  const expected = clinicalCounts(CLINICAL);
  for (let patient = 0; patient < PATIENTS; patient++) {
    const mine = results.filter((r) => r.patient === patient);
    const patientEntries = mine.map((r) => r.answer.body.entry[0].response);
    t.same(
      patientEntries.map((e: any) => e.status).sort(),
      [...Array(SENDS_PER_PATIENT - 1).fill('200 OK'), '201 Created'],
      `INS ${patient}: created once, found by the ${SENDS_PER_PATIENT - 1} others`,
    );
    const ids = new Set(patientEntries.map((e: any) => idOf(e.location)));
    t.equal(ids.size, 1, `INS ${patient}: every bundle's patient entry names the same patient`);
    const [id] = ids;
    for (const n of servers.keys()) {
      const found = await search(n, `Patient?identifier=${INS_SYSTEM}|${patientNir(FIRST_PATIENT + patient)}`);
      t.equal(found.total, 1, `INS ${patient}: one patient, seen from server ${n}`);
      t.equal(found.entry?.[0]?.resource.id, id, `INS ${patient}: the patient found is the one the bundles named`);
    }
    for (const type of CLINICAL_TYPES) {
      const found = await search(patient, `${type}?identifier=${MARKER_SYSTEM}|cs-${RUN}-${patient}&_count=100`);
      t.equal(found.total, expected[type] * SENDS_PER_PATIENT, `INS ${patient}: every bundle's ${type} entries were stored`);
      const subjects = new Set(found.entry.map((e: any) => (e.resource.patient ?? e.resource.subject).reference));
      t.same([...subjects], [`Patient/${id}`], `INS ${patient}: all ${type} entries point at that one patient`);
    }
  }
});

t.test(`${WHERE}: concurrent conditional updates (PUT Patient?identifier=…) yield one patient with contiguous versions`, async (t) => {
  const ins = patientNir(FIRST_PATIENT + PATIENTS + 1);
  const condition = `identifier=${encodeURIComponent(`${INS_SYSTEM}|${ins}`)}`;
  const body = (n: number) => {
    const patient = insPatient();
    patient.identifier[0].value = ins;
    patient.telecom = [{ system: 'phone', value: `+33 6 00 00 00 ${String(n).padStart(2, '0')}`, use: 'mobile' }];
    return patient;
  };
  const round = async (from: number) =>
    Promise.all(Array.from({ length: UPDATES }, (_, k) => postJson(`${serverFor(k).base}/fhir/Patient?${condition}`, body(from + k), { method: 'PUT' })));

  // First round: nobody has this INS yet, so exactly one PUT creates it and the rest update it.
  const first = await round(0);
  t.same(first.filter((a) => a.status !== 200 && a.status !== 201).map((a) => [a.status, a.body]), [], 'every PUT succeeds');
  t.equal(first.filter((a) => a.status === 201).length, 1, 'exactly one PUT created the patient');
  // Second round on the existing patient, from both servers again.
  const second = await round(UPDATES);
  t.same(second.map((a) => a.status), Array(UPDATES).fill(200), 'every PUT of the second round updates');

  const ids = new Set([...first, ...second].map((a) => a.body.id));
  t.equal(ids.size, 1, 'every PUT answered with the same patient');
  const [id] = ids;
  const versions = [...first, ...second].map((a) => Number(a.body.meta.versionId)).sort((a, b) => a - b);
  t.same(versions, Array.from({ length: 2 * UPDATES }, (_, k) => k + 1), 'the answers carry versions 1…n, each once');
  for (const n of servers.keys()) {
    const found = await search(n, `Patient?identifier=${INS_SYSTEM}|${ins}`);
    t.equal(found.total, 1, `one patient for the INS, seen from server ${n}`);
  }
  const history = await search(0, `Patient/${id}/_history?_count=100`);
  const historyVersions = history.entry.map((e: any) => Number(e.resource.meta.versionId)).sort((a: number, b: number) => a - b);
  t.same(historyVersions, Array.from({ length: 2 * UPDATES }, (_, k) => k + 1), 'the history holds versions 1…n, no gap, no duplicate');
  const current = await getJson(`${serverFor(1).base}/fhir/Patient/${id}`);
  t.equal(current.body.meta.versionId, String(2 * UPDATES), 'the current version is the last one');
  const last = [...first, ...second].find((a) => a.body.meta.versionId === String(2 * UPDATES))!;
  t.same(current.body.telecom, last.body.telecom, 'and it holds the content of the PUT that wrote it');
});

t.test(`${WHERE}: 50 conditional creates whose criteria are written differently but select the same patient yield one patient`, async (t) => {
  const ins = patientNir(FIRST_PATIENT + PATIENTS + 2);
  const identifier = `${INS_SYSTEM}|${ins}`;
  // Each the same search: parameters in another order, `|` percent-encoded, the type in front, a value
  // repeated, a family name in other case, accents or spacing (string search ignores all three).
  const criteria = [
    `identifier=${identifier}&family=Martin`,
    `family=Martin&identifier=${identifier}`,
    `identifier=${encodeURIComponent(identifier)}&family=Martin`,
    `Patient?identifier=${identifier}&family=martin`,
    `identifier=${identifier}&family=MARTIN&family=Martin`,
    `identifier=${identifier},${encodeURIComponent(identifier)}&family=Martin`,
    `family=Mart%C3%AFn&identifier=${identifier}`,
    `identifier=${identifier}&family=Martin%20%20`,
    `family=%20Martin&identifier=${encodeURIComponent(identifier)}`,
    `identifier=${identifier}&family=martin&_count=5`,
  ];
  const body = () => {
    const patient = insPatient();
    patient.identifier[0].value = ins;
    return patient;
  };
  const answers = await Promise.all(
    Array.from({ length: 50 }, (_, k) => postJson(`${serverFor(k).base}/fhir/Patient`, body(), { headers: { 'if-none-exist': criteria[k % criteria.length]! } })),
  );
  t.same(answers.filter((a) => a.status !== 200 && a.status !== 201).map((a) => [a.status, a.body]), [], 'every create is answered 200 or 201');
  t.equal(answers.filter((a) => a.status === 201).length, 1, 'exactly one created the patient');
  t.equal(new Set(answers.map((a) => a.body.id)).size, 1, 'the 49 others name that patient');
  for (const n of servers.keys()) {
    const found = await search(n, `Patient?identifier=${identifier}`);
    t.equal(found.total, 1, `one patient for the INS, seen from server ${n}`);
  }
});

t.test(`${WHERE}: 50 PATCHes without If-Match of one patient all apply, each to the latest version; with a stale If-Match, 412`, async (t) => {
  const patient = insPatient();
  patient.identifier[0].value = patientNir(FIRST_PATIENT + PATIENTS + 3);
  patient.telecom = [{ system: 'phone', value: '+33 6 00 00 00 00', use: 'mobile' }];
  const created = await postJson(`${serverFor(0).base}/fhir/Patient`, patient);
  t.equal(created.status, 201);
  const url = (n: number) => `${serverFor(n).base}/fhir/Patient/${created.body.id}`;
  const jsonPatch = { 'content-type': 'application/json-patch+json' };
  const phone = (k: number) => `+33 1 00 00 00 ${String(k).padStart(2, '0')}`;
  const patches = await Promise.all(
    Array.from({ length: 50 }, (_, k) =>
      postJson(url(k), [{ op: 'add', path: '/telecom/-', value: { system: 'phone', value: phone(k), use: 'home' } }], { method: 'PATCH', headers: jsonPatch }),
    ),
  );
  t.same(patches.filter((a) => a.status !== 200).map((a) => [a.status, a.body]), [], 'every PATCH without If-Match is applied (200)');
  t.same(
    patches.map((a) => Number(a.body.meta.versionId)).sort((a, b) => a - b),
    Array.from({ length: 50 }, (_, k) => k + 2),
    'the answers carry versions 2…51, each once',
  );
  const current = await getJson(url(1));
  t.equal(current.body.meta.versionId, '51');
  t.same(
    current.body.telecom.map((c: any) => c.value).sort(),
    ['+33 6 00 00 00 00', ...Array.from({ length: 50 }, (_, k) => phone(k))].sort(),
    'no PATCH was lost: the current version holds every number added',
  );

  const guarded = await Promise.all(
    Array.from({ length: 10 }, (_, k) =>
      postJson(url(k), [{ op: 'replace', path: '/telecom/0/value', value: phone(60 + k) }], { method: 'PATCH', headers: { ...jsonPatch, 'if-match': 'W/"51"' } }),
    ),
  );
  t.same(guarded.map((a) => a.status).sort(), [200, ...Array(9).fill(412)], 'with If-Match W/"51" one PATCH applies and the 9 others are refused');
  t.same(
    guarded.filter((a) => a.status === 412).map((a) => a.body.issue[0].code),
    Array(9).fill('conflict'),
    'the refusals are OperationOutcomes',
  );
});
