import type { Resource } from 'fhir/r4';
import { parseDateRange } from './dates.ts';
import IMPLICIT_CODE_SYSTEMS_JSON from './implicit-code-systems.json' with { type: 'json' };
import { normalizeString } from './normalize.ts';
import { isDateComposite, isQuantityComposite, type PathNode, type SearchParamDefinition, type SearchParameterRegistry } from './registry.ts';
import type { IdentifierHash } from './identifier-hash.ts';
import { uriRows } from './types/uri.ts';
import { toCanonical, UCUM_SYSTEM } from './ucum.ts';
import type { IndexRows, IndexTable, ReferenceValue } from './index-rows.ts';

export type { IndexRows, IndexTable, ReferenceValue } from './index-rows.ts';

const IMPLICIT_CODE_SYSTEMS: Record<string, string> = IMPLICIT_CODE_SYSTEMS_JSON;


const TABLE_NAMES = Object.keys(emptyRows()) as IndexTable[];

/** Where a reference points: a local `Type/id`, or a URL (absolute, canonical, urn), and/or a business identifier. */

export interface ExtractOptions {
  /**
   * The server's own base URL (`https://dmp.example.fr/fhir`) as the writer reached it: an absolute
   * reference below it is indexed as the local `Type/id` it stands for (R4 search.html#reference).
   */
  baseUrl?: string;
  /**
   * With encryption at rest, the store's keyed hash of identifiers (identifier-hash.ts): the values of a token
   * parameter on identifiers, and the identifiers of references, are indexed hashed.
   */
  identifierHash?: IdentifierHash;
}

export function emptyRows(): IndexRows {
  return { token: [], string: [], date: [], reference: [], uri: [], number: [], quantity: [], composite: [], position: [] };
}

/**
 * Evaluates every search parameter's FHIRPath expression on a resource and turns what it finds into
 * index rows, by the type of the values found (a CodeableConcept gives its codings, a Period its range…).
 * `_id` and `_lastUpdated` are not indexed here: they are columns of the resource table.
 */
export function extractIndexRows(resource: Resource, registry: SearchParameterRegistry, options: ExtractOptions = {}): IndexRows {
  const rows = emptyRows();
  for (const param of registry.forType(resource.resourceType)) {
    if (!param.evaluate || param.code === '_id' || param.code === '_lastUpdated') continue;
    let nodes: PathNode[];
    try {
      nodes = param.evaluate(resource);
    } catch {
      continue; // An expression that cannot apply to this instance indexes nothing.
    }
    if (param.type === 'composite') {
      for (const node of nodes) addComposite(rows, param, node, registry, options.baseUrl);
      continue;
    }
    for (const node of nodes) addValue(rows, param, node, options);
  }
  return dedupe(rows);
}

/** Values indexed as they are (no encryption at rest, or a parameter not on identifiers): one function, not one per value. */
const unhashed = (value: string): string => value;

