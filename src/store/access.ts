/** HL7 PurposeOfUse (v3 ActReason) codes of an emergency access: break the glass, emergency treatment. */
export const EMERGENCY_PURPOSES: ReadonlySet<string> = new Set(['BTG', 'ETREAT']);

/** One compartment: `Patient/123` is `{ type: 'Patient', id: '123' }`. */
export interface CompartmentRef {
  type: string;
  id: string;
}

/**
 * Who a request is made for and what it may see: plain data, built by the transport for each request and
 * bound to the store (`ResourceStore.forAccess`), which applies it inside its SQL on every read path, so
 * that paging, counts and `_total` see exactly what the caller sees.
 */
export interface AccessContext {
  /** The user or client acting (`Practitioner/1`, `Device/app`), when known. */
  who?: string;
  /** The SMART client (`client_id`/`azp` of the token) the request comes from, when known. */
  clientId?: string;
  /** The token's subject (`sub`), when it has one: with `clientId`, whose request budget it spends (rate limit). */
  subject?: string;
  /** Granted scopes (SMART `patient/*.read`…). */
  scopes: readonly string[];
  /** The patient of the launch context (`Patient/123`), when there is one. */
  patient?: string;
  /** Purpose-of-use codes (v3 ActReason: TREAT, ETREAT…). */
  purposeOfUse: readonly string[];
  /**
   * Compartments whose members the caller must not see (a patient who withheld consent, say). The one
   * restriction the stores apply today; scopes and patient context will be turned into ones like it.
   */
  hiddenCompartments: readonly CompartmentRef[];
  /**
   * The only types whose resources the caller may see (read, search, include, history); undefined: every
   * type. A type left out is absent from every result, as if it held nothing.
   */
  readableTypes?: readonly string[];
  /**
   * Types seen only within the compartment of `patient` (`*`: every type but `unconfinedTypes`), as a
   * `patient/` SMART scope grants them. Of such a type that can belong to a patient's compartment (by the
   * R4 Patient CompartmentDefinition) only the members of `patient`'s are seen; a Binary only when its
   * securityContext is such a member; a type that never belongs to one (Practitioner, Organization,
   * Medication) is seen whole, as reference data the patient's own resources point to.
   * Without `patient`, confined types are not seen at all.
   */
  confinedTypes?: '*' | readonly string[];
  /** With `confinedTypes: '*'`, the types seen whole all the same (granted by a `user/` or `system/` scope too). */
  unconfinedTypes?: readonly string[];
  /**
   * Types seen only where they match a search query (SMART v2 search-restricted scopes:
   * `patient/Observation.rs?category=laboratory`): a resource of `type` is seen when it matches one of
   * `queries` (search/restriction.ts; a query that cannot apply matches nothing), besides the other rules.
   */
  restrictedTypes?: ReadonlyArray<{ type: string; queries: readonly string[] }>;
  /**
   * Whether the patients' consent applies (oppositions, closed records, DMP visibility labels: consent-scope.ts):
   * for every caller a token names; not for the server itself (ALL_ACCESS, `FHIR_AUTH=off`).
   */
  subjectToConsent?: boolean;
  /**
   * Who the patients' consent sees in a user caller, resolved once per request (ResourceStore.resolveCaller)
   * and bound to every statement as arrays, instead of being looked up again in each: `opposable`, whom an
   * opposition may name (the fhirUser, a Practitioner's PractitionerRoles and their Organizations, a
   * PractitionerRole's Practitioner and Organization); `authoring`, who counts as an author or the médecin
   * traitant (the same, without a Practitioner's roles' Organizations). Absent: looked up in each statement.
   */
  callerIdentities?: CallerIdentities;
}

export interface CallerIdentities {
  /** The fhirUser these identities are of. */
  who: string;
  opposable: readonly string[];
  authoring: readonly string[];
}

/**
 * What every request gets until authorisation (the SMART issue) fills the context from its token: no
 * restriction, and the store's SQL exactly as without a context.
 */
export const ALL_ACCESS: AccessContext = Object.freeze({
  scopes: Object.freeze(['system/*.*']),
  purposeOfUse: Object.freeze([]),
  hiddenCompartments: Object.freeze([]),
});

/** Whether `access` narrows what is seen at all (ALL_ACCESS does not). */
export function restrictsReads(access: AccessContext): boolean {
  return (
    access.hiddenCompartments.length > 0 ||
    access.readableTypes !== undefined ||
    isConfining(access) ||
    (access.restrictedTypes?.length ?? 0) > 0 ||
    access.subjectToConsent === true
  );
}

/** Whether `access` confines some type to its patient's compartment. */
export function isConfining(access: AccessContext): boolean {
  return access.confinedTypes === '*' || (access.confinedTypes?.length ?? 0) > 0;
}

/** Whether resources of `resourceType` are seen only within the patient's compartment. */
export function isConfined(access: AccessContext, resourceType: string): boolean {
  if (access.confinedTypes === '*') return !(access.unconfinedTypes ?? []).includes(resourceType);
  return (access.confinedTypes ?? []).includes(resourceType);
}
