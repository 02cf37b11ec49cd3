import type { Filter, SearchRequest, TokenValue } from './types.ts';

/**
 * An identifier's value as the search index holds it when encryption is on: a keyed hash under the store's
 * index key (store/encryption.ts, DataKeys.hashIdentifier). The index then holds no INS, IPP or RPPS number in
 * clear, and a search still finds one by comparing the hash of the value it is given.
 *
 * Hashed: the token values of a parameter on Identifier elements only (`identifier` in registry.ts, also its
 * `:of-type` rows) and the identifier of every reference (`subject:identifier=…`). The identifier's system stays
 * in clear (`system|` searches it alone; it names an assigner, not a person), as does its type's text (`:text`).
 */
export type IdentifierHash = (value: string) => string;

/** `request` with every value compared to an identifier's hashed as the index holds it: the same search, on hashes. */
export function withHashedIdentifiers(request: SearchRequest, hash: IdentifierHash): SearchRequest {
  return request.filters.some(comparesIdentifiers) ? { ...request, filters: hashedFilters(request.filters, hash) } : request;
}

export function hashedFilters(filters: Filter[], hash: IdentifierHash): Filter[] {
  return filters.map((filter) => hashedFilter(filter, hash));
}

function hashedFilter(filter: Filter, hash: IdentifierHash): Filter {
  switch (filter.kind) {
    case 'token': {
      if (!filter.param.identifier) return filter;
      switch (filter.modifier) {
        case 'of-type':
          return { ...filter, values: filter.values.map((v) => ({ ...v, value: hash(v.value) })) };
        case 'in':
        case 'not-in':
        case 'above':
        case 'below':
          return { ...filter, values: filter.values.map((v) => ({ ...v, codes: v.codes.map(hash) })) };
        default:
          // `:text` compares the type's text, in clear: its values have no code.
          return { ...filter, values: filter.values.map((v) => hashedToken(v, hash)) };
      }
    }
    case 'reference':
      return filter.modifier === 'identifier' ? { ...filter, identifiers: (filter.identifiers ?? []).map((v) => hashedToken(v, hash)) } : filter;
    case 'chain':
      return { ...filter, targets: filter.targets.map((target) => ({ ...target, inner: hashedFilter(target.inner, hash) })) };
    case 'has':
      return { ...filter, inner: hashedFilter(filter.inner, hash) };
    default:
      return filter;
  }
}

function hashedToken<T extends TokenValue>(value: T, hash: IdentifierHash): T {
  return value.code === undefined ? value : { ...value, code: hash(value.code) };
}

/** Whether a filter compares an identifier's value somewhere (most searches do not: they are left as they are). */
function comparesIdentifiers(filter: Filter): boolean {
  switch (filter.kind) {
    case 'token':
      return filter.param.identifier === true;
    case 'reference':
      return filter.modifier === 'identifier';
    case 'chain':
      return filter.targets.some((target) => comparesIdentifiers(target.inner));
    case 'has':
      return comparesIdentifiers(filter.inner);
    default:
      return false;
  }
}
