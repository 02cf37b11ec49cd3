import type { CapabilityStatement, OperationOutcome, Resource } from 'fhir/r4';
import type { ResponseResource } from '../fhir/resource-text.ts';
import type { InputLimits } from '../fhir/input-limits.ts';
import type { ResourceValidator } from '../fhir/validation/validator.ts';
import type { Compartment } from '../search/compartment.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { ResourceStore } from '../store/resource-store.ts';
import type { Interaction } from './interaction.ts';
import type { FhirRequest, FhirResponse } from './request.ts';

/**
 * A step every interaction passes through, bundles' entries included: authorisation and consent decide
 * before anything is read or written; audit sees every outcome, refusals and failures too.
 */
export interface InteractionHook {
  /** Before anything else, the body's validation included: an unauthorised caller costs nothing and learns nothing. */
  authorise?(interaction: Interaction, request: FhirRequest): Promise<void>;
  /** After validation, on the resource as it will be written: for a patch, the patched resource. */
  checkResource?(interaction: Interaction, request: FhirRequest, resource: Resource): Promise<void>;
  /**
   * Every outcome: successes, refusals and failures (a 500 too, before it goes on to the error handler).
   * `store` is the one the interaction ran in: for a successful write, its unit of work, so that what the
   * hook writes there commits with the write or not at all; otherwise the request's store (a transaction
   * Bundle's for its entries).
   */
  audit?(interaction: Interaction | undefined, request: FhirRequest, response: FhirResponse, store: ResourceStore): Promise<void>;
}

export interface RouterDependencies {
  store: ResourceStore;
  validator: ResourceValidator;
  capabilityStatement: CapabilityStatement;
  registry: SearchParameterRegistry;
  /** The five R4 compartments as their definitions give them (search/compartment.ts). */
  compartments: ReadonlyMap<string, Compartment>;
  hooks?: InteractionHook[];
  limits: BundleLimits;
  /** Bounds on a resource's shape: bodies are held to them as they are parsed, a patch's result here. */
  inputLimits: InputLimits;
  operations: Operations;
  /**
   * FHIR_REFERENTIAL_INTEGRITY: a write's references to this server must name resources it holds, and a
   * bundle-internal one must be resolved (router/references.ts); off for migrations of legacy data.
   */
  referentialIntegrity: boolean;
}

export interface BundleLimits {
  maxEntries: number;
  /** The largest Binary whose `data` a Bundle carries (BINARY_INLINE_LIMIT); larger ones are left out. */
  binaryInlineBytes: number;
}

/** What an interaction produced, before `Prefer: return` picks the body. */
export interface Outcome {
  status: number;
  resource?: ResponseResource;
  outcome?: OperationOutcome;
  headers?: Record<string, string>;
}

/** What every interaction handler receives besides its request. */
export interface HandlerContext {
  deps: RouterDependencies;
  /** The store, or the unit of work (a transaction bundle's) the interaction runs in. */
  store: ResourceStore;
  /** The router itself, for bundles whose entries are requests of their own. */
  handle(request: FhirRequest, store: ResourceStore): Promise<FhirResponse>;
}

// The router's contract with `$operations` (R4 operations.html): defined here, next to what a handler
// receives, and implemented by src/operations, which depends on the router and not the other way round.

export type OperationLevel = 'system' | 'type' | 'instance';

/** What an operation is invoked on, and with what (R4 operations.html). */
export interface OperationCall {
  name: string;
  level: OperationLevel;
  resourceType?: string;
  id?: string;
  /** The input: a Parameters resource (POST) or the query parameters turned into one (GET). */
  parameters: Resource;
  request: FhirRequest;
  ctx: HandlerContext;
}

/** One `$operation`: where it may be invoked and how. Registered once, dispatched by the router. */
export interface OperationDefinition {
  name: string;
  levels: OperationLevel[];
  /** Resource types it applies to at type and instance level; undefined: every served type. */
  resourceTypes?: string[];
  /** GET is allowed only for operations that change nothing (R4 operations.html#request). */
  affectsState: boolean;
  invoke(call: OperationCall): Promise<Outcome>;
}

/** The operations a server offers, as the router dispatches them (src/operations/registry.ts). */
export interface Operations {
  /** Finds the operation for a call, refusing unknown names, wrong levels and types, and GET on state changes. */
  resolve(name: string, level: OperationLevel, resourceType: string | undefined, method: string): OperationDefinition;
  list(): OperationDefinition[];
}
