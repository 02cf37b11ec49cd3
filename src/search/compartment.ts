import { readFileSync } from 'node:fs';
import type { CompartmentDefinition, SearchParameter } from 'fhir/r4';
import { readR4Definition, type R4DefinitionFile } from '../fhir/r4/r4-definitions.ts';
import { expressionFor, loadSearchParameters } from './registry.ts';

/** The R4 compartments (compartmentdefinition.html), each the resource type whose instances define one. */
export const COMPARTMENT_TYPES = ['Patient', 'Encounter', 'RelatedPerson', 'Practitioner', 'Device'] as const;
export type CompartmentType = (typeof COMPARTMENT_TYPES)[number];

const DEFINITION_FILES: Record<CompartmentType, R4DefinitionFile> = {
  Patient: 'compartmentdefinition-patient.json',
  Encounter: 'compartmentdefinition-encounter.json',
  RelatedPerson: 'compartmentdefinition-relatedperson.json',
  Practitioner: 'compartmentdefinition-practitioner.json',
  Device: 'compartmentdefinition-device.json',
};

export function isCompartmentType(type: string): type is CompartmentType {
  return (COMPARTMENT_TYPES as readonly string[]).includes(type);
}

/** A compartment's official definition: its canonical URL and, per resource type, the parameters putting a resource in it. */
export interface Compartment {
  url: string;
  params: Map<string, string[]>;
}

/**
 * The five compartments as the base R4 CompartmentDefinitions give them (src/fhir/r4, HL7's, CC0): for
 * each resource type, the reference parameters that put a resource in one (Immunization by `patient` in a
 * patient's, by `performer` in a practitioner's…). A definition's own `{def}` entry is left out: the
 * compartment's own resource is a member of it by identity (membersOf).
 */
export function loadCompartments(): ReadonlyMap<CompartmentType, Compartment> {
  compartments ??= new Map(
    COMPARTMENT_TYPES.map((type) => {
      const definition = readR4Definition<CompartmentDefinition>(DEFINITION_FILES[type]);
      const params = new Map(
        (definition.resource ?? [])
          .map((r) => [r.code as string, (r.param ?? []).filter((p) => p !== '{def}')] as const)
          .filter(([, list]) => list.length > 0),
      );
      return [type, { url: definition.url as string, params }];
    }),
  );
  return compartments;
}
let compartments: Map<CompartmentType, Compartment> | undefined;

/** The Patient compartment's parameters by resource type (Immunization by `patient`, DocumentReference by `subject` or `author`…). */
export function loadPatientCompartment(): Map<string, string[]> {
  return loadCompartments().get('Patient')!.params;
}

/**
 * Every (compartment type, resource type, parameter) of the five definitions: the one statement of
 * membership, read by the writer (membersOf) and by migration 0012's backfill of existing stores.
 */
export function compartmentParams(): Array<[compartmentType: CompartmentType, resourceType: string, param: string]> {
  return [...loadCompartments()].flatMap(([compartmentType, { params }]) =>
    [...params].flatMap(([resourceType, list]) => list.map((param) => [compartmentType, resourceType, param] as [CompartmentType, string, string])),
  );
}

/** By resource type: the parameters that put its resources in a compartment, and the compartment's type. */
function paramsByResourceType(): Map<string, Array<{ param: string; compartmentType: CompartmentType }>> {
  if (!byResourceType) {
    byResourceType = new Map();
    for (const [compartmentType, resourceType, param] of compartmentParams()) {
      const list = byResourceType.get(resourceType) ?? [];
      list.push({ param, compartmentType });
      byResourceType.set(resourceType, list);
    }
  }
  return byResourceType;
}
let byResourceType: Map<string, Array<{ param: string; compartmentType: CompartmentType }>> | undefined;

/** A reference index row as the writer has it: its parameter and its local target, if any. */
export interface ReferenceRow {
  param: string;
  targetType: string | null;
  targetId: string | null;
}

/**
 * The compartments a resource is in, as (compartment type, compartment id): one per local target of a
 * compartment parameter whose type is that compartment's (an Appointment's `actor` puts it in each of its
 * patients', practitioners', related persons' and devices' compartments), and its own compartment if its
 * type defines one (a Patient is in its own). Each pair once.
 */
