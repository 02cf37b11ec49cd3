import t from 'tap';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';
import { q, searchClient } from './helpers/search-client.ts';
import { syntheaBundles } from './helpers/synthea.ts';

/**
 * Issue 16, item 3: the twenty Synthea bundles (ordinary US R4 data: US Core profiles claimed nowhere, no
 * French identifier) are accepted as transactions by a server with its default settings, French default
 * profiles included, and their Observations are found by the searches a viewer of vital signs and lab
 * results runs. Every expected match is worked out from the bundles' JSON.
 */

const LOINC = 'http://loinc.org';
const UCUM = 'http://unitsofmeasure.org';
const OBSERVATION_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
const SYSTOLIC = '8480-6';
const BODY_WEIGHT = '29463-7';

type Json = Record<string, any>;

interface Observation {
  /** `Observation/<server id>` */
  reference: string;
  /** `Patient/<server id>` of its subject */
  patient: string;
  resource: Json;
}

const codings = (concept: Json | undefined): Json[] => concept?.coding ?? [];
const hasCoding = (concept: Json | undefined, system: string, code: string) => codings(concept).some((c) => c.system === system && c.code === code);
/** Grams per unit, for the UCUM mass units the bundles hold. */
const GRAMS: Record<string, number> = { kg: 1000, g: 1, mg: 1e-3, ug: 1e-6, ng: 1e-9, pg: 1e-12 };

