import type { Resource } from 'fhir/r4';
import { FhirError, type Issue } from '../fhir/outcome.ts';
import { isConformanceResourceType, isServedResourceType, isValidId } from '../fhir/resource-types.ts';
import { builtInDefinitions } from '../fhir/built-in-definitions.ts';
import { relativeToBase } from '../search/extract.ts';
import type { Referrer, ResourceStore } from '../store/resource-store.ts';

/** A Reference of a resource that names a resource of this server: `target` (`Type/id`) must exist. */
export interface LocalReference {
  /** Where it is, as a FHIRPath with positions: `Immunization.performer[0].actor`. */
  path: string;
  /** As written: `Patient/1`, `Patient/1/_history/2`, `https://this.server/fhir/Patient/1`. */
  reference: string;
  target: string;
}

/**
 * The referential integrity of writes (as HAPI FHIR's "enforce referential integrity on write", on by
 * default there too): a reference to a resource of this server must name one that exists, and a
 * bundle-internal `urn:uuid:`/`urn:oid:` one must have been resolved by the transaction. Off, writes keep
 * whatever references they carry (migrations of legacy data).
 */
export interface ReferenceCheck {
  /** Where the targets are looked up: the interaction's store (a transaction's unit, in a bundle). */
  store: ResourceStore;
  baseUrl: string;
  /** The resource's own `Type/id` when known: a resource may name itself. */
  self?: string;
  /**
   * Inside a transaction the targets are looked up once every entry is written (a later entry may create
   * one): the references go here instead.
   */
  defer?: (references: LocalReference[]) => void;
  /**
   * `store` is the unit of work that writes the resource: the targets found are held against their deletion
   * until it ends (ResourceStore.referrers), so that no concurrent delete leaves the reference dangling.
   */
  lock?: boolean;
}

/** Refuses `resource` (400 for a malformed reference, 422 for a missing target) unless its references hold. */
export async function checkReferences(resource: Resource, check: ReferenceCheck): Promise<void> {
  const targets = referencesToCheck(resource, check.baseUrl, check.self);
  if (targets.length === 0) return;
  if (check.defer) return check.defer(targets);
  const missing = await missingTargets(targets, check.store, check.lock);
  if (missing.length > 0) throw unknownTargets(missing);
}

/** The references of `resource` to other resources of this server; 400 for a malformed one. */
export function referencesToCheck(resource: Resource, baseUrl: string, self?: string): LocalReference[] {
  const { local, invalid } = referencesOf(resource, baseUrl);
  if (invalid.length > 0) throw new FhirError(400, invalid);
  return self ? local.filter((reference) => reference.target !== self) : local;
}

/** Of `references`, those whose target the store does not hold live (one query for them all); `lock`: see ReferenceCheck. */
export async function missingTargets(references: LocalReference[], store: ResourceStore, lock = false): Promise<LocalReference[]> {
  const existing = await store.existing(references.map((reference) => reference.target), { lock });
  return references.filter((reference) => !existing.has(reference.target));
}

/** How many referencing resources a refused delete names. */
export const REFERRERS_NAMED = 10;

/**
 * Referrers that never hold a delete back: the audit trail records what was touched and outlives it (it is
 * append-only, so a resource it names could otherwise never be deleted).
 */
export const TRAIL_TYPES: readonly string[] = ['AuditEvent'];

/**
 * The delete side of referential integrity (as HAPI FHIR's "HAPI-0550: Unable to delete … because at least one
 * resource has a reference to this resource"): 409 Conflict when live resources still reference one of
 * `deleted`, naming those the caller may see (up to REFERRERS_NAMED) and counting the rest. Run in the unit
 * that deleted, after the delete: see ResourceStore.referrers for why that is safe against concurrent writers.
 */
export async function refuseIfReferenced(deleted: readonly string[], store: ResourceStore): Promise<void> {
  if (deleted.length === 0) return;
  const referrers = await store.referrers(deleted, REFERRERS_NAMED + 1, TRAIL_TYPES);
  if (referrers.length === 0) return;
  throw stillReferenced(referrers);
}

export function stillReferenced(referrers: Referrer[]): FhirError {
  const byTarget = new Map<string, Referrer[]>();
  for (const referrer of referrers.slice(0, REFERRERS_NAMED)) byTarget.set(referrer.target, [...(byTarget.get(referrer.target) ?? []), referrer]);
  const more = referrers.length > REFERRERS_NAMED ? ', and more' : '';
  return new FhirError(
    409,
    [...byTarget].map(([target, found]) => {
      const named = found.filter((referrer) => referrer.visible).map((referrer) => `${referrer.source} (${referrer.param})`);
      const hidden = found.length - named.length;
      const list = [...named, ...(hidden > 0 ? [`${hidden} resource${hidden === 1 ? '' : 's'} you may not see`] : [])].join(', ');
      return {
        code: 'conflict',
        diagnostics: `Unable to delete ${target} because at least one resource has a reference to this resource: ${list}${more}. Delete them or remove their references first (in the same transaction if need be)`,
      };
    }),
  );
}

