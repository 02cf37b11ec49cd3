import type { HttpMethod } from './request.ts';

/**
 * A request once parsed: which R4 interaction it is and on what. Authorisation, consent and audit
 * decide on this, never on raw URLs.
 */
export type Interaction =
  | { kind: 'capabilities' }
  | { kind: 'create'; resourceType: string }
  | { kind: 'read'; resourceType: string; id: string }
  | { kind: 'vread'; resourceType: string; id: string; versionId: number }
  | { kind: 'update'; resourceType: string; id: string }
  | { kind: 'update-conditional'; resourceType: string; condition: string }
  | { kind: 'patch'; resourceType: string; id: string }
  | { kind: 'delete'; resourceType: string; id: string }
  | { kind: 'delete-conditional'; resourceType: string; condition: string }
  | { kind: 'transaction' }
  | { kind: 'batch' }
  /** `$name` at system (`/$name`), type (`/Patient/$name`) or instance (`/Patient/1/$name`) level. */
  | { kind: 'operation'; name: string; resourceType?: string; id?: string }
  | { kind: 'history-instance'; resourceType: string; id: string }
  | { kind: 'history-type'; resourceType: string }
  | { kind: 'history-system' }
  | { kind: 'search-type'; resourceType: string }
  | { kind: 'search-system' }
  /** Search within a patient's compartment: `Patient/123/Immunization`. */
  | { kind: 'search-compartment'; compartmentType: string; id: string; resourceType: string };

export type InteractionKind = Interaction['kind'];

/** The R4 CapabilityStatement code of each interaction (TypeRestfulInteraction / SystemRestfulInteraction). */
// The same codes name the interaction in an AuditEvent's subtype (http://hl7.org/fhir/restful-interaction).
export const CAPABILITY_CODE: Record<InteractionKind, string> = {
  capabilities: 'capabilities',
  create: 'create',
  read: 'read',
  vread: 'vread',
  update: 'update',
  // Conditional forms are declared by the resource's conditionalUpdate / conditionalDelete flags.
  'update-conditional': 'update',
  patch: 'patch',
  delete: 'delete',
  'delete-conditional': 'delete',
  transaction: 'transaction',
  batch: 'batch',
  // Operations are declared in CapabilityStatement.rest[.resource].operation, not as interactions.
  operation: 'operation',
  'history-instance': 'history-instance',
  'history-type': 'history-type',
  'history-system': 'history-system',
  'search-type': 'search-type',
  'search-system': 'search-system',
  // A compartment search is a type search restricted to the compartment (R4 http.html#search).
  'search-compartment': 'search-type',
};

/**
 * The URL shapes of the FHIR REST API (R4 http.html), below the base, and the interaction each method
 * selects. `:type`, `:id` and `:vid` are path parameters; other segments are literal.
 */
export const ROUTES: ReadonlyArray<{ pattern: string; methods: Partial<Record<HttpMethod, InteractionKind>> }> = [
  // POST of a Bundle: `transaction` here stands for both; the Bundle's type decides (see parseInteraction).
  { pattern: '', methods: { GET: 'search-system', POST: 'transaction' } },
  { pattern: '_search', methods: { POST: 'search-system' } },
  { pattern: 'metadata', methods: { GET: 'capabilities' } },
  { pattern: '$:operation', methods: { GET: 'operation', POST: 'operation' } },
  { pattern: '_history', methods: { GET: 'history-system' } },
  { pattern: ':type', methods: { GET: 'search-type', POST: 'create', PUT: 'update-conditional', DELETE: 'delete-conditional' } },
  { pattern: ':type/_search', methods: { POST: 'search-type' } },
  { pattern: ':type/_history', methods: { GET: 'history-type' } },
  { pattern: ':type/$:operation', methods: { GET: 'operation', POST: 'operation' } },
  { pattern: ':type/:id', methods: { GET: 'read', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } },
  { pattern: ':type/:id/_history', methods: { GET: 'history-instance' } },
  { pattern: ':type/:id/_history/:vid', methods: { GET: 'vread' } },
  { pattern: ':type/:id/$:operation', methods: { GET: 'operation', POST: 'operation' } },
  { pattern: ':type/:id/:compartmentType', methods: { GET: 'search-compartment' } },
];
