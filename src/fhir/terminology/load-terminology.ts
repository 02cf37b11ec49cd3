import { r4Resources } from '../r4/r4-definitions.ts';
import { TerminologyService, type CodeSystemResource, type ValueSetResource } from './terminology-service.ts';

/** R4 terminology files (src/fhir/r4): FHIR value sets and code systems, HL7 v3 and v2 tables. */
const R4_TERMINOLOGY_FILES = ['valuesets.json', 'v3-codesystems.json', 'v2-tables.json'] as const;

/**
 * The local terminology: the French value sets and code systems bundled in `profiles/terminology/`
 * (passed in, first, so they win over any homonym), then the base R4 ones.
 */
export function loadTerminology(french: readonly (CodeSystemResource | ValueSetResource)[]): TerminologyService {
  const service = new TerminologyService();
  for (const resource of french) service.add(resource);
  for (const file of R4_TERMINOLOGY_FILES) {
    for (const resource of r4Resources<CodeSystemResource | ValueSetResource>(file)) {
      if (resource.resourceType === 'CodeSystem' || resource.resourceType === 'ValueSet') service.add(resource);
    }
  }
  return service;
}
