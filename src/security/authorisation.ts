import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { InteractionHook } from '../router/context.ts';
import type { Interaction } from '../router/interaction.ts';
import { loadPatientCompartment } from '../search/compartment.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import { meetsRestriction, RestrictionCache } from '../search/restriction.ts';
import { EMERGENCY_PURPOSES, type AccessContext } from '../store/access.ts';
import { Grants, type Permission, type ResourceScope } from './scopes.ts';

/** Operations on terminology (code systems and value sets, no patient data): any authenticated caller. */
const TERMINOLOGY_OPERATIONS = new Set(['lookup', 'expand', 'validate-code', 'subsumes', 'translate']);

const grantsByAccess = new WeakMap<AccessContext, Grants>();

/** The scopes of `access` parsed, once per context (the transport builds one per token, cached with it). */
export function grantsOf(access: AccessContext): Grants {
  let grants = grantsByAccess.get(access);
  if (!grants) {
    grants = new Grants(access.scopes, access.patient);
    grantsByAccess.set(access, grants);
  }
  return grants;
}

function forbidden(diagnostics: string): FhirError {
  return new FhirError(403, [{ code: 'forbidden', diagnostics }]);
}

/**
 * SMART scopes applied to every interaction, bundle entries and the matches a transaction looks up first
 * included (they come through the router's hooks). This decides whether the interaction is allowed at all
 * (403 otherwise); what it then sees (types not granted, other patients' resources) the store leaves out
 * inside its SQL, from the same scopes turned into the access context's readable and confined types.
 *
 * - read, vread, instance history: `r` on the type; search, type history: `s` on the type; system search and
 *   history: `s` on some type (the results hold only the types granted).
 * - create `c`; update, conditional update and patch `u` (an update that creates too); delete `d`.
 * - `$validate` checks a resource before it is written and writes nothing: `c` or `u` on its type (at system
 *   level, on some type). Terminology operations: any token. Any other operation: `r` on its type, or on
 *   every type at system level.
 * - A write must be what one of the scopes granting it allows: under a `patient/` scope, a resource left in
 *   the launch patient's compartment; under a search-restricted scope (`patient/Observation.cu?category=
 *   laboratory`), a resource matching its query, decided on the index rows it will have (search/restriction.ts).
 */
export function smartAuthorisation(registry: SearchParameterRegistry): InteractionHook {
  const restrictions = new RestrictionCache(registry);
  return {
    async authorise(interaction, request) {
      if (!request.access) return;
      const grants = grantsOf(request.access);
      const needs = (resourceType: string, ...permissions: Permission[]) => {
        if (permissions.some((permission) => grants.grant(resourceType, permission) !== 'none')) return;
        throw forbidden(`The token's scopes do not grant '${permissions.join("' or '")}' on ${resourceType}`);
      };
      const needsSome = (permission: Permission) => {
        if (!grants.grantsAny(permission)) throw forbidden(`The token's scopes grant '${permission}' on no type`);
      };
      switch (interaction.kind) {
        case 'capabilities':
        case 'transaction':
        case 'batch':
          return;
        case 'read':
        case 'vread':
        case 'history-instance':
          return needs(interaction.resourceType, 'r');
        case 'search-type':
        case 'search-compartment':
        case 'history-type':
          return needs(interaction.resourceType, 's');
        case 'search-system':
        case 'history-system':
          return needsSome('s');
        case 'create':
          return needs(interaction.resourceType, 'c');
        case 'update':
        case 'update-conditional':
        case 'patch':
          return needs(interaction.resourceType, 'u');
        case 'delete':
        case 'delete-conditional':
          return needs(interaction.resourceType, 'd');
        case 'operation':
          return authoriseOperation(interaction, grants, needs, request.access.who);
      }
    },
    async checkResource(interaction, request, resource) {
      if (!request.access) return;
      const grants = grantsOf(request.access);
      const permission: Permission = interaction.kind === 'create' ? 'c' : 'u';
      const scopes = grants.scopesGranting(resource.resourceType, permission);
      if (scopes.some((scope) => scope.context !== 'patient' && scope.restriction === undefined)) return;
      // Scopes add up: the write is allowed when one of them allows it, by its context and by its query.
      const refusals: Refusal[] = [];
      for (const scope of scopes) {
        const refusal = scopeRefusal(scope, resource, grants.patient, (query) => {
          const restriction = restrictions.get(resource.resourceType, query);
          return restriction !== undefined && meetsRestriction(resource, restriction, registry);
        });
        if (!refusal) return;
        refusals.push(refusal);
      }
      // Leaving the patient's compartment is the first thing to say when one of the scopes refuses that.
      throw (refusals.find((refusal) => refusal.compartment) ?? refusals[0])?.error ?? forbidden(`The token's scopes do not grant '${permission}' on ${resource.resourceType}`);
    },
  };
}