function addValue(rows: IndexRows, param: SearchParamDefinition, node: PathNode, { baseUrl, identifierHash }: ExtractOptions): void {
  const code = param.code;
  // Hashed for every value of a parameter on identifiers, whatever node carries it, as a search hashes every value it compares.
  const hashed = identifierHash && param.identifier ? identifierHash : unhashed;
  const type = node.fhirNodeDataType ?? typeof node.data;
  const data = node.data as any;
  if (data === null || data === undefined) return;
  switch (param.type) {
    case 'token':
      for (const token of tokensOf(type, data, implicitSystem(node))) {
        rows.token.push({ param: code, system: token.system, code: typeof token.code === 'string' ? hashed(token.code) : token.code, text: token.text === null ? null : normalizeString(token.text) });
      }
      if (type === 'Identifier' && typeof data.value === 'string') {
        // :of-type needs the type's system and code together with the value: three parts the token
        // table cannot hold in one row, so they go to the composite table under a parameter of their own.
        for (const coding of data.type?.coding ?? []) {
          if (typeof coding.code === 'string') rows.composite.push({ param: ofTypeParam(code), key: ofTypeKey(coding.system ?? '', coding.code, hashed(data.value)) });
        }
      }
      return;
    case 'string':
      for (const value of stringsOf(type, data)) rows.string.push({ param: code, value, normalized: normalizeString(value) });
      return;
    case 'date': {
      const range = dateRangeOf(type, data);
      if (range) rows.date.push({ param: code, low: range.low, high: range.high, compositeKey: null });
      return;
    }
    case 'reference': {
      const reference = referenceOf(type, data, baseUrl);
      if (reference) {
        const { targetType, targetId, url, identifierSystem, identifierValue } = reference;
        const value = typeof identifierValue === 'string' && identifierHash ? identifierHash(identifierValue) : identifierValue;
        rows.reference.push({ param: code, targetType, targetId, url, identifierSystem, identifierValue: value });
      }
      return;
    }
    case 'uri':
      uriRows(code, data, rows.uri);
      return;
    case 'number': {
      // fhirpath.js wraps integers and decimals it types itself; asStr keeps the value's written precision.
      const value = typeof data === 'number' ? String(data) : typeof data.asStr === 'string' ? data.asStr : undefined;
      if (value !== undefined) rows.number.push({ param: code, value });
      return;
    }
    case 'quantity':
      addQuantity(rows, code, data, null);
      return;
    case 'special': {
      // `near`: Location.position, a WGS84 point (decimal degrees); one outside the earth's range indexes nothing.
      const latitude = coordinate(data?.latitude);
      const longitude = coordinate(data?.longitude);
      if (latitude !== undefined && longitude !== undefined && Math.abs(latitude) <= 90 && Math.abs(longitude) <= 180) rows.position.push({ param: code, latitude, longitude });
      return;
    }
  }
}

function coordinate(value: unknown): number | undefined {
  const number = typeof value === 'number' ? value : typeof (value as { value?: unknown } | null)?.value === 'number' ? (value as { value: number }).value : undefined;
  return number !== undefined && Number.isFinite(number) ? number : undefined;
}

function addQuantity(rows: IndexRows, param: string, data: any, compositeKey: string | null): void {
  if (typeof data !== 'object' || typeof data.value !== 'number') return;
  const value = String(data.value);
  const canonical = data.system === UCUM_SYSTEM && typeof data.code === 'string' ? toCanonical(value, data.code) : undefined;
  rows.quantity.push({
    param,
    value,
    system: data.system ?? null,
    code: data.code ?? null,
    unit: data.unit ?? null,
    canonicalValue: canonical?.value ?? null,
    canonicalUnit: canonical?.unit ?? null,
    compositeKey,
  });
}

/** The composite-table parameter holding a token parameter's identifier types, for `:of-type`. */
export const ofTypeParam = (code: string) => `${code}:of-type`;

/** One identifier type coding with the identifier's value, as `:of-type` compares them (JSON: no separator to escape). */
export const ofTypeKey = (typeSystem: string, typeCode: string, value: string) => JSON.stringify([typeSystem, typeCode, value]);

type Token = { system: string | null; code: string | null; text: string | null };

/**
 * A `code` element has no system in the instance, but its required binding gives it one (R4
 * search.html#token: `gender=http://hl7.org/fhir/administrative-gender|male` must find it).
 */
function implicitSystem(node: PathNode): string | undefined {
  if (node.fhirNodeDataType !== 'code') return undefined;
  const located = node as PathNode & { parentResNode?: { path?: string }; propName?: string };
  return IMPLICIT_CODE_SYSTEMS[`${located.parentResNode?.path}.${located.propName}`];
}