t.test('the twenty Synthea bundles, accepted with the default settings and their Observations searched', async (t) => {
  const server = await startTestServer(t, { frenchProfiles: true });
  const search = searchClient(server);
  const bundles = syntheaBundles();
  t.equal(bundles.length, 20, 'every Synthea bundle of the fixtures');

  const observations: Observation[] = [];
  for (const { name, bundle } of bundles) {
    const res = await server.inject({ method: 'POST', url: '/fhir', payload: JSON.stringify(bundle), headers: { 'content-type': FHIR_JSON } });
    t.equal(res.statusCode, 200, `${name}: the transaction succeeds`);
    if (res.statusCode !== 200) {
      t.comment(res.body.slice(0, 2000));
      continue;
    }
    const answer = json(res);
    t.equal(answer.entry.length, bundle.entry.length, `${name}: one answer per entry`);
    const statuses = answer.entry.map((e: Json) => e.response.status);
    t.same(
      statuses.filter((s: string) => !s.startsWith('201')),
      [],
      `${name}: every one of the ${bundle.entry.length} entries is created`,
    );
    // fullUrl (urn:uuid) → Type/id the server gave it, from each entry's Location (`<base>/Type/id/_history/1`)
    const assigned = new Map<string, string>();
    bundle.entry.forEach((entry, i) => assigned.set(entry.fullUrl, /([A-Za-z]+\/[^/]+)\/_history\/[^/]+$/.exec(answer.entry[i].response.location)![1]!));
    for (const entry of bundle.entry) {
      if (entry.resource.resourceType !== 'Observation') continue;
      observations.push({ reference: assigned.get(entry.fullUrl)!, patient: assigned.get(entry.resource.subject.reference)!, resource: entry.resource });
    }
  }
  t.equal(observations.length, 1987, 'the bundles hold 1,987 Observations (manifest.json of the corpus)');

  /** The `Observation/id`s a search finds, following its `next` links, sorted. */
  const found = async (query: string): Promise<string[]> => {
    const matches: string[] = [];
    let url: string | undefined = `/fhir/Observation?${query}&_count=500&_elements=id`;
    while (url) {
      const page = await search.get(url);
      if (page.status !== 200) throw new Error(`GET ${url}: ${page.status} ${JSON.stringify(page.body)}`);
      matches.push(...page.matches);
      url = page.link('next');
    }
    return matches.sort();
  };
  const expected = (keep: (o: Observation) => boolean) => observations.filter(keep).map((o) => o.reference).sort();
  const check = async (query: string, keep: (o: Observation) => boolean, what: string) => {
    const want = expected(keep);
    t.ok(want.length > 0, `${what}: the bundles hold some (${want.length})`);
    t.ok(want.length < observations.length, `${what}: but not all`);
    t.same(await found(query), want, `${query} finds ${what}`);
  };

  // The patient with the most Observations, one of its codes, and the instant of the median one.
  const byPatient = new Map<string, Observation[]>();
  for (const o of observations) byPatient.set(o.patient, [...(byPatient.get(o.patient) ?? []), o]);
  const [patient, ofPatient] = [...byPatient].sort((a, b) => b[1].length - a[1].length)[0]!;
  await check(q('patient', patient), (o) => o.patient === patient, `the ${ofPatient.length} Observations of ${patient}`);
  await check(q('subject', patient), (o) => o.patient === patient, `the Observations of ${patient}, by subject`);

  await check(q('code', `${LOINC}|${BODY_WEIGHT}`), (o) => hasCoding(o.resource.code, LOINC, BODY_WEIGHT), 'body weights');

  await check(q('category', `${OBSERVATION_CATEGORY}|vital-signs`), (o) => o.resource.category?.some((c: Json) => hasCoding(c, OBSERVATION_CATEGORY, 'vital-signs')), 'vital signs');
  await check(q('category', `${OBSERVATION_CATEGORY}|laboratory`), (o) => o.resource.category?.some((c: Json) => hasCoding(c, OBSERVATION_CATEGORY, 'laboratory')), 'laboratory results');

  // Synthea writes effectiveDateTime to the second, with an offset: such a value is the second it names.
  const instants = observations.map((o) => Date.parse(o.resource.effectiveDateTime)).sort((a, b) => a - b);
  const since = new Date(instants[Math.floor(instants.length / 2)]!).toISOString().replace('.000Z', 'Z');
  await check(q('date', `ge${since}`), (o) => Date.parse(o.resource.effectiveDateTime) >= Date.parse(since), `Observations from ${since} on`);
  await check(q('date', `lt${since}`), (o) => Date.parse(o.resource.effectiveDateTime) < Date.parse(since), `Observations before ${since}`);

  // The median body weight, rounded to a whole kilogram that no weight is.
  const weights = observations.filter((o) => hasCoding(o.resource.code, LOINC, BODY_WEIGHT)).map((o) => o.resource.valueQuantity.value as number).sort((a, b) => a - b);
  const weight = Math.round(weights[Math.floor(weights.length / 2)]!);
  t.notOk(weights.includes(weight), `no weight is exactly ${weight} kg`);
  const grams = (o: Observation) => {
    const v = o.resource.valueQuantity;
    return v?.system === UCUM && GRAMS[v.code] !== undefined ? v.value * GRAMS[v.code]! : undefined;
  };
  await check(q('value-quantity', `gt${weight}|${UCUM}|kg`), (o) => (grams(o) ?? -Infinity) > weight * 1000, `masses over ${weight} kg`);
  await check(q('value-quantity', `le${weight / 1000}|${UCUM}|t`), (o) => (grams(o) ?? Infinity) <= weight * 1000, `masses up to ${weight / 1000} t (compared in base units)`);

  // Synthea's blood pressure panels (LOINC 55284-4 here; 85354-6 in later Synthea) carry systolic and diastolic as components.
  const systolic = (o: Observation) => o.resource.component?.find((c: Json) => hasCoding(c.code, LOINC, SYSTOLIC))?.valueQuantity;
  const pressures = observations.map(systolic).filter(Boolean).map((v: Json) => v.value as number).sort((a, b) => a - b);
  const pressure = Math.round(pressures[Math.floor(pressures.length / 2)]!);
  t.notOk(pressures.includes(pressure), `no systolic pressure is exactly ${pressure}`);
  await check(q('component-code-value-quantity', `${LOINC}|${SYSTOLIC}$gt${pressure}`), (o) => (systolic(o)?.value ?? -Infinity) > pressure, `panels with a systolic over ${pressure}`);
  await check(
    q('component-code-value-quantity', `${LOINC}|${SYSTOLIC}$le${pressure}|${UCUM}|mm[Hg]`),
    (o) => (systolic(o)?.value ?? Infinity) <= pressure,
    `panels with a systolic up to ${pressure} mm[Hg]`,
  );

  // What a chart of one patient's weight since a date asks for.
  const weightsOfPatient = ofPatient.filter((o) => hasCoding(o.resource.code, LOINC, BODY_WEIGHT)).map((o) => Date.parse(o.resource.effectiveDateTime)).sort((a, b) => a - b);
  const from = new Date(weightsOfPatient[Math.floor(weightsOfPatient.length / 2)]!).toISOString().replace('.000Z', 'Z');
  await check(
    `${q('patient', patient)}&${q('code', `${LOINC}|${BODY_WEIGHT}`)}&${q('date', `ge${from}`)}`,
    (o) => o.patient === patient && hasCoding(o.resource.code, LOINC, BODY_WEIGHT) && Date.parse(o.resource.effectiveDateTime) >= Date.parse(from),
    `the weights of ${patient} from ${from} on`,
  );
});