interface Refusal {
  error: FhirError;
  /** The resource would leave the launch patient's compartment. */
  compartment: boolean;
}

/** Why `scope` does not allow writing `resource`; undefined when it does. */
function scopeRefusal(scope: ResourceScope, resource: Resource, patient: string | undefined, matches: (query: string) => boolean): Refusal | undefined {
  if (scope.context === 'patient') {
    try {
      assertInPatientCompartment(resource, patient!);
    } catch (error) {
      if (error instanceof FhirError) return { error, compartment: true };
      throw error;
    }
  }
  if (scope.restriction !== undefined && !matches(scope.restriction)) {
    const error = forbidden(`The ${resource.resourceType} does not match the search restriction of the token's scope ${scope.context}/${scope.resourceType}?${scope.restriction}`);
    return { error, compartment: false };
  }
  return undefined;
}

function authoriseOperation(interaction: Extract<Interaction, { kind: 'operation' }>, grants: Grants, needs: (type: string, ...p: Permission[]) => void, who: string | undefined): void {
  if (TERMINOLOGY_OPERATIONS.has(interaction.name)) return;
  if (interaction.name === 'validate') {
    if (interaction.resourceType) return needs(interaction.resourceType, 'c', 'u');
    if (!grants.grantsAny('c') && !grants.grantsAny('u')) throw forbidden("The token's scopes grant no create or update: $validate checks what is about to be written");
    return;
  }
  if (interaction.name === 'erase') return authoriseErase(interaction, grants, who);
  if (interaction.resourceType) return needs(interaction.resourceType, 'r');
  if (!grants.grantsEveryType('r')) throw forbidden(`$${interaction.name} at system level needs read on every type`);
}

/**
 * `Patient/{id}/$erase` destroys a record for good: allowed to the patient itself (the token's user is this
 * Patient, its fhirUser, and a scope grants `d` on Patient: `patient/Patient.d`, `patient/*.cruds`) and to an
 * administrator (a `system/` scope granting `d` on every type: `system/*.d`, `system/*.cruds`). Nobody else,
 * a practitioner with `user/*.cruds` included.
 */
function authoriseErase(interaction: Extract<Interaction, { kind: 'operation' }>, grants: Grants, who: string | undefined): void {
  if (grants.isAdministrator('d')) return;
  if (interaction.id !== undefined && who === `Patient/${interaction.id}` && grants.grant('Patient', 'd') !== 'none') return;
  throw forbidden('Patient/$erase is allowed to the patient themselves and to an administrator (a system/ scope granting d on every type)');
}

/**
 * A resource written under a `patient/` scope stays in that patient's record: the patient itself, or a
 * resource that can belong to a patient's compartment and names this patient, and no other. Resources of
 * types that never belong to one (Practitioner, Organization) are reference data and may be written as the
 * scope says. A Binary must name the patient as its securityContext.
 */
