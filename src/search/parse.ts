import { unstorableCharacter } from '../fhir/input-limits.ts';
import { FhirError } from '../fhir/outcome.ts';
import { isServedResourceType } from '../fhir/resource-types.ts';
import { loadValidationContext } from '../fhir/validation/profile-validator.ts';
import { DEFAULT_PAGE_SIZE, parseCount } from '../router/history.ts';
import { parseDateRange, type DateRange } from './dates.ts';
import { isDateComposite, isQuantityComposite, type SearchParamDefinition, type SearchParameterRegistry } from './registry.ts';
import { halfUnitOfLastDigit } from './decimal.ts';
import { compositeKey, relativeToBase } from './extract.ts';
import type { Filter, IncludeRule, Prefix, QuantityValue, ReferenceValue, SearchRequest, SortRule, SummaryMode, TokenValue, TotalMode } from './types.ts';
import { uriFilter, URI_MODIFIERS } from './types/uri.ts';
import { toCanonical, UCUM_SYSTEM } from './ucum.ts';

/** Parameters that shape the result rather than select resources (R4 search.html#return). */
const RESULT_PARAMETERS = new Set(['_sort', '_count', '_total', '_summary', '_elements', '_include', '_revinclude', '_cursor', '_type']);
/** Handled by the HTTP layer, never part of a search. */
const TRANSPORT_PARAMETERS = new Set(['_format', '_pretty']);
/** Defined by the spec, not implemented here: ignored with a warning, or 400 under `handling=strict`. */
const UNSUPPORTED = new Set(['_text', '_content', '_query', '_filter', '_list', '_contained', '_containedType', '_at', '_since']);

const PREFIXES: ReadonlySet<string> = new Set(['eq', 'ne', 'gt', 'lt', 'ge', 'le', 'sa', 'eb', 'ap']);
const NUMBER = /^[+-]?(\d+(\.\d+)?|\.\d+)([eE][+-]?\d+)?$/;

export interface ParseOptions {
  /** `Prefer: handling=strict`: unknown parameters are errors rather than ignored. */
  strict: boolean;
  /** The server's own base URL, so absolute references to this server search as local ones. */
  baseUrl: string;
}

/**
 * Turns query parameters into a typed SearchRequest before any SQL exists. Every value is checked
 * here; a bad one is a 400 OperationOutcome naming the parameter.
 */
export function parseSearch(
  resourceTypes: string[],
  params: Array<[string, string]>,
  registry: SearchParameterRegistry,
  options: ParseOptions,
): SearchRequest {
  const request: SearchRequest = { resourceTypes, filters: [], sort: [], count: DEFAULT_PAGE_SIZE, include: [], revinclude: [], applied: [], ignored: [] };
  const ignore = (name: string, reason: string) => {
    if (options.strict) throw FhirError.badRequest(`Search parameter ${name}: ${reason}`, [name], 'not-supported');
    request.ignored.push({ name, reason });
  };
  const singleType = resourceTypes.length === 1 ? resourceTypes[0]! : undefined;

  for (const [name, value] of params) {
    const problem = unstorableCharacter(name) ?? unstorableCharacter(value);
    if (problem) throw FhirError.badRequest(`Search parameter ${JSON.stringify(name)} contains ${problem}`, [name]);
    const base = name.split(':')[0]!;
    if (TRANSPORT_PARAMETERS.has(base)) continue;
    if (UNSUPPORTED.has(base)) {
      ignore(name, 'not supported by this server');
      continue;
    }
    if (RESULT_PARAMETERS.has(base)) {
      parseResultParameter(request, name, value, registry, singleType);
      if (name !== '_cursor' && name !== '_type') request.applied.push([name, value]);
      continue;
    }
    if (!singleType) {
      // System search: only the parameters every resource has.
      if (!['_id', '_lastUpdated', '_tag', '_profile', '_security', '_source'].includes(base)) {
        ignore(name, 'a system-level search supports only _id, _lastUpdated, _tag, _profile, _security and _source');
        continue;
      }
    }
    const filter = parseFilter(singleType ?? 'Patient', name, value, registry, options, ignore);
    if (filter) {
      request.filters.push(filter);
      request.applied.push([name, value]);
    }
  }
  return request;
}

