import type { DateRange } from './dates.ts';
import type { SearchParamDefinition } from './registry.ts';

/** R4 search.html#prefix */
export type Prefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';

export type TokenValue = { system?: string | null; code?: string };
export type ReferenceValue = { type?: string; id?: string; url?: string };

/** `[prefix]number|system|code` (R4 search.html#quantity). */
export interface QuantityValue {
  prefix: Prefix;
  value: string;
  system?: string;
  code?: string;
  /**
   * With a UCUM unit that has a base-unit form (ucum.ts): the value and its precision's half-width in
   * base units, compared with the canonical form indexed alongside each UCUM quantity.
   */
  canonical?: { value: string; halfWidth: string; unit: string };
}

/** One search parameter with its values (OR between values); a search is the AND of its filters. */
export type Filter =
  | { kind: 'token'; param: SearchParamDefinition; modifier?: 'not' | 'text'; values: Array<TokenValue & { text?: string }> }
  /** `identifier:of-type=[type system]|[type code]|[value]`: an identifier whose type has that coding and whose value is that. */
  | { kind: 'token'; param: SearchParamDefinition; modifier: 'of-type'; values: Array<{ typeSystem: string; typeCode: string; value: string }> }
  /**
   * `:in` / `:not-in` (a value set) and `:above` / `:below` (subsumption in a local CodeSystem), expanded at
   * parse time by the local terminology service into the (system, codes) pairs a token must match.
   */
  | { kind: 'token'; param: SearchParamDefinition; modifier: 'in' | 'not-in' | 'above' | 'below'; values: Array<{ system: string; codes: string[] }> }
  | { kind: 'string'; param: SearchParamDefinition; modifier?: 'exact' | 'contains'; values: string[] }
  | { kind: 'date'; param: SearchParamDefinition; values: Array<{ prefix: Prefix; range: DateRange }> }
  | { kind: 'reference'; param: SearchParamDefinition; modifier?: 'identifier'; values: ReferenceValue[]; identifiers?: TokenValue[] }
  | { kind: 'uri'; param: SearchParamDefinition; modifier?: 'above' | 'below'; values: string[] }
  | { kind: 'number'; param: SearchParamDefinition; values: Array<{ prefix: Prefix; value: string }> }
  | { kind: 'quantity'; param: SearchParamDefinition; values: QuantityValue[] }
  /** Compared whole: one of the keys extract.ts indexes. */
  | { kind: 'composite'; param: SearchParamDefinition; values: string[] }
  /** Ending with a quantity: the key of the other components, and the quantity compared as a quantity parameter's. */
  | { kind: 'composite'; param: SearchParamDefinition; quantities: Array<{ key: string; quantity: QuantityValue }> }
  /** Ending with a date: the key of the other components, and the date compared as a date parameter's (prefix, range). */
  | { kind: 'composite'; param: SearchParamDefinition; dates: Array<{ key: string; prefix: Prefix; range: DateRange }> }
  /** `near=latitude|longitude|distance|units` (Location.position): within `km` of the point, great-circle. */
  | { kind: 'near'; param: SearchParamDefinition; values: Array<{ latitude: number; longitude: number; km: number }> }
  | { kind: 'id'; values: string[]; not?: boolean }
  | { kind: 'lastUpdated'; values: Array<{ prefix: Prefix; range: DateRange }> }
  | { kind: 'missing'; param: SearchParamDefinition; missing: boolean }
  /**
   * `subject:Patient.name=…`: resources whose reference `param` points at a target matching its type's
   * `inner` filter; without a type, every target type that has the chained parameter is tried.
   */
  | { kind: 'chain'; param: SearchParamDefinition; targets: Array<{ type: string; inner: Filter }> }
  /** `_has:Observation:patient:code=…`: resources referenced by `param` of a `sourceType` matching `inner`. */
  | { kind: 'has'; sourceType: string; param: SearchParamDefinition; inner: Filter }
  /** A compartment (`Patient/123/Immunization`, `Practitioner/7/Immunization`): the resources that are members of it. */
  | { kind: 'compartment'; compartmentType: string; id: string };

export interface SortRule {
  /** `_id`, `_lastUpdated`, or a parameter of the searched type. */
  param: '_id' | '_lastUpdated' | SearchParamDefinition;
  descending: boolean;
}

export interface IncludeRule {
  /** The type whose reference parameter is followed (the source for both _include and _revinclude). */
  sourceType: string;
  /** Reference parameter code; `*` for every reference parameter. */
  param: string;
  targetType?: string;
  iterate: boolean;
}

export type TotalMode = 'none' | 'estimate' | 'accurate';
export type SummaryMode = 'true' | 'count' | 'data' | 'text' | 'false';

export interface SearchRequest {
  /** One type for type-level and compartment searches; several for a system search with `_type`. */
  resourceTypes: string[];
  filters: Filter[];
  sort: SortRule[];
  count: number;
  /** Position to continue from (the paging links' `_cursor`). */
  cursor?: { values: Array<string | null>; backwards: boolean };
  /** Asked for with `_total`; unset, the first page counts accurately and later pages do not count. */
  total?: TotalMode;
  summary?: SummaryMode;
  elements?: string[];
  include: IncludeRule[];
  revinclude: IncludeRule[];
  /** Parameters that were understood and applied, as they appear in the self link (name, raw value). */
  applied: Array<[string, string]>;
  /** Parameters ignored (unknown or unsupported) and why; reported as warnings, or 400 when strict. */
  ignored: Array<{ name: string; reason: string }>;
}