function assertInPatientCompartment(resource: Resource, patient: string): void {
  const patientId = patient.replace(/^Patient\//, '');
  if (resource.resourceType === 'Patient') {
    if (resource.id === patientId) return;
    throw forbidden(`A patient-scoped token writes only its own patient, Patient/${patientId}`);
  }
  if (resource.resourceType === 'Binary') {
    const context = (resource as { securityContext?: { reference?: string } }).securityContext?.reference;
    if (context === `Patient/${patientId}`) return;
    throw forbidden(`A Binary written with a patient-scoped token must have Patient/${patientId} as its securityContext`);
  }
  if (!loadPatientCompartment().has(resource.resourceType)) return;
  const patients = new Set<string>();
  collectPatientReferences(resource, patients);
  if (patients.size === 1 && patients.has(patientId)) return;
  throw forbidden(`A ${resource.resourceType} written with a patient-scoped token must name Patient/${patientId}, and no other patient`);
}

function collectPatientReferences(value: unknown, found: Set<string>): void {
  if (Array.isArray(value)) {
    for (const item of value) collectPatientReferences(item, found);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  for (const [key, item] of Object.entries(value)) {
    if (key === 'reference' && typeof item === 'string') {
      const match = /(?:^|\/)Patient\/([^/]+)(?:\/_history\/[^/]+)?$/.exec(item);
      if (match) found.add(match[1]!);
    } else collectPatientReferences(item, found);
  }
}

/** The access context a verified token gives: who, the scopes, the patient, and what the store must leave out. */
export function accessFromToken(token: { scopes: string[]; patient?: string; fhirUser?: string; clientId?: string; subject?: string; purposeOfUse: string[] }): AccessContext {
  const grants = new Grants(token.scopes, token.patient);
  const { readable, confined, unconfined, restricted } = grants.visibility();
  const access: AccessContext = {
    ...(token.fhirUser ? { who: token.fhirUser } : {}),
    ...(token.clientId ? { clientId: token.clientId } : {}),
    ...(token.subject ? { subject: token.subject } : {}),
    scopes: token.scopes,
    ...(token.patient ? { patient: token.patient } : {}),
    purposeOfUse: token.purposeOfUse,
    hiddenCompartments: [],
    ...(readable ? { readableTypes: readable } : {}),
    ...(confined === '*' || confined.length > 0 ? { confinedTypes: confined, unconfinedTypes: unconfined } : {}),
    ...(restricted.length > 0 ? { restrictedTypes: restricted } : {}),
    // Whoever a token names sees records as their patients' consent says (store/consent-scope.ts).
    subjectToConsent: true,
  };
  grantsByAccess.set(access, grants);
  return access;
}

/** The request header by which a professional asserts an emergency (break the glass) for one request. */
export const PURPOSE_OF_USE_HEADER = 'x-purpose-of-use';

const ACT_REASON_PREFIX = 'http://terminology.hl7.org/CodeSystem/v3-ActReason|';

/**
 * `access` with the purposes of use a request asserts in `X-Purpose-Of-Use` (comma-separated HL7 PurposeOfUse
 * codes, bare or as `http://terminology.hl7.org/CodeSystem/v3-ActReason|BTG`): `BTG` or `ETREAT`, for one
 * request rather than a token's lifetime. Honoured for a professional (fhirUser Practitioner or
 * PractitionerRole) only: anyone else's access is left as it is, as the patient's consent does not let them
 * break the glass (store/consent-scope.ts). Any other code is a 400.
 */
export function withAssertedPurpose(access: AccessContext, header: string | string[] | undefined): AccessContext {
  if (header === undefined) return access;
  const codes = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((code) => code.trim())
    .filter((code) => code !== '')
    .map((code) => (code.startsWith(ACT_REASON_PREFIX) ? code.slice(ACT_REASON_PREFIX.length) : code));
  const unknown = codes.find((code) => !EMERGENCY_PURPOSES.has(code));
  if (unknown !== undefined) {
    throw new FhirError(400, [{ code: 'value', diagnostics: `X-Purpose-Of-Use takes BTG or ETREAT (HL7 v3 ActReason), not '${unknown.slice(0, 100)}'` }]);
  }
  const professional = access.who?.startsWith('Practitioner/') === true || access.who?.startsWith('PractitionerRole/') === true;
  if (codes.length === 0 || !professional) return access;
  const purposeOfUse = [...new Set([...access.purposeOfUse, ...codes])];
  if (purposeOfUse.length === access.purposeOfUse.length) return access;
  const asserted = { ...access, purposeOfUse };
  grantsByAccess.set(asserted, grantsOf(access));
  return asserted;
}
