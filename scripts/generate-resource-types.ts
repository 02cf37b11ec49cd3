// Writes src/fhir/r4/resource-types.json: every concrete resource type of FHIR R4 4.0.1, from the
// StructureDefinitions in src/fhir/r4 (HL7's definitions, CC0): kind `resource`, not abstract, a
// specialization (not a profile). The server serves these (src/fhir/resource-types.ts says which not).
import { writeFileSync } from 'node:fs';
import type { StructureDefinition } from 'fhir/r4';
import { r4Resources } from '../src/fhir/r4/r4-definitions.ts';

const types = r4Resources<StructureDefinition>('profiles-resources.json')
  .filter((d) => d.resourceType === 'StructureDefinition' && d.kind === 'resource' && !d.abstract && d.derivation === 'specialization')
  .map((d) => d.type)
  .sort();
writeFileSync(new URL('../src/fhir/r4/resource-types.json', import.meta.url), `${JSON.stringify(types, null, 2)}\n`);
console.log(`${types.length} resource types`);
