import { readdirSync, readFileSync } from 'node:fs';
import type { Resource } from 'fhir/r4';
import t from 'tap';
import { isServedResourceType } from '../src/fhir/resource-types.ts';
import { extractIndexRows } from '../src/search/extract.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';
import * as fr from './helpers/validation-fixtures.ts';

// Index extraction walks plain paths itself; it must find exactly what fhirpath.js finds.
const definitions = loadSearchParameters();
const fast = new SearchParameterRegistry(definitions);
const reference = new SearchParameterRegistry(definitions, undefined, false);

function corpus(): Resource[] {
  const resources: Resource[] = [];
  const synthea = new URL('./fixtures/synthea/', import.meta.url);
  for (const file of readdirSync(synthea).filter((f) => f.endsWith('.json'))) {
    const bundle = JSON.parse(readFileSync(new URL(file, synthea), 'utf8'));
    for (const entry of bundle.entry ?? []) resources.push(entry.resource);
  }
  const examples = new URL('./fixtures/r4-examples/', import.meta.url);
  for (const file of readdirSync(examples, { recursive: true }) as string[]) {
    if (!file.endsWith('.json') || file === 'manifest.json') continue;
    const resource = JSON.parse(readFileSync(new URL(file, examples), 'utf8'));
    resources.push(...(resource.resourceType === 'Bundle' ? (resource.entry ?? []).map((e: { resource: Resource }) => e.resource) : [resource]));
  }
  resources.push(fr.insPatient(), fr.pdsmDocument(), fr.immunization(), fr.allergy(), fr.medicationStatement(), fr.consent(), fr.practitioner(), fr.organization());
  return resources.filter((r) => r && isServedResourceType(r.resourceType));
}

t.test('the direct path walk indexes every corpus resource exactly as fhirpath.js does', async (t) => {
  const resources = corpus();
  t.equal(resources.length, 547, 'every resource of the fixtures (every R4 type is served)');
  let differing = 0;
  for (const resource of resources) {
    const got = extractIndexRows(resource, fast);
    const expected = extractIndexRows(resource, reference);
    if (JSON.stringify(got) !== JSON.stringify(expected)) {
      differing++;
      if (differing <= 3) t.same(got, expected, `${resource.resourceType}/${resource.id}`);
    }
  }
  t.equal(differing, 0, 'no resource indexed differently');
});

t.test('most parameters of the served types take the direct walk', async (t) => {
  // Only a sanity bound: the point of the walk is that it covers the common case.
  const params = ['Patient', 'Immunization', 'DocumentReference'].flatMap((type) => fast.forType(type));
  const direct = params.filter((p) => p.expression && !/[()]/.test(p.expression));
  t.ok(direct.length > params.length / 2, `${direct.length} of ${params.length} are plain paths`);
});

t.test('a date parameter taken for one row per resource never gives a corpus resource two', async (t) => {
  const single = (type: string) => new Set(fast.forType(type).filter((p) => p.singleRow).map((p) => p.code));
  t.same([...single('Patient')].sort(), ['birthdate', 'death-date']);
  t.same([...single('Immunization')].sort(), ['date'], 'not reaction-date: an immunization has many reactions');
  t.notOk(fast.get('AllergyIntolerance', 'onset')?.singleRow, "onset is each reaction's, not the allergy's own onset");
  t.ok(fast.get('MedicationStatement', 'effective')?.singleRow);
  let checked = 0;
  for (const resource of corpus()) {
    const rows = extractIndexRows(resource, fast).date;
    for (const code of single(resource.resourceType)) {
      const count = rows.filter((row) => row.param === code).length;
      if (count > 0) checked++;
      if (count > 1) t.fail(`${resource.resourceType}/${resource.id} has ${count} ${code} rows`);
    }
  }
  t.equal(checked, 302, 'resources of the fixtures holding such a date');
});
