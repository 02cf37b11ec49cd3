import type { CompartmentDefinition } from 'fhir/r4';
import { readR4Definition } from '../fhir/r4/r4-definitions.ts';

/**
 * The Patient compartment (R4 compartmentdefinition-patient): for each resource type, the reference
 * parameters that put a resource in a patient's compartment (Immunization by `patient`, DocumentReference
 * by `subject` or `author`…). Source: src/fhir/r4 (HL7's definition, CC0).
 */
export function loadPatientCompartment(): Map<string, string[]> {
  const definition = readR4Definition<CompartmentDefinition>('compartmentdefinition-patient.json');
  return new Map((definition.resource ?? []).filter((r) => r.param && r.param.length > 0).map((r) => [r.code as string, r.param as string[]]));
}

/**
 * For each type of record a patient's dossier holds, the reference parameter naming the patient the record
 * is about: among its Patient compartment parameters, the one that is never the author (a DocumentReference
 * is in its author's compartment too, an AllergyIntolerance in its recorder's). Each is at most one
 * reference. Migration 0008 fills `patient_id` by the same pairs.
 */
export const RECORD_PATIENT_PARAM: Readonly<Record<string, string>> = {
  Immunization: 'patient',
  AllergyIntolerance: 'patient',
  MedicationStatement: 'subject',
  DocumentReference: 'subject',
  Consent: 'patient',
};

/**
 * Whether a `_has` from `sourceType` to Patient by `param` follows the record parameter: the record
 * parameter itself, or `patient` where that is the record parameter restricted to patients
 * (`DocumentReference.subject.where(resolve() is Patient)`).
 */
export function followsRecordPatient(sourceType: string, param: string): boolean {
  const recordParam = RECORD_PATIENT_PARAM[sourceType];
  return recordParam !== undefined && (param === recordParam || (param === 'patient' && RESTRICTED_TO_PATIENTS.has(sourceType)));
}

/** Types whose `patient` search parameter is their record parameter (`subject`) restricted to patients. */
const RESTRICTED_TO_PATIENTS = new Set(['DocumentReference', 'MedicationStatement']);

/**
 * The patient whose record a resource is part of: a Patient's own id, else the local Patient its record
 * parameter points at (from its reference index rows); null for anything else (a Practitioner, a Binary).
 */
export function recordPatientOf(resourceType: string, id: string, references: ReadonlyArray<{ param: string; targetType: string | null; targetId: string | null }>): string | null {
  if (resourceType === 'Patient') return id;
  const param = RECORD_PATIENT_PARAM[resourceType];
  if (!param) return null;
  return references.find((row) => row.param === param && row.targetType === 'Patient')?.targetId ?? null;
}