type Ignore = (name: string, reason: string) => void;

/** One `name[:modifier]=value` (or chain, or `_has`) on `resourceType`; undefined when ignored. */
function parseFilter(
  resourceType: string,
  name: string,
  value: string,
  registry: SearchParameterRegistry,
  options: ParseOptions,
  ignore: Ignore,
): Filter | undefined {
  if (name.startsWith('_has:')) return parseHas(resourceType, name, value, registry, options, ignore);

  const dot = name.indexOf('.');
  if (dot > 0) return parseChain(resourceType, name.slice(0, dot), name.slice(dot + 1), value, registry, options, ignore);

  const [code, modifier, ...extra] = name.split(':') as [string, string | undefined, ...string[]];
  if (extra.length > 0) throw FhirError.badRequest(`Search parameter ${name}: too many modifiers`, [name]);
  if (code === '_id') {
    if (modifier && modifier !== 'not' && modifier !== 'missing') throw badModifier(name, modifier, 'token');
    if (modifier === 'missing') return undefined; // every resource has an id: nothing to filter
    return { kind: 'id', values: splitValues(value).map(unescape), ...(modifier === 'not' ? { not: true } : {}) };
  }
  if (code === '_lastUpdated') {
    if (modifier) throw badModifier(name, modifier, 'date');
    return { kind: 'lastUpdated', values: splitValues(value).map((v) => prefixedDate(name, v)) };
  }
  const param = registry.get(resourceType, code);
  if (!param) {
    ignore(name, `unknown search parameter for ${resourceType}`);
    return undefined;
  }
  if (modifier === 'missing') {
    if (value !== 'true' && value !== 'false') throw FhirError.badRequest(`Search parameter ${name}: :missing takes true or false, not '${value}'`, [name]);
    return { kind: 'missing', param, missing: value === 'true' };
  }
  const values = splitValues(value);
  if (values.some((v) => v === '')) throw FhirError.badRequest(`Search parameter ${name}: empty value`, [name]);

  switch (param.type) {
    case 'token': {
      if (modifier === 'in' || modifier === 'not-in') {
        return { kind: 'token', param, modifier, values: mergeCodes(values.map((v) => valueSetCodes(name, unescape(v)))) };
      }
      if (modifier === 'above' || modifier === 'below') {
        return { kind: 'token', param, modifier, values: mergeCodes(values.map((v) => subsumedCodes(name, modifier, parseToken(v)))) };
      }
      if (modifier && modifier !== 'not' && modifier !== 'text' && modifier !== 'of-type') throw badModifier(name, modifier, 'token');
      if (modifier === 'text') return { kind: 'token', param, modifier, values: values.map((v) => ({ text: unescape(v) })) };
      if (modifier === 'of-type') {
        return { kind: 'token', param, modifier, values: values.map((v) => ofType(name, v)) };
      }
      return { kind: 'token', param, ...(modifier ? { modifier } : {}), values: values.map(parseToken) } as Filter;
    }
    case 'string':
      if (modifier && modifier !== 'exact' && modifier !== 'contains') throw badModifier(name, modifier, 'string');
      return { kind: 'string', param, ...(modifier ? { modifier } : {}), values: values.map(unescape) } as Filter;
    case 'date':
      if (modifier) throw badModifier(name, modifier, 'date');
      return { kind: 'date', param, values: values.map((v) => prefixedDate(name, v)) };
    case 'number':
      if (modifier) throw badModifier(name, modifier, 'number');
      return {
        kind: 'number',
        param,
        values: values.map((v) => {
          const { prefix, rest } = splitPrefix(v);
          if (!NUMBER.test(rest)) throw FhirError.badRequest(`Search parameter ${name}: '${v}' is not a number`, [name]);
          return { prefix, value: rest };
        }),
      };
    case 'quantity':
      if (modifier) throw badModifier(name, modifier, 'quantity');
      return { kind: 'quantity', param, values: values.map((v) => parseQuantity(name, v)) };
    case 'special':
      if (modifier) throw badModifier(name, modifier, 'special');
      return { kind: 'near', param, values: values.map((v) => parseNear(name, v)) };
    case 'uri':
      if (modifier && !URI_MODIFIERS.has(modifier)) throw badModifier(name, modifier, 'uri');
      return uriFilter(param, modifier, values.map(unescape));
    case 'reference': {
      if (modifier === 'identifier') {
        return { kind: 'reference', param, modifier, values: [], identifiers: values.map(parseToken) };
      }
      if (modifier && !isServedResourceType(modifier)) {
        if (/^[A-Z]/.test(modifier)) throw FhirError.badRequest(`Search parameter ${name}: ${modifier} is not a type this server holds`, [name]);
        throw badModifier(name, modifier, 'reference');
      }
      if (modifier && param.targets.length > 0 && !param.targets.includes(modifier)) {
        throw FhirError.badRequest(`Search parameter ${name}: ${param.code} cannot refer to ${modifier}`, [name]);
      }
      return { kind: 'reference', param, values: values.map((v) => parseReference(unescape(v), modifier, param.code, param.targets, options.baseUrl)) };
    }
    case 'composite':
      if (modifier) throw badModifier(name, modifier, 'composite');
      if (isQuantityComposite(param)) {
        return { kind: 'composite', param, quantities: values.map((v) => compositeQuantity(name, v, param, registry, options.baseUrl)) };
      }
      if (isDateComposite(param)) {
        return { kind: 'composite', param, dates: values.map((v) => compositeDate(name, v, param, registry, options.baseUrl)) };
      }
      return { kind: 'composite', param, values: values.map((v) => compositeKey(compositeParts(name, v, param, registry, options.baseUrl))) };
    default:
      ignore(name, `parameters of type ${param.type} are not supported`);
      return undefined;
  }
}

