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
  | { kind: 'delete'; resourceType: string; id: string }
  | { kind: 'history-instance'; resourceType: string; id: string }
  | { kind: 'history-type'; resourceType: string }
  | { kind: 'history-system' };

export type InteractionKind = Interaction['kind'];

/** The R4 CapabilityStatement code of each interaction (TypeRestfulInteraction / SystemRestfulInteraction). */
export const CAPABILITY_CODE: Record<InteractionKind, string> = {
  capabilities: 'capabilities',
  create: 'create',
  read: 'read',
  vread: 'vread',
  update: 'update',
  delete: 'delete',
  'history-instance': 'history-instance',
  'history-type': 'history-type',
  'history-system': 'history-system',
};

/**
 * The URL shapes of the FHIR REST API (R4 http.html), below the base, and the interaction each method
 * selects. `:type`, `:id` and `:vid` are path parameters; other segments are literal.
 */
export const ROUTES: ReadonlyArray<{ pattern: string; methods: Partial<Record<HttpMethod, InteractionKind>> }> = [
  { pattern: 'metadata', methods: { GET: 'capabilities' } },
  { pattern: '_history', methods: { GET: 'history-system' } },
  { pattern: ':type', methods: { POST: 'create' } },
  { pattern: ':type/_history', methods: { GET: 'history-type' } },
  { pattern: ':type/:id', methods: { GET: 'read', PUT: 'update', DELETE: 'delete' } },
  { pattern: ':type/:id/_history', methods: { GET: 'history-instance' } },
  { pattern: ':type/:id/_history/:vid', methods: { GET: 'vread' } },
];
