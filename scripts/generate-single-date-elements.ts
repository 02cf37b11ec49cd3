// Writes src/search/single-date-elements.json: for each served type, the elements holding a date (date,
// dateTime, instant, Period; never a Timing, whose events are many) that occur at most once in a resource,
// themselves and every element above them having max "1". A date search parameter on such an element gives
// a resource at most one index row (registry.ts `singleRow`). Source: the R4 StructureDefinitions in
// src/fhir/r4 (HL7's definitions, CC0). Run again after changing the served types.
import { writeFileSync } from 'node:fs';
import { r4Resources } from '../src/fhir/r4/r4-definitions.ts';
import { SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';

const DATE_TYPES = new Set(['date', 'dateTime', 'instant', 'Period']);
const structures = r4Resources<any>('profiles-resources.json');
const out: Record<string, string[]> = {};
for (const type of SERVED_RESOURCE_TYPES) {
  const definition = structures.find((r) => r.resourceType === 'StructureDefinition' && r.id === type);
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
