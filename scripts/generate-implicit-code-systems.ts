// Writes src/search/implicit-code-systems.json: for each `code` element of the served types bound
// (required) to a value set drawn from one code system, that system. A token search written
// `system|code` then finds plain `code` elements (`gender=http://hl7.org/fhir/administrative-gender|male`),
// as R4 search.html#token expects. Source: R4 StructureDefinitions and ValueSets in src/fhir/r4
// (HL7's definitions, CC0). Run again after changing the served types.
import { writeFileSync } from 'node:fs';
import { r4Resources } from '../src/fhir/r4/r4-definitions.ts';
import { SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';

const structures = r4Resources<any>('profiles-resources.json');
const valueSets = new Map<string, any>();
for (const file of ['valuesets.json', 'v3-codesystems.json', 'v2-tables.json'] as const) {
  for (const resource of r4Resources<any>(file)) if (resource.resourceType === 'ValueSet') valueSets.set(resource.url, resource);
}

/** The one code system a value set draws from, if it draws from exactly one (directly or via imports). */
function singleSystem(url: string, seen = new Set<string>()): string | undefined {
  if (seen.has(url)) return undefined;
  seen.add(url);
  const valueSet = valueSets.get(url.split('|')[0]!);
  if (!valueSet?.compose) return undefined;
  const systems = new Set<string>();
  for (const include of valueSet.compose.include ?? []) {
    if (include.system) systems.add(include.system);
    for (const imported of include.valueSet ?? []) {
      const system = singleSystem(imported, seen);
      if (!system) return undefined;
      systems.add(system);
    }
  }
  return systems.size === 1 ? [...systems][0] : undefined;
}

const map: Record<string, string> = {};
for (const type of SERVED_RESOURCE_TYPES) {
  const definition = structures.find((r) => r.resourceType === 'StructureDefinition' && r.id === type);
  for (const element of definition.snapshot.element) {
    if (element.binding?.strength !== 'required' || !element.binding.valueSet) continue;
    if (!(element.type ?? []).some((t: any) => t.code === 'code')) continue;
    const system = singleSystem(element.binding.valueSet);
    if (system) map[element.path.replace(/\[x\]$/, '')] = system;
  }
}
writeFileSync(new URL('../src/search/implicit-code-systems.json', import.meta.url), `${JSON.stringify(map, null, 2)}\n`);
console.log(`${Object.keys(map).length} code elements with an implicit system`);
