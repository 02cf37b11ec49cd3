// Writes src/fhir/summary-elements.json: for each served type, the top-level elements that R4 marks
// isSummary (what `_summary=true` keeps) and those that are mandatory (kept by `_summary=text`). Source: the R4 StructureDefinitions in src/fhir/r4
// (HL7's definitions, CC0). Run again after changing the served types.
import { writeFileSync } from 'node:fs';
import { r4Resources } from '../src/fhir/r4/r4-definitions.ts';
import { SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';

const structures = r4Resources<any>('profiles-resources.json');
const summary: Record<string, { summary: string[]; mandatory: string[] }> = {};
for (const type of SERVED_RESOURCE_TYPES) {
  const definition = structures.find((r) => r.resourceType === 'StructureDefinition' && r.id === type);
  const elements = { summary: [] as string[], mandatory: [] as string[] };
  for (const element of definition.snapshot.element) {
    const path: string[] = element.path.split('.');
    if (path.length !== 2) continue;
    const name = path[1]!;
    // A choice element [x] appears in JSON under each of its typed names.
    const names: string[] = name.endsWith('[x]') ? element.type.map((t: any) => name.slice(0, -3) + t.code[0].toUpperCase() + t.code.slice(1)) : [name];
    if (element.isSummary) elements.summary.push(...names);
    if (element.min > 0) elements.mandatory.push(...names);
  }
  summary[type] = elements;
}
writeFileSync(new URL('../src/fhir/summary-elements.json', import.meta.url), `${JSON.stringify(summary, null, 2)}\n`);
console.log(Object.entries(summary).map(([t, e]) => `${t}: ${e.summary.length} summary, ${e.mandatory.length} mandatory`).join('\n'));