function parseChain(
  resourceType: string,
  head: string,
  rest: string,
  value: string,
  registry: SearchParameterRegistry,
  options: ParseOptions,
  ignore: Ignore,
): Filter | undefined {
  const [code, typeModifier] = head.split(':') as [string, string | undefined];
  const param = registry.get(resourceType, code);
  if (!param) {
    ignore(`${head}.${rest}`, `unknown search parameter ${code} for ${resourceType}`);
    return undefined;
  }
  if (param.type !== 'reference') throw FhirError.badRequest(`Search parameter ${head}.${rest}: ${code} is not a reference, it cannot be chained`, [`${head}.${rest}`]);
  const candidates = typeModifier ? [typeModifier] : param.targets.filter(isServedResourceType);
  const targetTypes = candidates.filter((t) => isServedResourceType(t) && (param.targets.length === 0 || param.targets.includes(t)));
  if (targetTypes.length === 0) throw FhirError.badRequest(`Search parameter ${head}.${rest}: no chain target type ${typeModifier ?? ''} this server holds`, [`${head}.${rest}`]);
  // With several possible targets, the chain applies to each that defines the chained parameter (R4 search.html#chaining).
  const innerCode = rest.split(/[.:]/)[0]!;
  const applicable = targetTypes.filter((t) => innerCode === '_id' || innerCode === '_lastUpdated' || innerCode === '_has' || registry.get(t, innerCode));
  if (applicable.length === 0) throw FhirError.badRequest(`Search parameter ${head}.${rest}: ${innerCode} is not a search parameter of ${targetTypes.join(' or ')}`, [`${head}.${rest}`]);
  const targets = applicable.flatMap((type) => {
    const inner = parseFilter(type, rest, value, registry, options, ignore);
    return inner ? [{ type, inner }] : [];
  });
  return targets.length > 0 ? { kind: 'chain', param, targets } : undefined;
}

