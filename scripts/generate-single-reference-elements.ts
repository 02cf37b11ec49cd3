// Writes src/search/single-reference-elements.json: for each R4 resource type, the Reference elements that
// occur at most once in a resource, themselves and every element above them having max "1". A reference
// search parameter on such an element names at most one target, which is what makes it a record parameter
// (src/search/compartment.ts): the one patient a record is about. Source: the R4 StructureDefinitions in
// src/fhir/r4 (HL7's definitions, CC0). Run again after changing the definitions.
import { writeFileSync } from 'node:fs';
import { r4Resources } from '../src/fhir/r4/r4-definitions.ts';

const structures = r4Resources<any>('profiles-resources.json').filter(
  (r) => r.resourceType === 'StructureDefinition' && r.kind === 'resource' && r.derivation === 'specialization' && !r.abstract,
);
const out: Record<string, string[]> = {};
for (const definition of structures.sort((a, b) => (a.type < b.type ? -1 : 1))) {
  const repeats = new Set<string>();
  const single: string[] = [];
  for (const element of definition.snapshot.element) {
    const path = element.path as string;
    if (!path.includes('.')) continue; // the resource itself
    const parent = path.slice(0, path.lastIndexOf('.'));
    if (element.max !== '1' || repeats.has(parent)) {
      repeats.add(path);
      continue;
    }
    if ((element.type ?? []).some((t: { code: string }) => t.code === 'Reference')) single.push(path);
  }
  if (single.length > 0) out[definition.type] = single;
}
writeFileSync(new URL('../src/search/single-reference-elements.json', import.meta.url), `${JSON.stringify(out, null, 1)}\n`);