/**
 * 422 (R4 http.html: a server's business rule), issue `not-found` (the code for a reference whose target
 * is not there), one issue per reference naming it and where it is, as HAPI's "Resource Patient/123 not
 * found, specified in path: Observation.subject" does.
 */
export function unknownTargets(missing: LocalReference[]): FhirError {
  return new FhirError(
    422,
    missing.map(({ path, reference, target }) => ({
      code: 'not-found',
      diagnostics: `Resource ${target} not found, specified in path: ${path} (reference '${reference}'); a reference to this server must name a resource it holds`,
      expression: [path],
    })),
  );
}

const RELATIVE = /^([A-Z][A-Za-z]+)\/([^/]+)(?:\/_history\/([^/]+))?$/;

/** Reference's own elements (R4 datatypes.html#Reference): an object with any other is another type. */
const REFERENCE_KEYS = new Set(['id', 'extension', 'reference', 'type', 'identifier', 'display', '_reference', '_type', '_display']);

/**
 * Elements named `reference` whose value is a uri, not a Reference (Immunization.education.reference;
 * Expression.reference and DetectedIssue.reference are told apart by their other elements).
 */
const URI_NAMED_REFERENCE = new Set(['Immunization.education']);

/**
 * Every Reference of `resource` (an object whose `reference` is a string, of Reference's elements only),
 * contained resources' included, sorted into references to this server and malformed ones. Left alone:
 * `#id` (contained), absolute URLs of other servers, other URIs, identifier-only references, and the
 * entries of a Bundle stored as a resource (a document's references resolve within it).
 */
export function referencesOf(resource: Resource, baseUrl: string): { local: LocalReference[]; invalid: Issue[] } {
  const local: LocalReference[] = [];
  const invalid: Issue[] = [];
  // Where the walk is, as steps from the resource: a key, or an array index. Paths are written out only for the
  // references found (a write walks every element of its resource; most are not references).
  const steps: Array<string | number> = [];
  const pathOf = (): string => steps.reduce<string>((path, step) => (typeof step === 'number' ? `${path}[${step}]` : `${path}.${step}`), resource.resourceType);
  /** The element's path without indices, from the resource it is in (`elementType`, contained ones begin at `from`). */
  const elementPathOf = (elementType: string, from: number): string => {
    let path = elementType;
    for (let i = from; i < steps.length; i++) if (typeof steps[i] === 'string') path += `.${steps[i]}`;
    return path;
  };
  const visit = (value: unknown, elementType: string, elementFrom: number): void => {
    if (Array.isArray(value)) {
      for (let index = 0; index < value.length; index++) {
        steps.push(index);
        visit(value[index], elementType, elementFrom);
        steps.pop();
      }
      return;
    }
    if (!value || typeof value !== 'object') return;
    const object = value as Record<string, unknown>;
    if (typeof object.resourceType === 'string' && steps.length > 0) {
      // A contained resource: its paths start from it.
      elementType = object.resourceType;
      elementFrom = steps.length;
    }
    if (typeof object.reference === 'string' && isReference(object, elementPathOf(elementType, elementFrom))) {
      sort(object.reference, pathOf());
    }
    for (const key in object) {
      if (key.charCodeAt(0) === 95 /* _ */ || key === 'div' || (key === 'entry' && object.resourceType === 'Bundle')) continue;
      const item = object[key];
      if (item && typeof item === 'object') {
        steps.push(key);
        visit(item, elementType, elementFrom);
        steps.pop();
      }
    }
  };
  const sort = (reference: string, path: string): void => {
    if (reference.startsWith('#')) return;
    if (/^urn:(uuid|oid):/i.test(reference)) {
      invalid.push({
        code: 'invalid',
        diagnostics: `${path}: '${reference}' names no entry of this transaction (no entry has it as fullUrl); a urn:uuid or urn:oid reference resolves only within a transaction Bundle`,
        expression: [path],
      });
      return;
    }
    const relative = relativeToBase(reference, baseUrl);
    if (relative === reference && /^[A-Za-z][A-Za-z0-9+.-]*:/.test(reference)) return; // another server's URL, or another URI
    const parts = RELATIVE.exec(relative);
    if (!parts || !isValidId(parts[2]!) || (parts[3] !== undefined && !isValidId(parts[3]))) {
      invalid.push({ code: 'invalid', diagnostics: `${path}: '${reference}' is not a reference: a relative one is Type/id (or Type/id/_history/version)`, expression: [path] });
      return;
    }
    const type = parts[1]!;
    if (isConformanceResourceType(type) && builtInDefinitions().find(type, parts[2]!)) return; // a built-in definition, not stored
    if (!isServedResourceType(type)) {
      invalid.push({ code: 'invalid', diagnostics: `${path}: '${reference}' names a ${type}, which is not a resource type this server holds`, expression: [path] });
      return;
    }
    local.push({ path, reference, target: `${type}/${parts[2]}` });
  };
  visit(resource, resource.resourceType, 0);
  return { local, invalid };
}

function isReference(object: Record<string, unknown>, elementPath: string): boolean {
  if (typeof object.resourceType === 'string' || URI_NAMED_REFERENCE.has(elementPath)) return false;
  return Object.keys(object).every((key) => REFERENCE_KEYS.has(key));
}
