/** The profile each resource type is validated against when the instance claims none we know. */
export type DefaultProfiles = Readonly<Record<string, string>>;

const FR_CORE = 'https://hl7.fr/ig/fhir/core/StructureDefinition';
const PDSM = 'https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition';
/** Canonical base of the project's own profiles (see profiles/SOURCES.md). */
export const DOSSIER_PROFILE_BASE = 'https://dossier.example.org/fhir/StructureDefinition';

/** The French set: FR Core for identities and directories, PDSm for documents, the project's profiles for the rest. */
export const FRENCH_DEFAULT_PROFILES: DefaultProfiles = {
  Patient: `${FR_CORE}/fr-core-patient`,
  Practitioner: `${FR_CORE}/fr-core-practitioner`,
  Organization: `${FR_CORE}/fr-core-organization`,
  DocumentReference: `${PDSM}/pdsm-comprehensive-document-reference`,
  Immunization: `${DOSSIER_PROFILE_BASE}/dossier-immunization`,
  AllergyIntolerance: `${DOSSIER_PROFILE_BASE}/dossier-allergyintolerance`,
  MedicationStatement: `${DOSSIER_PROFILE_BASE}/dossier-medicationstatement`,
  Consent: `${DOSSIER_PROFILE_BASE}/dossier-consent`,
};

/**
 * Profiles a resource may claim instead of its type's default profile, by default profile. IHE MHD publishes
 * a document either by ITI-65 (Comprehensive metadata, the default here) or by ITI-105 Simplified Publish,
 * whose DocumentReference carries the document inline and leaves to the recipient metadata the comprehensive
 * profile requires (size, hash, url, source patient…): MHD validates each against the option it claims, so a
 * document claiming PDSm Simplified Publish is held to that profile, not also to the comprehensive one.
 * Any other claimed profile adds to the default rather than replacing it.
 */
export const ALTERNATIVES_TO_DEFAULT: Readonly<Record<string, readonly string[]>> = {
  [`${PDSM}/pdsm-comprehensive-document-reference`]: [`${PDSM}/pdsm-simplified-publish`],
};

/**
 * Reads `FHIR_DEFAULT_PROFILES`: unset or empty → the French set; `none` → no default profile (base R4 only);
 * otherwise a comma list `Type=canonical-url`, e.g. `Patient=https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins`.
 */
export function parseDefaultProfiles(value: string | undefined): DefaultProfiles {
  const text = value?.trim();
  if (!text) return FRENCH_DEFAULT_PROFILES;
  if (text === 'none') return {};
  const profiles: Record<string, string> = {};
  for (const entry of text.split(',')) {
    const match = /^\s*([A-Z][A-Za-z]+)\s*=\s*(\S+)\s*$/.exec(entry);
    if (!match) throw new Error(`FHIR_DEFAULT_PROFILES: '${entry}' is not Type=canonical-url`);
    profiles[match[1]!] = match[2]!;
  }
  return profiles;
}