export function membersOf(resourceType: string, id: string, references: ReadonlyArray<ReferenceRow>): Array<[compartmentType: string, compartmentId: string]> {
  const seen = new Set<string>();
  const out: Array<[string, string]> = [];
  const add = (compartmentType: string, compartmentId: string) => {
    const key = `${compartmentType}/${compartmentId}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push([compartmentType, compartmentId]);
  };
  if (isCompartmentType(resourceType)) add(resourceType, id);
  const params = paramsByResourceType().get(resourceType);
  if (params) {
    for (const row of references) {
      if (row.targetType === null || row.targetId === null) continue;
      for (const { param, compartmentType } of params) if (row.param === param && row.targetType === compartmentType) add(compartmentType, row.targetId);
    }
  }
  return out;
}

// Reference elements occurring at most once in a resource (generated by scripts/generate-single-reference-elements.ts).
const SINGLE_REFERENCE_ELEMENTS = JSON.parse(readFileSync(new URL('./single-reference-elements.json', import.meta.url), 'utf8')) as Record<string, string[]>;

/** The record parameters and the `patient` parameters that restrict them to patients, derived once. */
interface RecordParams {
  byType: Map<string, string>;
  restrictedToPatients: Set<string>;
}
let recordParams: RecordParams | undefined;

/**
 * The record parameter of each resource type: the parameter naming the one patient a record is about.
 * Rule: of the type's Patient compartment parameters, `patient` if it is one, else `subject` if it is one,
 * provided its expression for the type is one path (possibly restricted by `.where(resolve() is Patient)`)
 * to a Reference element that occurs at most once in a resource (single-reference-elements.json). So an
 * Immunization's is `patient`, a MedicationStatement's `subject`; an author or a recorder never is (they
 * are compartment parameters too), and a type whose compartment parameters can name several patients
 * (Group `member`, Appointment `actor`, Provenance `patient` on its targets) has none: its resources
 * belong to several patients, and their record patient is NULL.
 */
export function recordPatientParams(definitions?: SearchParameter[]): Map<string, string> {
  return (definitions ? deriveRecordParams(definitions) : derivedRecordParams()).byType;
}

function deriveRecordParams(definitions: SearchParameter[]): RecordParams {
  const expression = (type: string, code: string) => {
    const definition = definitions.find((d) => d.code === code && d.expression && (d.base as string[]).includes(type));
    return definition?.expression ? expressionFor(definition.expression, type) : undefined;
  };
  const byType = new Map<string, string>();
  const restrictedToPatients = new Set<string>();
  for (const [type, params] of loadPatientCompartment()) {
    const param = ['patient', 'subject'].find((code) => params.includes(code));
    const path = param && expression(type, param)?.replace(/\.where\(reference\.startsWith\('Patient\/'\)\)$/, '');
    if (!param || !path || !SINGLE_REFERENCE_ELEMENTS[type]?.includes(path)) continue;
    byType.set(type, param);
    if (param !== 'patient' && expression(type, 'patient') === `${path}.where(reference.startsWith('Patient/'))`) restrictedToPatients.add(type);
  }
  return { byType, restrictedToPatients };
}

function derivedRecordParams(): RecordParams {
  recordParams ??= deriveRecordParams(loadSearchParameters());
  return recordParams;
}

/**
 * Reads the definitions and derives the record parameters now, from `definitions` (the ones the server's
 * registry was built from), rather than on the first write or `_has` (200 ms of parsing).
 */
export function prepareCompartments(definitions: SearchParameter[]): void {
  loadCompartments();
  recordParams ??= deriveRecordParams(definitions);
}

/**
 * Whether a `_has` from `sourceType` to Patient by `param` follows the record parameter: the record
 * parameter itself, or `patient` where that is the record parameter restricted to patients
 * (`DocumentReference.subject.where(resolve() is Patient)`). Such a `_has` can read the patient off the
 * index rows (`patient_id`), since each record names at most one.
 */
export function followsRecordPatient(sourceType: string, param: string): boolean {
  const { byType, restrictedToPatients } = derivedRecordParams();
  const recordParam = byType.get(sourceType);
  return recordParam !== undefined && (param === recordParam || (param === 'patient' && restrictedToPatients.has(sourceType)));
}

/**
 * The patient whose record a resource is part of: a Patient's own id, else the local Patient its record
 * parameter points at (from its reference index rows); null for anything else (a Practitioner, a Binary,
 * a Group of several patients).
 */
export function recordPatientOf(resourceType: string, id: string, references: ReadonlyArray<ReferenceRow>): string | null {
  if (resourceType === 'Patient') return id;
  const param = derivedRecordParams().byType.get(resourceType);
  if (!param) return null;
  const patients = new Set(references.filter((row) => row.param === param && row.targetType === 'Patient' && row.targetId !== null).map((row) => row.targetId));
  return patients.size === 1 ? [...patients][0]! : null;
}