function tokensOf(type: string, data: any, implicit?: string): Token[] {
  switch (type) {
    case 'Coding':
      return [{ system: data.system ?? null, code: data.code ?? null, text: data.display ?? null }];
    case 'CodeableConcept': {
      const codings: Token[] = (data.coding ?? []).map((c: any) => ({ system: c.system ?? null, code: c.code ?? null, text: c.display ?? data.text ?? null }));
      if (data.text) codings.push({ system: null, code: null, text: data.text });
      return codings;
    }
    case 'Identifier':
      return [{ system: data.system ?? null, code: data.value ?? null, text: data.type?.text ?? null }];
    case 'ContactPoint':
      return [{ system: data.system ?? null, code: data.value ?? null, text: null }];
    case 'boolean':
      return [{ system: null, code: String(data), text: null }];
    default:
      return typeof data === 'string' ? [{ system: implicit ?? null, code: data, text: null }] : [];
  }
}

function stringsOf(type: string, data: any): string[] {
  switch (type) {
    case 'HumanName':
      return [data.text, data.family, ...(data.given ?? []), ...(data.prefix ?? []), ...(data.suffix ?? [])].filter(isText);
    case 'Address':
      return [data.text, ...(data.line ?? []), data.city, data.district, data.state, data.postalCode, data.country].filter(isText);
    default:
      return isText(data) ? [data] : [];
  }
}

const isText = (value: unknown): value is string => typeof value === 'string' && value.length > 0;

function dateRangeOf(type: string, data: any): { low: string; high: string } | undefined {
  if (type === 'Period') {
    const low = typeof data.start === 'string' ? parseDateRange(data.start)?.low.toISOString() : '-infinity';
    const high = typeof data.end === 'string' ? parseDateRange(data.end)?.high.toISOString() : 'infinity';
    return low && high ? { low, high } : undefined;
  }
  if (typeof data !== 'string') return undefined;
  const range = parseDateRange(data);
  return range ? { low: range.low.toISOString(), high: range.high.toISOString() } : undefined;
}

const RELATIVE_REFERENCE = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]{1,64})?$/;

/**
 * An absolute reference below the server's own base is the same as a relative one (R4
 * search.html#reference): `https://dmp.example.fr/fhir/Patient/123` → `Patient/123`. Anything else is kept.
 */
export function relativeToBase(reference: string, baseUrl: string | undefined): string {
  return baseUrl && reference.startsWith(`${baseUrl}/`) ? reference.slice(baseUrl.length + 1) : reference;
}

/** The reference row of a Reference (`type` its FHIR type) or of a canonical/uri string; undefined when it indexes nothing. */
export function referenceOf(type: string, data: any, baseUrl: string | undefined): ReferenceValue | undefined {
  const empty: ReferenceValue = { targetType: null, targetId: null, url: null, identifierSystem: null, identifierValue: null };
  if (typeof data === 'string') return { ...empty, url: data }; // canonical or uri
  if (type !== 'Reference' || typeof data !== 'object') return undefined;
  const identifier = data.identifier ? { identifierSystem: data.identifier.system ?? null, identifierValue: data.identifier.value ?? null } : {};
  const reference: unknown = data.reference;
  if (typeof reference !== 'string') return data.identifier ? { ...empty, ...identifier } : undefined;
  if (reference.startsWith('#')) return undefined; // contained: not a searchable target
  const relative = RELATIVE_REFERENCE.exec(relativeToBase(reference, baseUrl));
  if (relative) return { ...empty, targetType: relative[1]!, targetId: relative[2]!, ...identifier };
  return { ...empty, url: reference, ...identifier };
}

/**
 * A composite's index rows. Most are compared whole: composite rows, one per key. One whose last component
 * is a quantity is compared by that quantity's prefix and units (`code$gt100|system|unit`), so its quantity
 * goes to the quantity table, once per key of its other components (`isQuantityComposite`).
 */