function parseHas(resourceType: string, name: string, value: string, registry: SearchParameterRegistry, options: ParseOptions, ignore: Ignore): Filter | undefined {
  const [, sourceType, code, ...restParts] = name.split(':');
  const rest = restParts.join(':');
  if (!sourceType || !code || !rest) throw FhirError.badRequest(`Search parameter ${name}: _has takes the form _has:Type:reference:parameter`, [name]);
  if (!isServedResourceType(sourceType)) throw FhirError.badRequest(`Search parameter ${name}: ${sourceType} is not a type this server holds`, [name]);
  const param = registry.get(sourceType, code);
  if (!param || param.type !== 'reference') throw FhirError.badRequest(`Search parameter ${name}: ${code} is not a reference parameter of ${sourceType}`, [name]);
  if (param.targets.length > 0 && !param.targets.includes(resourceType)) {
    throw FhirError.badRequest(`Search parameter ${name}: ${sourceType}.${code} never refers to ${resourceType}`, [name]);
  }
  const inner = parseFilter(sourceType, rest, value, registry, options, ignore);
  return inner ? { kind: 'has', sourceType, param, inner } : undefined;
}

function parseResultParameter(request: SearchRequest, name: string, value: string, registry: SearchParameterRegistry, singleType: string | undefined): void {
  const [base, modifier] = name.split(':') as [string, string | undefined];
  switch (base) {
    case '_count':
      request.count = parseCount(value);
      return;
    case '_total':
      if (!['none', 'estimate', 'accurate'].includes(value)) throw FhirError.badRequest(`_total must be none, estimate or accurate, not '${value}'`, ['_total']);
      request.total = value as TotalMode;
      return;
    case '_summary':
      if (!['true', 'count', 'data', 'text', 'false'].includes(value)) throw FhirError.badRequest(`_summary must be true, count, data, text or false, not '${value}'`, ['_summary']);
      request.summary = value as SummaryMode;
      return;
    case '_elements':
      request.elements = value.split(',').map((e) => e.trim()).filter(Boolean);
      if (request.elements.some((e) => !/^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)?$/.test(e))) throw FhirError.badRequest(`_elements lists element names, not '${value}'`, ['_elements']);
      return;
    case '_sort':
      request.sort = value.split(',').map((key) => parseSort(key.trim(), registry, singleType));
      return;
    case '_include':
    case '_revinclude': {
      if (modifier && modifier !== 'iterate' && modifier !== 'recurse') throw FhirError.badRequest(`${name}: the only modifier is :iterate`, [name]);
      const rule = parseInclude(name, value, registry, base === '_include' ? singleType : undefined, modifier !== undefined);
      (base === '_include' ? request.include : request.revinclude).push(rule);
      return;
    }
    case '_type': {
      const types = value.split(',');
      for (const type of types) if (!isServedResourceType(type)) throw FhirError.badRequest(`_type: ${type} is not a type this server holds`, ['_type']);
      request.resourceTypes = types;
      return;
    }
    case '_cursor':
      request.cursor = decodeCursor(value);
      return;
  }
}

function parseSort(key: string, registry: SearchParameterRegistry, singleType: string | undefined): SortRule {
  const descending = key.startsWith('-');
  const code = descending ? key.slice(1) : key;
  if (code === '_id' || code === '_lastUpdated') return { param: code, descending };
  const param = singleType ? registry.get(singleType, code) : undefined;
  if (!param || param.type === 'composite' || param.type === 'special') throw FhirError.badRequest(`_sort: cannot sort by '${code}'`, ['_sort']);
  return { param, descending };
}

