/** The resource types this server stores and serves through the REST API. */
export const SERVED_RESOURCE_TYPES = [
  'Patient',
  'DocumentReference',
  'Immunization',
  'AllergyIntolerance',
  'MedicationStatement',
  'Consent',
  'Practitioner',
  'Organization',
  // Document content (a PDF, a CDA) referenced by DocumentReference.content.attachment.url.
  'Binary',
] as const;

export type ServedResourceType = (typeof SERVED_RESOURCE_TYPES)[number];

const served = new Set<string>(SERVED_RESOURCE_TYPES);

export function isServedResourceType(type: string): type is ServedResourceType {
  return served.has(type);
}

/**
 * Conformance resources served read-only (read, search, their operations) from the definitions the
 * validator and terminology service load: never stored, never written through the API.
 */
export const CONFORMANCE_RESOURCE_TYPES = ['CodeSystem', 'StructureDefinition', 'ValueSet'] as const;

export type ConformanceResourceType = (typeof CONFORMANCE_RESOURCE_TYPES)[number];

const conformance = new Set<string>(CONFORMANCE_RESOURCE_TYPES);

export function isConformanceResourceType(type: string): type is ConformanceResourceType {
  return conformance.has(type);
}

/** R4 `id` datatype: 1–64 characters from [A-Za-z0-9\-\.]. */
export const ID_PATTERN = /^[A-Za-z0-9\-.]{1,64}$/;

export function isValidId(id: string): boolean {
  return ID_PATTERN.test(id);
}
