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
  return access.hiddenCompartments.length > 0;
}
