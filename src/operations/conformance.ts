import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, BundleLink } from 'fhir/r4';
import { FhirError, operationOutcome, type Issue } from '../fhir/outcome.ts';
import { resourceObject, type ResponseBundle, type ResponseResource } from '../fhir/resource-text.ts';
import { builtInDefinitions, type BuiltInDefinition, type BuiltInDefinitions } from '../fhir/built-in-definitions.ts';
import { CONFORMANCE_RESOURCE_TYPES, isConformanceResourceType } from '../fhir/resource-types.ts';
import type { CodeSystemResource, ValueSetResource } from '../fhir/terminology/terminology-service.ts';
import type { DefinitionRegistry, StructureDefinition } from '../fhir/validation/definitions.ts';
import { loadValidationContext } from '../fhir/validation/profile-validator.ts';
import { generateSnapshot } from '../fhir/validation/snapshot-generator.ts';
import type { Outcome } from '../router/context.ts';
import { DEFAULT_PAGE_SIZE, parseCount } from '../router/history.ts';
import type { Interaction } from '../router/interaction.ts';
import { strictHandling } from '../router/prefer.ts';
import type { FhirRequest } from '../router/request.ts';
import { searchPairs } from '../router/search.ts';
import { parseSearch } from '../search/parse.ts';
import { normalizeString } from '../search/normalize.ts';
import type { SearchParameterRegistry } from '../search/registry.ts';
import type { ResourceStore } from '../store/resource-store.ts';

type Conformance = BuiltInDefinition;

/**
 * The search parameters the built-in conformance resources answer to (R4 `conformance-*` SearchParameters,
 * shared by CodeSystem, ValueSet and StructureDefinition). Stored ones answer to every parameter of their type.
 */