function parseInclude(name: string, value: string, registry: SearchParameterRegistry, searchedType: string | undefined, iterate: boolean): IncludeRule {
  if (value === '*') return { sourceType: searchedType ?? '*', param: '*', iterate };
  const [sourceType, code, targetType, ...extra] = value.split(':');
  if (!sourceType || !code || extra.length > 0) throw FhirError.badRequest(`${name} takes Type:parameter[:targetType], not '${value}'`, [name]);
  if (!isServedResourceType(sourceType)) throw FhirError.badRequest(`${name}: ${sourceType} is not a type this server holds`, [name]);
  if (code !== '*') {
    const param = registry.get(sourceType, code);
    if (!param || param.type !== 'reference') throw FhirError.badRequest(`${name}: ${code} is not a reference parameter of ${sourceType}`, [name]);
  }
  if (targetType !== undefined && !isServedResourceType(targetType)) throw FhirError.badRequest(`${name}: ${targetType} is not a type this server holds`, [name]);
  return { sourceType, param: code, ...(targetType ? { targetType } : {}), iterate };
}

// ---- values ---------------------------------------------------------------------------------------

/** Splits on a separator not escaped by `\` (R4 search.html#escaping), keeping escapes for later. */
export function splitOn(value: string, separator: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '\\' && i + 1 < value.length) {
      current += c + value[++i];
    } else if (c === separator) {
      parts.push(current);
      current = '';
    } else current += c;
  }
  parts.push(current);
  return parts;
}

const splitValues = (value: string) => splitOn(value, ',');
const unescape = (value: string) => value.replace(/\\([\\,$|])/g, '$1');

/** `:in` / `:not-in`: the (system, code) pairs of a value set the local terminology service can expand completely. */
function valueSetCodes(name: string, url: string): Map<string, Set<string>> {
  const terminology = loadValidationContext().terminology;
  if (!terminology.hasValueSet(url)) throw FhirError.badRequest(`Search parameter ${name}: value set ${url} is not known to this server`, [name], 'not-found');
  const codes = terminology.valueSetCodes(url);
  if (!codes) throw FhirError.badRequest(`Search parameter ${name}: value set ${url} draws on code systems or filters not available on this server, so it cannot be expanded`, [name], 'not-supported');
  return codes;
}

/** `:below` (the code and what it subsumes) / `:above` (the code and what subsumes it) in a local, complete CodeSystem. */
function subsumedCodes(name: string, modifier: 'above' | 'below', token: TokenValue): Map<string, Set<string>> {
  if (!token.system || token.code === undefined) throw FhirError.badRequest(`Search parameter ${name}: :${modifier} takes system|code`, [name]);
  const terminology = loadValidationContext().terminology;
  const codes = modifier === 'below' ? terminology.descendantsOrSelf(token.system, token.code) : terminology.ancestorsOrSelf(token.system, token.code);
  if (!codes) {
    const content = terminology.codeSystem(token.system)?.content;
    const reason = content !== 'complete'
      ? `the code system ${token.system} is not available on this server${content ? ` (only its ${content} content is)` : ''}`
      : `${token.code} is not a code of ${token.system}`;
    throw FhirError.badRequest(`Search parameter ${name}: :${modifier} cannot be evaluated: ${reason}`, [name], 'not-supported');
  }
  return new Map([[token.system, codes]]);
}

/** The union of several values' pairs (values are ORed), one entry per system. */
function mergeCodes(sets: Map<string, Set<string>>[]): Array<{ system: string; codes: string[] }> {
  const merged = new Map<string, Set<string>>();
  for (const set of sets) {
    for (const [system, codes] of set) {
      const into = merged.get(system) ?? new Set<string>();
      for (const code of codes) into.add(code);
      merged.set(system, into);
    }
  }
  return [...merged].map(([system, codes]) => ({ system, codes: [...codes] }));
}

function parseToken(raw: string): TokenValue {
  const parts = splitOn(raw, '|');
  if (parts.length === 1) return { code: unescape(parts[0]!) };
  const [system = '', code = ''] = parts.map(unescape);
  return { system: system === '' ? null : system, ...(code === '' ? {} : { code }) };
}

function ofType(name: string, raw: string): { typeSystem: string; typeCode: string; value: string } {
  const parts = splitOn(raw, '|').map(unescape);
  if (parts.length !== 3 || parts.some((p) => p === '')) throw FhirError.badRequest(`Search parameter ${name}: :of-type takes system|code|value`, [name]);
  const [typeSystem, typeCode, value] = parts as [string, string, string];
  return { typeSystem, typeCode, value };
}

