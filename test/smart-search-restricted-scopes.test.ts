// SMART App Launch 2.0 search-restricted scopes (scopes-and-launch-context.html, "Finer-grained resource
// constraints using search parameters"): `patient/Observation.rs?category=laboratory` grants only the
// patient's laboratory observations, for reads, searches, totals and includes alike (inside the store's
// SQL); `.c?category=…` lets a client create only resources that match; several scopes on a type add up.
import t from 'tap';
import { FHIR_JSON, startTestServer } from './helpers/app.ts';

const server = await startTestServer(t);
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

async function put(resource: Record<string, unknown>) {
  const res = await server.inject({ method: 'PUT', url: `/fhir/${resource.resourceType}/${resource.id}`, headers: { 'content-type': FHIR_JSON }, payload: resource });
  if (res.statusCode >= 300) throw new Error(`PUT ${resource.resourceType}/${resource.id}: ${res.statusCode} ${res.body}`);
}

const observation = (id: string, patient: string, category: string | undefined, more: Record<string, unknown> = {}) => ({
  resourceType: 'Observation',
  id,
  status: 'final',
  ...(category ? { category: [{ coding: [{ system: CATEGORY, code: category }] }] } : {}),
  code: { coding: [{ system: 'http://loinc.org', code: '2345-7' }] },
  subject: { reference: `Patient/${patient}` },
  ...more,
});

await put({ resourceType: 'Patient', id: 'rs-pa', name: [{ family: 'Alpha' }] });
await put({ resourceType: 'Patient', id: 'rs-pb', name: [{ family: 'Beta' }] });
await put(observation('rs-lab-a', 'rs-pa', 'laboratory'));
await put(observation('rs-vital-a', 'rs-pa', 'vital-signs'));
await put(observation('rs-social-a', 'rs-pa', 'social-history'));
await put(observation('rs-none-a', 'rs-pa', undefined));
await put(observation('rs-lab-b', 'rs-pb', 'laboratory'));
await put({ resourceType: 'DiagnosticReport', id: 'rs-report-a', status: 'final', code: { text: 'bilan' }, subject: { reference: 'Patient/rs-pa' }, result: [{ reference: 'Observation/rs-lab-a' }, { reference: 'Observation/rs-vital-a' }] });

const bearer = async (scope: string, patient?: string) => `Bearer ${await server.token({ scope, ...(patient ? { patient } : {}) })}`;
const tokens = {
  labA: await bearer(`patient/Observation.rs?category=${encodeURIComponent(`${CATEGORY}|laboratory`)} patient/DiagnosticReport.rs`, 'Patient/rs-pa'),
  labOrVitalA: await bearer('patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs', 'Patient/rs-pa'),
  labAndRestrictedA: await bearer('patient/Observation.rs?category=laboratory patient/Observation.rs', 'Patient/rs-pa'),
  userLab: await bearer('user/Observation.rs?category=laboratory'),
  // Patient.r: the observation's subject must be a resource the writer sees (referential integrity).
  labWriterA: await bearer('patient/Observation.crus?category=laboratory patient/Patient.r', 'Patient/rs-pa'),
  unusable: await bearer(
    'patient/Observation.rs?date=ge2020 patient/Observation.rs?unknown-param=1 patient/Observation.rs?_count=5 patient/*.rs?_tag=x patient/Observation.read?category=laboratory',
    'Patient/rs-pa',
  ),
};
type Who = keyof typeof tokens;

const get = (who: Who, url: string) => server.inject({ method: 'GET', url, headers: { authorization: tokens[who] } });
const ids = (bundle: any) => (bundle.entry ?? []).map((e: any) => `${e.resource.resourceType}/${e.resource.id}`).sort();

t.test('read: a resource matching the restriction is 200, one that does not is 404 (as if it did not exist)', async (t) => {
  const cases: Array<[Who, string, number]> = [
    ['labA', '/fhir/Observation/rs-lab-a', 200],
    ['labA', '/fhir/Observation/rs-vital-a', 404],
    ['labA', '/fhir/Observation/rs-none-a', 404],
    ['labA', '/fhir/Observation/rs-vital-a/_history/1', 404],
    ['labA', '/fhir/Observation/rs-lab-b', 404], // laboratory, but another patient's
    ['labOrVitalA', '/fhir/Observation/rs-vital-a', 200],
    ['labOrVitalA', '/fhir/Observation/rs-social-a', 404],
    ['labAndRestrictedA', '/fhir/Observation/rs-social-a', 200], // an unrestricted scope on the type adds everything
    ['userLab', '/fhir/Observation/rs-lab-b', 200],
    ['userLab', '/fhir/Observation/rs-vital-a', 404],
    ['unusable', '/fhir/Observation/rs-lab-a', 404],
  ];
  for (const [who, url, expected] of cases) {
    const res = await get(who, url);
    t.equal(res.statusCode, expected, `${who} GET ${url}`);
    if (expected === 404) t.equal(res.json().resourceType, 'OperationOutcome', `${who} GET ${url}: an OperationOutcome`);
  }
});