export const CONFORMANCE_SEARCH_PARAMS = [
  { name: '_id', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/Resource-id' },
  { name: 'name', type: 'string', definition: 'http://hl7.org/fhir/SearchParameter/conformance-name' },
  { name: 'url', type: 'uri', definition: 'http://hl7.org/fhir/SearchParameter/conformance-url' },
  { name: 'version', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/conformance-version' },
] as const;

const RESULT_PARAMETERS = new Set(['_count', '_offset', '_summary', '_total', '_format', '_pretty']);

/** Search over the built-in definitions (fhir/built-in-definitions.ts), as the router serves them beside the stored ones. */
export class ConformanceCatalogue {
  constructor(private readonly definitions: BuiltInDefinitions) {}

  find(type: string, id: string): Conformance | undefined {
    return this.definitions.find(type, id);
  }

  /** The built-in resources matching every parameter of `pairs`, or undefined when one is not `_id`, `url`, `name` or `version`. */
  matching(type: string, pairs: ReadonlyArray<[string, string]>): readonly Conformance[] | undefined {
    let matches: readonly Conformance[] = this.definitions.list(type);
    for (const [name, value] of pairs) {
      const [code, modifier] = name.split(':') as [string, string | undefined];
      if (RESULT_PARAMETERS.has(code) || code === '_cursor') continue;
      const matcher = valueMatcher(code, modifier, value.split(',').map(unescape));
      if (!matcher) return undefined;
      matches = matches.filter(matcher);
    }
    return matches;
  }

  /** Search by `_id`, `url`, `name` and `version` (comma: OR; repeated: AND), paged with `_count` and `_offset`. */
  search(type: string, request: FhirRequest): Bundle {
    const pairs = searchPairs(request).filter(([name]) => name !== '_cursor');
    const strict = strictHandling(request.prefer);
    let matches: readonly Conformance[] = this.definitions.list(type);
    let count = DEFAULT_PAGE_SIZE;
    let offset = 0;
    let summaryCount = false;
    const ignored: Issue[] = [];
    for (const [name, value] of pairs) {
      const [code, modifier] = name.split(':') as [string, string | undefined];
      if (RESULT_PARAMETERS.has(code)) {
        if (code === '_count') count = parseCount(value);
        else if (code === '_offset') {
          if (!/^\d{1,9}$/.test(value)) throw FhirError.badRequest(`_offset must be a non-negative integer, not '${value}'`, ['_offset']);
          offset = Number(value);
        } else if (code === '_summary') {
          summaryCount = value === 'count';
        }
        continue;
      }
      const matcher = valueMatcher(code, modifier, value.split(',').map(unescape));
      if (!matcher) {
        const reason = `${type} is searchable here by ${CONFORMANCE_SEARCH_PARAMS.map((p) => p.name).join(', ')}${modifier ? ` (modifier :${modifier} is not supported)` : ''}`;
        if (strict) throw FhirError.badRequest(`Unknown search parameter ${name}: ${reason}`, [name]);
        ignored.push({ severity: 'warning', code: 'not-supported', diagnostics: `Ignored ${name}: ${reason}`, expression: [name] });
        continue;
      }
      matches = matches.filter(matcher);
    }
    const page = summaryCount ? [] : matches.slice(offset, offset + count);
    const base = `${request.baseUrl}/${type}`;
    const query = (at: number) => {
      const params = new URLSearchParams(pairs.filter(([name]) => name !== '_offset' && name !== '_format' && name !== '_pretty'));
      if (at > 0) params.set('_offset', String(at));
      const text = params.toString();
      return text ? `${base}?${text}` : base;
    };
    const link: BundleLink[] = [{ relation: 'self', url: query(offset) }];
    if (!summaryCount) {
      link.push({ relation: 'first', url: query(0) });
      if (offset > 0) link.push({ relation: 'previous', url: query(Math.max(0, offset - count)) });
      if (count > 0 && offset + count < matches.length) link.push({ relation: 'next', url: query(offset + count) });
    }
    const entry: BundleEntry[] = page.map((resource) => ({ fullUrl: `${base}/${resource.id}`, resource, search: { mode: 'match' } }));
    if (ignored.length > 0) entry.push({ resource: operationOutcome(ignored), search: { mode: 'outcome' } });
    return {
      resourceType: 'Bundle',
      id: randomUUID(),
      meta: { lastUpdated: new Date().toISOString() },
      type: 'searchset',
      total: matches.length,
      link,
      ...(entry.length > 0 ? { entry } : {}),
    };
  }
}

/** A filter for one search parameter (values ORed), or undefined for an unknown parameter or modifier. */
function valueMatcher(code: string, modifier: string | undefined, values: string[]): ((resource: Conformance) => boolean) | undefined {
  switch (code) {
    case '_id':
      if (modifier) return undefined;
      return (resource) => values.includes(resource.id);
    case 'url':
      if (modifier && modifier !== 'below') return undefined;
      // A canonical may be searched with its version: `url|version`.
      return (resource) => values.some((value) => {
        const [url, version] = value.split('|') as [string, string | undefined];
        const urlMatches = modifier === 'below' ? !!resource.url?.startsWith(url) : resource.url === url;
        return urlMatches && (version === undefined || resource.version === version);
      });
    case 'name': {
      if (modifier && modifier !== 'exact' && modifier !== 'contains') return undefined;
      if (modifier === 'exact') return (resource) => values.includes(resource.name ?? '\u0000');
      const wanted = values.map((value) => normalizeString(value));
      return (resource) => {
        const name = normalizeString(resource.name ?? '');
        return wanted.some((w) => (modifier === 'contains' ? name.includes(w) : name.startsWith(w)));
      };
    }
    case 'version':
      if (modifier) return undefined;
      return (resource) => resource.version !== undefined && values.includes(resource.version);
    default:
      return undefined;
  }
}

function unescape(value: string): string {
  return value.replace(/\\([,$|\\])/g, '$1');
}

let shared: ConformanceCatalogue | undefined;

/** The catalogue of built-in definitions over the shared validation context (the one the server's validator uses). */
export function conformanceCatalogue(): ConformanceCatalogue {
  return (shared ??= new ConformanceCatalogue(builtInDefinitions()));
}

type Of<K extends Interaction['kind']> = Extract<Interaction, { kind: K }>;

/** A built-in definition is read-only: its id is never taken by a stored resource, so that reads name one thing. */
export function refuseBuiltInWrite(interaction: Interaction): void {
  if (interaction.kind !== 'update' && interaction.kind !== 'patch' && interaction.kind !== 'delete' && interaction.kind !== 'history-instance' && interaction.kind !== 'vread') return;
  if (!isConformanceResourceType(interaction.resourceType) || !conformanceCatalogue().find(interaction.resourceType, interaction.id)) return;
  const target = `${interaction.resourceType}/${interaction.id}`;
  if (interaction.kind === 'history-instance' || interaction.kind === 'vread') throw FhirError.notFound(`${target} is a built-in definition: it has no stored versions (read it as ${target})`);
  throw FhirError.methodNotAllowed(`${target} is a built-in definition, read-only: store yours under another id (POST creates one)`, ['GET']);
}

/** read of a conformance type: the built-in resource of that id, else the stored one. */
export function builtInRead(interaction: Of<'read'>): Outcome | undefined {
  const resource = conformanceCatalogue().find(interaction.resourceType, interaction.id);
  return resource && { status: 200, resource };
}

/**
 * search-type on a conformance type: the stored resources (the search engine, every parameter of the type),
 * then the built-in ones, when the search uses only `_id`, `url`, `name` and `version` (the ones built-in
 * definitions answer to; any other parameter searches the stored ones only). Stored ones come first, paged
 * by the engine's cursor; the page that ends them is filled with built-in ones, and the built-in pages after
 * it are paged by `_offset` into the built-in list.
 */
export async function searchWithBuiltIns(type: string, request: FhirRequest, storedSearch: (pairs: Array<[string, string]>) => Promise<ResponseBundle>): Promise<Outcome> {
  const catalogue = conformanceCatalogue();
  const pairs = searchPairs(request);
  const builtIns = catalogue.matching(type, pairs);
  if (!builtIns) return { status: 200, resource: await storedSearch(pairs) };
  const withoutPaging = pairs.filter(([name]) => name !== '_offset' && name !== '_cursor' && name !== '_count' && name !== '_summary' && name !== '_total');
  if (pairs.some(([name]) => name === '_offset')) {
    // A page past the stored ones: built-in resources only, counted with the stored ones.
    const page = catalogue.search(type, request);
    const stored = await storedSearch([...withoutPaging, ['_summary', 'count'], ['_total', 'accurate']]);
    return { status: 200, resource: { ...page, total: (page.total ?? 0) + (stored.total ?? 0) } };
  }
  const stored = await storedSearch(pairs);
  const total = stored.total === undefined ? undefined : stored.total + builtIns.length;
  const summaryCount = pairs.some(([name, value]) => name === '_summary' && value === 'count');
  if (summaryCount || stored.link?.some((link) => link.relation === 'next')) return { status: 200, resource: { ...stored, ...(total === undefined ? {} : { total }) } };
  const countPair = pairs.find(([name]) => name === '_count');
  const count = countPair ? parseCount(countPair[1]) : DEFAULT_PAGE_SIZE;
  const storedMatches = (stored.entry ?? []).filter((entry) => entry.search?.mode === 'match').length;
  const room = Math.max(0, count - storedMatches);
  const base = `${request.baseUrl}/${type}`;
  const added = builtIns.slice(0, room).map((resource) => ({ fullUrl: `${base}/${resource.id}`, resource, search: { mode: 'match' as const } }));
  const link = [...(stored.link ?? [])];
  if (builtIns.length > room) {
    const params = new URLSearchParams(pairs.filter(([name]) => name !== '_cursor' && name !== '_format' && name !== '_pretty'));
    params.set('_offset', String(room));
    link.push({ relation: 'next', url: `${base}?${params.toString()}` });
  }
  const entry = [...(stored.entry ?? []), ...added];
  return { status: 200, resource: { ...stored, ...(total === undefined ? {} : { total }), link, ...(entry.length > 0 ? { entry } : {}) } };
}

/**
 * After a write of a StructureDefinition, ValueSet or CodeSystem: the validator and the terminology service use
 * what is stored from now on (`resource` undefined: deleted). Definitions are process-wide, as the validation
 * context is: a server process serves one store.
 */
export function noteStoredDefinition(type: string, id: string, resource: ResponseResource | undefined): void {
  if (!isConformanceResourceType(type)) return;
  const context = loadValidationContext();
  const key = `${type}/${id}`;
  const object = resource === undefined ? undefined : resourceObject(resource);
  if (type === 'StructureDefinition') context.registry.putStored(key, object && withSnapshot(object as StructureDefinition, context.registry));
  else context.terminology.putStored(key, object as CodeSystemResource | ValueSetResource | undefined);
}

/** The written resource's id, when an interaction wrote or deleted a definition the validator should see. */
export function noteDefinitionWrite(interaction: Interaction, outcome: Outcome): void {
  if (!('resourceType' in interaction) || !interaction.resourceType || !isConformanceResourceType(interaction.resourceType) || outcome.status >= 300) return;
  switch (interaction.kind) {
    case 'create':
    case 'update':
    case 'update-conditional':
    case 'patch': {
      const resource = outcome.resource && resourceObject(outcome.resource);
      if (resource?.id) noteStoredDefinition(interaction.resourceType, resource.id, outcome.resource);
      return;
    }
    case 'delete':
      noteStoredDefinition(interaction.resourceType, interaction.id, undefined);
      return;
    default:
      return;
  }
}

/**
 * At start: the StructureDefinitions, ValueSets and CodeSystems stored before, in effect for the validator and the
 * terminology operations as those written since. A store without any costs three empty searches (the validation
 * context is then left to be built after listening, as usual).
 */
export async function loadStoredDefinitions(store: ResourceStore, registry: SearchParameterRegistry): Promise<number> {
  let loaded = 0;
  for (const type of CONFORMANCE_RESOURCE_TYPES) {
    let cursor: string | undefined;
    do {
      const pairs: Array<[string, string]> = [['_count', '500'], ['_total', 'none'], ...(cursor ? [['_cursor', cursor] as [string, string]] : [])];
      const page = await store.search(parseSearch([type], pairs, registry, { strict: true, baseUrl: 'http://localhost' }), { baseUrl: 'http://localhost', path: type });
      for (const entry of page.entry ?? []) {
        const resource = entry.resource && resourceObject(entry.resource);
        if (entry.search?.mode !== 'match' || !resource?.id) continue;
        noteStoredDefinition(type, resource.id, resource);
        loaded++;
      }
      const next = page.link?.find((link) => link.relation === 'next')?.url;
      cursor = next === undefined ? undefined : (new URL(next).searchParams.get('_cursor') ?? undefined);
    } while (cursor !== undefined);
  }
  return loaded;
}

/**
 * A stored constraint without a snapshot gets one from its differential over its base (snapshot-generator.ts),
 * when the base is known and the generator can build it; otherwise it stays unusable for validation.
 */
function withSnapshot(definition: StructureDefinition, registry: DefinitionRegistry): StructureDefinition {
  if (definition.snapshot || !definition.differential || definition.derivation === 'specialization' || !definition.baseDefinition) return definition;
  const base = registry.get(definition.baseDefinition);
  if (!base?.snapshot) return definition;
  try {
    return { ...definition, snapshot: { element: generateSnapshot(definition, base, (type) => registry.baseOf(type)) } };
  } catch {
    return definition;
  }
}