function splitPrefix(value: string): { prefix: Prefix; rest: string } {
  const head = value.slice(0, 2);
  return PREFIXES.has(head) && !/^[a-z]/.test(value.slice(2, 3)) ? { prefix: head as Prefix, rest: value.slice(2) } : { prefix: 'eq', rest: value };
}

/**
 * `[prefix]number|system|code`. With the UCUM system and a unit that has a base-unit form, the value and
 * its precision are also converted (`5.4|…|mg`: 0.0054 g ± 0.00005 g). A unit that has none, not valid
 * UCUM included, is compared as written, as HAPI FHIR does: the search still finds quantities stored
 * with that very code.
 */
function parseQuantity(name: string, raw: string): QuantityValue {
  const [number = '', system, code] = splitOn(raw, '|').map(unescape);
  const { prefix, rest } = splitPrefix(number);
  if (!NUMBER.test(rest)) throw FhirError.badRequest(`Search parameter ${name}: '${raw}' is not a quantity ([prefix]number|system|code)`, [name]);
  const value: QuantityValue = { prefix, value: rest, ...(system ? { system } : {}), ...(code ? { code } : {}) };
  if (system === UCUM_SYSTEM && code) {
    const canonical = toCanonical(rest, code);
    const halfWidth = toCanonical(halfUnitOfLastDigit(rest), code);
    if (canonical && halfWidth) value.canonical = { value: canonical.value, halfWidth: halfWidth.value, unit: canonical.unit };
  }
  return value;
}

function prefixedDate(name: string, value: string) {
  const { prefix, rest } = splitPrefix(value);
  const range = parseDateRange(rest);
  if (!range) throw FhirError.badRequest(`Search parameter ${name}: '${value}' is not a valid date, dateTime or instant`, [name]);
  return { prefix, range };
}

function parseReference(value: string, typeModifier: string | undefined, code: string, targets: string[], baseUrl: string): ReferenceValue {
  const local = relativeToBase(value, baseUrl);
  const relative = /^([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})(?:\/_history\/[A-Za-z0-9\-.]+)?$/.exec(local);
  if (relative) {
    if (typeModifier && relative[1] !== typeModifier) {
      throw FhirError.badRequest(`Search parameter ${code}:${typeModifier}: '${value}' is not a ${typeModifier}`, [`${code}:${typeModifier}`]);
    }
    return { type: relative[1]!, id: relative[2]! };
  }
  if (/^[A-Za-z0-9\-.]{1,64}$/.test(local)) {
    const onlyTarget = targets.length === 1 ? targets[0] : undefined;
    const type = typeModifier ?? onlyTarget;
    return { ...(type ? { type } : {}), id: local };
  }
  return { url: value };
}

/**
 * A composite search value (`component$component…`) as the component texts extract.ts indexes: each
 * component written the way its own type is searched (a reference as `Type/id`, a token as `code`,
 * `system|code` or `|code`), `\$` standing for a dollar inside a component. A last quantity component is
 * left as written (`compositeQuantity`).
 */
function compositeParts(name: string, raw: string, param: SearchParamDefinition, registry: SearchParameterRegistry, baseUrl: string): string[] {
  const components = param.components ?? [];
  const parts = splitOn(raw, '$');
  if (parts.length !== components.length) {
    throw FhirError.badRequest(`Search parameter ${name}: '${raw}' must have ${components.length} components separated by $`, [name]);
  }
  return parts.map((part, i) => {
      const definition = registry.definitionByUrl(components[i]!.definition);
      if (definition?.type === 'reference') {
        const reference = parseReference(unescape(part), undefined, name, (definition.target ?? []) as string[], baseUrl);
        return reference.url ?? (reference.type ? `${reference.type}/${reference.id}` : reference.id!);
      }
      if (definition?.type === 'token') {
        const token = parseToken(part);
        if (token.system === undefined) return token.code ?? '';
        return `${token.system ?? ''}|${token.code ?? ''}`;
      }
      if (definition?.type === 'quantity' || definition?.type === 'date') return part;
      return unescape(part);
  });
}