t.test('search, _total and _include: only the matching resources', async (t) => {
  const search = await get('labA', '/fhir/Observation?_total=accurate');
  t.equal(search.statusCode, 200);
  t.same(ids(search.json()), ['Observation/rs-lab-a'], 'only the laboratory observation of the patient');
  t.equal(search.json().total, 1, '_total counts what the scope shows');

  const either = await get('labOrVitalA', '/fhir/Observation?subject=Patient/rs-pa&_total=accurate');
  t.same(ids(either.json()), ['Observation/rs-lab-a', 'Observation/rs-vital-a'], 'two restricted scopes on one type add up');
  t.equal(either.json().total, 2);

  const included = await get('labA', '/fhir/DiagnosticReport?_id=rs-report-a&_include=DiagnosticReport:result');
  t.same(ids(included.json()), ['DiagnosticReport/rs-report-a', 'Observation/rs-lab-a'], '_include brings only the matching result');

  const byCategory = await get('labA', '/fhir/Observation?category=vital-signs&_total=accurate');
  t.equal(byCategory.json().total, 0, 'a search for what the scope leaves out finds nothing');

  const user = await get('userLab', '/fhir/Observation?_total=accurate');
  t.same(ids(user.json()), ['Observation/rs-lab-a', 'Observation/rs-lab-b'], 'a user/ restricted scope: every patient, laboratory only');

  const unusable = await get('unusable', '/fhir/Observation?_total=accurate');
  t.equal(unusable.statusCode, 200);
  t.equal(unusable.json().total, 0, 'a restriction the server cannot apply (a date, an unknown parameter, _count, on *, on a v1 scope) grants nothing');
});

t.test('create and update: a resource that matches is written, one that does not is 403 and not written', async (t) => {
  const write = (method: 'POST' | 'PUT', url: string, payload: unknown) =>
    server.inject({ method, url, headers: { authorization: tokens.labWriterA, 'content-type': FHIR_JSON }, payload: payload as object });

  const created = await write('POST', '/fhir/Observation', observation('ignored', 'rs-pa', 'laboratory'));
  t.equal(created.statusCode, 201, 'a laboratory observation of the patient is created');

  const refused = await write('POST', '/fhir/Observation', { ...observation('ignored', 'rs-pa', 'vital-signs'), identifier: [{ system: 'urn:rs-test', value: 'refused-vital' }] });
  t.equal(refused.statusCode, 403, 'a vital-signs observation is refused');
  t.equal(refused.json().resourceType, 'OperationOutcome');
  t.match(refused.json().issue[0].diagnostics, /category=laboratory/, 'the outcome names the restriction');
  const none = await server.inject({ method: 'GET', url: '/fhir/Observation?identifier=urn:rs-test|refused-vital&_total=accurate' });
  t.equal(none.json().total, 0, 'nothing was written');

  const uncategorised = await write('POST', '/fhir/Observation', observation('ignored', 'rs-pa', undefined));
  t.equal(uncategorised.statusCode, 403, 'an observation without a category is refused');

  const otherPatient = await write('POST', '/fhir/Observation', observation('ignored', 'rs-pb', 'laboratory'));
  t.equal(otherPatient.statusCode, 403, "a laboratory observation of another patient is refused (the patient/ scope's compartment)");

  const recategorised = await write('PUT', '/fhir/Observation/rs-lab-a', observation('rs-lab-a', 'rs-pa', 'vital-signs'));
  t.equal(recategorised.statusCode, 403, 'an update that takes the observation out of the restriction is refused');
  const still = await get('labA', '/fhir/Observation/rs-lab-a');
  t.equal(still.json().category[0].coding[0].code, 'laboratory', 'the observation is unchanged');

  const updated = await write('PUT', '/fhir/Observation/rs-lab-a', observation('rs-lab-a', 'rs-pa', 'laboratory', { status: 'amended' }));
  t.equal(updated.statusCode, 200, 'an update that keeps it in the restriction is written');
});
