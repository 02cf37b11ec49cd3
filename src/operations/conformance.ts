import { randomUUID } from 'node:crypto';
import type { Bundle, BundleEntry, BundleLink, Resource } from 'fhir/r4';
import { FhirError, operationOutcome, type Issue } from '../fhir/outcome.ts';
import { CONFORMANCE_RESOURCE_TYPES, isValidId } from '../fhir/resource-types.ts';
import { loadValidationContext, type ValidationContext } from '../fhir/validation/profile-validator.ts';
import type { Outcome } from '../router/context.ts';
import { DEFAULT_PAGE_SIZE, parseCount } from '../router/history.ts';
import { strictHandling } from '../router/prefer.ts';
import { FormParameters, UnsupportedBody, type FhirRequest } from '../router/request.ts';

type Conformance = Resource & { id: string; url?: string; name?: string; version?: string };

/**
 * The search parameters of the conformance types (R4 `conformance-*` SearchParameters, shared by
 * CodeSystem, ValueSet and StructureDefinition), as declared in capability-statement.json.
 */
export const CONFORMANCE_SEARCH_PARAMS = [
  { name: '_id', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/Resource-id' },
  { name: 'name', type: 'string', definition: 'http://hl7.org/fhir/SearchParameter/conformance-name' },
  { name: 'url', type: 'uri', definition: 'http://hl7.org/fhir/SearchParameter/conformance-url' },
  { name: 'version', type: 'token', definition: 'http://hl7.org/fhir/SearchParameter/conformance-version' },
] as const;

const RESULT_PARAMETERS = new Set(['_count', '_offset', '_summary', '_total', '_format', '_pretty']);

/**
 * ValueSets, CodeSystems and StructureDefinitions served read-only from what the validator and the
 * terminology service loaded (base R4 and the French definitions), not from the database. Each type's
 * resources are indexed by id; a resource without an id (or whose id another already took) gets one
 * from its canonical URL.
 */
export class ConformanceCatalogue {
  private readonly byType = new Map<string, { list: Conformance[]; byId: Map<string, Conformance> }>();

  constructor(context: ValidationContext) {
    const sources: Record<string, readonly object[]> = {
      ValueSet: context.terminology.valueSetList(),
      CodeSystem: context.terminology.codeSystemList(),
      StructureDefinition: context.registry.all(),
    };
    for (const type of CONFORMANCE_RESOURCE_TYPES) {
      const byId = new Map<string, Conformance>();
      for (const source of sources[type] ?? []) {
        const resource = source as Conformance;
        let id = typeof resource.id === 'string' && isValidId(resource.id) ? resource.id : idFromUrl(resource.url);
        for (let n = 2; byId.has(id); n++) id = `${idFromUrl(resource.url)}-${n}`.slice(-64);
        byId.set(id, id === resource.id ? resource : ({ ...resource, id } as Conformance));
      }
      this.byType.set(type, { list: [...byId.values()], byId });
    }
  }

  read(type: string, id: string): Conformance {
    const resource = this.byType.get(type)?.byId.get(id);
    if (!resource) throw FhirError.notFound(`${type}/${id} is not known`);
    return resource;
  }

  /** Search by `_id`, `url`, `name` and `version` (comma: OR; repeated: AND), paged with `_count` and `_offset`. */
  search(type: string, request: FhirRequest): Bundle {
    const pairs = searchPairs(request);
    const strict = strictHandling(request.prefer);
    let matches = this.byType.get(type)?.list ?? [];
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
      const wanted = values.map(normalise);
      return (resource) => {
        const name = normalise(resource.name ?? '');
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

/** R4 string search: case- and accent-insensitive. */
function normalise(text: string): string {
  return text.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

function unescape(value: string): string {
  return value.replace(/\\([,$|\\])/g, '$1');
}

function searchPairs(request: FhirRequest): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(request.query)) for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, v]);
  if (request.body instanceof FormParameters) pairs.push(...request.body.entries);
  else if (request.body instanceof UnsupportedBody) {
    throw new FhirError(415, [{ code: 'not-supported', diagnostics: `A search is posted as application/x-www-form-urlencoded, not '${request.body.mediaType}'` }]);
  } else if (request.body !== undefined) {
    throw FhirError.badRequest('A search is posted as application/x-www-form-urlencoded parameters, not as a resource');
  }
  return pairs;
}

function idFromUrl(url: string | undefined): string {
  const last = (url ?? '').split('|')[0]!.split('/').pop() ?? '';
  const id = last.replace(/[^A-Za-z0-9\-.]/g, '-').slice(0, 64);
  return id.length > 0 ? id : randomUUID();
}

let shared: ConformanceCatalogue | undefined;

/** The catalogue over the shared validation context (the one the server's validator uses). */
export function conformanceCatalogue(): ConformanceCatalogue {
  return (shared ??= new ConformanceCatalogue(loadValidationContext()));
}

/** read and search-type on a conformance type, for the router. */
export function conformanceRead(resourceType: string, id: string): Outcome {
  return { status: 200, resource: conformanceCatalogue().read(resourceType, id) };
}

export function conformanceSearch(resourceType: string, request: FhirRequest): Outcome {
  return { status: 200, resource: conformanceCatalogue().search(resourceType, request) };
}