/** A value of a composite ending with a quantity (`http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]`): the key of its other components, and the quantity. */
function compositeQuantity(name: string, raw: string, param: SearchParamDefinition, registry: SearchParameterRegistry, baseUrl: string): { key: string; quantity: QuantityValue } {
  const parts = compositeParts(name, raw, param, registry, baseUrl);
  return { key: compositeKey(parts.slice(0, -1)), quantity: parseQuantity(name, parts[parts.length - 1]!) };
}

/** A value of a composite ending with a date (`http://loinc.org|21112-8$ge1980-01-01`): the key of its other components, and the date. */
function compositeDate(name: string, raw: string, param: SearchParamDefinition, registry: SearchParameterRegistry, baseUrl: string): { key: string; prefix: Prefix; range: DateRange } {
  const parts = compositeParts(name, raw, param, registry, baseUrl);
  return { key: compositeKey(parts.slice(0, -1)), ...prefixedDate(name, parts[parts.length - 1]!) };
}

// ---- paging cursor --------------------------------------------------------------------------------

export function encodeCursor(values: Array<string | null>, backwards: boolean): string {
  return Buffer.from(JSON.stringify({ v: values, b: backwards ? 1 : 0 })).toString('base64url');
}

function decodeCursor(value: string): { values: Array<string | null>; backwards: boolean } {
  try {
    const parsed = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
    if (Array.isArray(parsed.v) && parsed.v.every((x: unknown) => x === null || (typeof x === 'string' && unstorableCharacter(x) === undefined))) {
      return { values: parsed.v, backwards: parsed.b === 1 };
    }
  } catch {
    // fall through
  }
  throw invalidCursor();
}

/** An edited or made-up `_cursor`: its values are checked against the search's keys before any SQL. */
export const invalidCursor = () => FhirError.badRequest('_cursor is not a cursor this server issued', ['_cursor']);

function badModifier(name: string, modifier: string, type: string): FhirError {
  return FhirError.badRequest(`Search parameter ${name}: modifier :${modifier} is not supported on a ${type} parameter`, [name]);
}

/** What `near` takes when a search gives no distance: R4 leaves "near" to the server. */
export const DEFAULT_NEAR_KM = 10;

/**
 * `near=latitude|longitude|distance|units` (R4 search.html#special, Location `near`): WGS84 decimal degrees, a
 * distance in a UCUM length unit, km when the units are left out, DEFAULT_NEAR_KM when the distance is.
 */
function parseNear(name: string, value: string): { latitude: number; longitude: number; km: number } {
  const [lat, long, distance, units, ...rest] = value.split('|');
  const bad = (why: string) => FhirError.badRequest(`Search parameter ${name}: '${value}' ${why}; near takes latitude|longitude|distance|units (WGS84 degrees; units a UCUM length, km by default)`, [name]);
  if (rest.length > 0 || lat === undefined || long === undefined) throw bad('is not a point');
  if (!NUMBER.test(lat) || !NUMBER.test(long)) throw bad('is not a point');
  const latitude = Number(lat);
  const longitude = Number(long);
  if (Math.abs(latitude) > 90 || Math.abs(longitude) > 180) throw bad('is not on the earth (latitude within ±90, longitude within ±180)');
  if (distance === undefined || distance === '') {
    if (units) throw bad('gives units without a distance');
    return { latitude, longitude, km: DEFAULT_NEAR_KM };
  }
  if (!NUMBER.test(distance) || Number(distance) < 0) throw bad('has no valid distance');
  const metres = toCanonical(distance, units || 'km');
  if (!metres || metres.unit !== 'm') throw bad(`has units '${units}', which is not a UCUM length`);
  return { latitude, longitude, km: Number(metres.value) / 1000 };
}