function addComposite(rows: IndexRows, param: SearchParamDefinition, node: PathNode, registry: SearchParameterRegistry, baseUrl: string | undefined): void {
  const components = param.components ?? [];
  if (isDateComposite(param)) {
    // Compared by the date's prefix and range (`code$ge2020`): a date row per key of the other components.
    const [date] = components[components.length - 1]!.evaluate(node);
    const range = date && dateRangeOf(date.fhirNodeDataType ?? typeof date.data, date.data);
    if (!range) return;
    for (const key of compositeKeys(components.slice(0, -1), node, registry, baseUrl)) rows.date.push({ param: param.code, low: range.low, high: range.high, compositeKey: key });
    return;
  }
  if (!isQuantityComposite(param)) {
    for (const key of compositeKeys(components, node, registry, baseUrl)) rows.composite.push({ param: param.code, key });
    return;
  }
  const [quantity] = components[components.length - 1]!.evaluate(node);
  if (!quantity) return;
  for (const key of compositeKeys(components.slice(0, -1), node, registry, baseUrl)) addQuantity(rows, param.code, quantity.data, key);
}

/**
 * A composite value as keys (R4 search.html#composite): one per way a search may write it (a token
 * component as `code`, `system|code` or `|code`), each the JSON array of its component texts, so a `$`
 * or `|` inside a value cannot shift the components. parse.ts builds the same keys from a search value.
 */
function compositeKeys(components: NonNullable<SearchParamDefinition['components']>, node: PathNode, registry: SearchParameterRegistry, baseUrl: string | undefined): string[] {
  let keys: string[][] = [[]];
  for (const component of components) {
    const definition = registry.definitionByUrl(component.definition);
    const [value] = component.evaluate(node);
    if (!definition || !value) return [];
    const variants = componentTexts(definition.type, value, baseUrl);
    if (variants.length === 0) return [];
    keys = keys.flatMap((key) => variants.map((variant) => [...key, variant]));
  }
  return keys.map(compositeKey);
}

export const compositeKey = (components: string[]) => JSON.stringify(components);

function componentTexts(type: string, node: PathNode, baseUrl: string | undefined): string[] {
  const data = node.data as any;
  if (type === 'reference') {
    const reference = referenceOf(node.fhirNodeDataType ?? '', data, baseUrl);
    const text = reference?.targetType ? `${reference.targetType}/${reference.targetId}` : reference?.url;
    return text ? [text] : [];
  }
  if (type === 'token') {
    const token = tokensOf(node.fhirNodeDataType ?? typeof data, data, implicitSystem(node))[0];
    if (!token?.code) return [];
    return [token.code, token.system === null ? `|${token.code}` : `${token.system}|${token.code}`];
  }
  return typeof data === 'string' || typeof data === 'number' ? [String(data)] : [];
}

/**
 * Drops repeated rows (two paths reaching one value). A table usually holds a few rows per resource, all
 * built with the same fields in the same order: comparing them pairwise is then cheaper than keying each
 * one; past a few dozen, pairs grow with the square (30,000 identifiers took seconds), keys do not.
 */
function dedupe(rows: IndexRows): IndexRows {
  for (const table of TABLE_NAMES) {
    const list = rows[table] as unknown as Array<Record<string, string | null>>;
    if (list.length < 2) continue;
    (rows[table] as unknown[]) = list.length <= PAIRWISE_DEDUPE_MAX ? withoutRepeatsPairwise(list) : withoutRepeatsKeyed(list);
  }
  return rows;
}

const PAIRWISE_DEDUPE_MAX = 32;

function withoutRepeatsPairwise(list: Array<Record<string, string | null>>): Array<Record<string, string | null>> {
  return list.filter((row, index) => {
    for (let earlier = 0; earlier < index; earlier++) if (sameRow(list[earlier]!, row)) return false;
    return true;
  });
}

function withoutRepeatsKeyed(list: Array<Record<string, string | null>>): Array<Record<string, string | null>> {
  const seen = new Set<string>();
  return list.filter((row) => {
    const key = JSON.stringify(Object.values(row));
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function sameRow(a: Record<string, string | null>, b: Record<string, string | null>): boolean {
  for (const field in a) if (a[field] !== b[field]) return false;
  return true;
}
