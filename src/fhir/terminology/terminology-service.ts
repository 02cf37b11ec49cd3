/**
 * A local, in-memory terminology service: enough of $validate-code for binding checks at write time,
 * without calling a terminology server. It knows the CodeSystems and ValueSets it was given; anything
 * else (SNOMED CT, LOINC beyond the codes a value set lists, unknown filters) is "not checkable" and the
 * caller decides what that means (the profile validator stays silent, as a validator without a
 * terminology server must).
 */

export interface CodeSystemResource {
  resourceType: 'CodeSystem';
  id?: string;
  url: string;
  name?: string;
  title?: string;
  version?: string;
  content?: string;
  caseSensitive?: boolean;
  hierarchyMeaning?: string;
  concept?: ConceptDefinition[];
}

export interface ConceptDefinition {
  code: string;
  display?: string;
  definition?: string;
  designation?: { language?: string; use?: { system?: string; code?: string; display?: string }; value: string }[];
  property?: ({ code: string } & Record<string, unknown>)[];
  concept?: ConceptDefinition[];
}

interface ConceptSetComponent {
  system?: string;
  concept?: { code: string; display?: string }[];
  filter?: { property: string; op: string; value: string }[];
  valueSet?: string[];
}

export interface ValueSetResource {
  resourceType: 'ValueSet';
  id?: string;
  url: string;
  name?: string;
  title?: string;
  version?: string;
  status?: string;
  compose?: { include?: ConceptSetComponent[]; exclude?: ConceptSetComponent[] };
  expansion?: { contains?: ExpansionEntry[] };
}

interface ExpansionEntry {
  system?: string;
  code?: string;
  display?: string;
  contains?: ExpansionEntry[];
}

/** One code of an expansion, with its display when the value set or its code system gives one. */
export interface ExpandedCode {
  system: string;
  code: string;
  display?: string;
}

/** Why a value set has no complete local expansion; undefined reason means it is complete. */
export interface ValueSetExpansion {
  valueSet: ValueSetResource;
  contains: ExpandedCode[];
  complete: boolean;
}

/** A concept found in a local CodeSystem, with where it sits in the hierarchy. */
export interface ConceptLookup {
  codeSystem: CodeSystemResource;
  concept: ConceptDefinition;
  parents: string[];
  children: string[];
}

/** `valid`: in the value set; `invalid`: known not to be; `unknown`: cannot be decided locally. */
export type CodeValidity = 'valid' | 'invalid' | 'unknown';

/** A value set reduced to what membership needs: the codes per system, and whether the list is complete. */
interface Expansion {
  codes: Map<string, Set<string>>;
  /** false when part of the definition could not be expanded (unknown system, filter, nested set). */
  complete: boolean;
}

export function stripVersion(canonical: string): string {
  const bar = canonical.indexOf('|');
  return bar < 0 ? canonical : canonical.slice(0, bar);
}

export class TerminologyService {
  /** What is in effect: a stored resource (written through the API) over the built-in one of the same URL. */
  private readonly codeSystems = new Map<string, CodeSystemResource>();
  private readonly valueSets = new Map<string, ValueSetResource>();
  private readonly expansions = new Map<string, Expansion>();
  /** The loaded (built-in) definitions, for the conformance catalogue and to fall back on when a stored one goes. */
  private readonly builtInCodeSystems = new Map<string, CodeSystemResource>();
  private readonly builtInValueSets = new Map<string, ValueSetResource>();
  /** Stored CodeSystems and ValueSets by `Type/id`, in the order written (the last written of a URL wins). */
  private readonly stored = new Map<string, CodeSystemResource | ValueSetResource>();

  add(resource: CodeSystemResource | ValueSetResource): void {
    if (!resource.url) return;
    // First one wins: the loader adds the most specific sources first.
    if (resource.resourceType === 'CodeSystem') {
      if (!this.builtInCodeSystems.has(resource.url)) this.builtInCodeSystems.set(resource.url, resource);
      if (!this.codeSystems.has(resource.url)) this.codeSystems.set(resource.url, resource);
    } else {
      if (!this.builtInValueSets.has(resource.url)) this.builtInValueSets.set(resource.url, resource);
      if (!this.valueSets.has(resource.url)) this.valueSets.set(resource.url, resource);
    }
  }

  /**
   * A CodeSystem or ValueSet stored through the API (`Type/id`), in effect for its URL from now on; undefined
   * removes what `Type/id` held (deleted, or rewritten without a URL), restoring what was there before it.
   */
  putStored(key: string, resource: CodeSystemResource | ValueSetResource | undefined): void {
    const previous = this.stored.get(key);
    this.stored.delete(key);
    if (resource?.url) this.stored.set(key, resource);
    for (const url of new Set([previous?.url, resource?.url])) if (url) this.refresh(url);
    // An expansion may draw on any value set or code system: drop them all, they are rebuilt on use.
    this.expansions.clear();
    this.systemCodeCache.clear();
  }

  private refresh(url: string): void {
    let codeSystem: CodeSystemResource | undefined = this.builtInCodeSystems.get(url);
    let valueSet: ValueSetResource | undefined = this.builtInValueSets.get(url);
    for (const resource of this.stored.values()) {
      if (resource.url !== url) continue;
      if (resource.resourceType === 'CodeSystem') codeSystem = resource;
      else valueSet = resource;
    }
    if (codeSystem) this.codeSystems.set(url, codeSystem);
    else this.codeSystems.delete(url);
    if (valueSet) this.valueSets.set(url, valueSet);
    else this.valueSets.delete(url);
  }

  hasValueSet(url: string): boolean {
    return this.valueSets.has(stripVersion(url));
  }

  hasCodeSystem(url: string): boolean {
    return this.codeSystems.has(url);
  }

  /** Whether `code` of `system` is known to a complete local CodeSystem; `unknown` when the system is not. */
  validateCodeInSystem(system: string, code: string): CodeValidity {
    const codeSystem = this.codeSystems.get(system);
    if (!codeSystem || codeSystem.content !== 'complete') return 'unknown';
    return this.systemCodes(codeSystem).has(code) ? 'valid' : 'invalid';
  }

  /**
   * Membership of system|code in a value set. `system` undefined means a bare `code` element, which
   * matches a code of any system in the set (R4: the system of a `code` is implied by the binding).
   */
  validateCode(valueSetUrl: string, system: string | undefined, code: string): CodeValidity {
    const expansion = this.expand(stripVersion(valueSetUrl));
    if (!expansion) return 'unknown';
    if (system === undefined) {
      for (const codes of expansion.codes.values()) if (codes.has(code)) return 'valid';
      return expansion.complete ? 'invalid' : 'unknown';
    }
    const codes = expansion.codes.get(system);
    if (codes?.has(code)) return 'valid';
    return expansion.complete ? 'invalid' : 'unknown';
  }

  /** Every built-in value set and code system, once each (the first loaded wins, as for membership); not the stored ones. */
  valueSetList(): ValueSetResource[] {
    return [...this.builtInValueSets.values()];
  }

  codeSystemList(): CodeSystemResource[] {
    return [...this.builtInCodeSystems.values()];
  }

  valueSet(url: string): ValueSetResource | undefined {
    return this.valueSets.get(stripVersion(url));
  }

  codeSystem(url: string): CodeSystemResource | undefined {
    return this.codeSystems.get(stripVersion(url));
  }

  /**
   * The codes of a value set, in definition order, with displays (the value set's own, else the code
   * system's). `complete` is false when part of the definition cannot be expanded locally; undefined: unknown value set.
   */
  expandValueSet(url: string): ValueSetExpansion | undefined {
    const valueSet = this.valueSets.get(stripVersion(url));
    const expansion = valueSet && this.expand(stripVersion(url));
    if (!valueSet || !expansion) return undefined;
    const displays = new Map<string, string>();
    const collect = (vs: ValueSetResource, seen: Set<string>) => {
      if (seen.has(vs.url)) return;
      seen.add(vs.url);
      for (const include of vs.compose?.include ?? []) {
        for (const concept of include.concept ?? []) {
          const key = `${include.system}|${concept.code}`;
          if (concept.display && !displays.has(key)) displays.set(key, concept.display);
        }
        for (const nested of include.valueSet ?? []) {
          const inner = this.valueSets.get(stripVersion(nested));
          if (inner) collect(inner, seen);
        }
      }
      const walk = (entries: ExpansionEntry[] = []) => {
        for (const entry of entries) {
          const key = `${entry.system}|${entry.code}`;
          if (entry.display && !displays.has(key)) displays.set(key, entry.display);
          walk(entry.contains);
        }
      };
      walk(vs.expansion?.contains);
    };
    collect(valueSet, new Set());
    const contains: ExpandedCode[] = [];
    for (const [system, codes] of expansion.codes) {
      for (const code of codes) {
        const display = displays.get(`${system}|${code}`) ?? this.conceptOf(system, code)?.display;
        contains.push({ system, code, ...(display ? { display } : {}) });
      }
    }
    return { valueSet, contains, complete: expansion.complete };
  }

  /** The pairs of a value set for search (`:in`), or undefined when unknown or not completely expandable. */
  valueSetCodes(url: string): Map<string, Set<string>> | undefined {
    const expansion = this.valueSets.has(stripVersion(url)) ? this.expand(stripVersion(url)) : undefined;
    return expansion?.complete ? expansion.codes : undefined;
  }

  /** A concept of a local CodeSystem (any content mode: a fragment still defines the codes it lists). */
  lookup(system: string, code: string): ConceptLookup | undefined {
    const codeSystem = this.codeSystems.get(stripVersion(system));
    if (!codeSystem) return undefined;
    const found = findWithParent(codeSystem.concept ?? [], code, undefined);
    if (!found) return undefined;
    const parents = found.parent ? [found.parent.code] : [];
    for (const property of found.concept.property ?? []) {
      if ((property.code === 'parent' || property.code === 'subsumedBy') && typeof property.valueCode === 'string') parents.push(property.valueCode);
    }
    return { codeSystem, concept: found.concept, parents, children: (found.concept.concept ?? []).map((c) => c.code) };
  }

  /**
   * Whether subsumption can be decided locally: the code system is here with all its concepts, so its
   * hierarchy (nested concepts; none for a flat system, where a code subsumes only itself) is all there is.
   */
  hasHierarchy(system: string): boolean {
    return this.codeSystems.get(stripVersion(system))?.content === 'complete';
  }

  /** `code` and every code it subsumes (`:below`), or undefined when the system has no local hierarchy or the code is unknown. */
  descendantsOrSelf(system: string, code: string): Set<string> | undefined {
    if (!this.hasHierarchy(system)) return undefined;
    const concept = findConcept(this.codeSystems.get(stripVersion(system))!.concept ?? [], code);
    if (!concept) return undefined;
    const codes = new Set([concept.code]);
    collectCodes(concept.concept ?? [], codes);
    return codes;
  }

  /** `code` and every code that subsumes it (`:above`), or undefined when the system has no local hierarchy or the code is unknown. */
  ancestorsOrSelf(system: string, code: string): Set<string> | undefined {
    if (!this.hasHierarchy(system)) return undefined;
    const path = pathTo(this.codeSystems.get(stripVersion(system))!.concept ?? [], code);
    return path ? new Set(path.map((c) => c.code)) : undefined;
  }

  private conceptOf(system: string, code: string): ConceptDefinition | undefined {
    const codeSystem = this.codeSystems.get(system);
    return codeSystem ? findConcept(codeSystem.concept ?? [], code) : undefined;
  }

  private expand(url: string, seen = new Set<string>()): Expansion | undefined {
    const cached = this.expansions.get(url);
    if (cached) return cached;
    const valueSet = this.valueSets.get(url);
    if (!valueSet || seen.has(url)) return undefined;
    seen.add(url);
    const expansion: Expansion = { codes: new Map(), complete: true };
    if (valueSet.compose) {
      for (const include of valueSet.compose.include ?? []) this.include(expansion, include, seen);
      // An exclusion only narrows the set; an unexpandable one leaves a superset, so membership says "unknown".
      for (const exclude of valueSet.compose.exclude ?? []) {
        if (exclude.system && exclude.concept && !exclude.filter && !exclude.valueSet) {
          for (const { code } of exclude.concept) expansion.codes.get(exclude.system)?.delete(code);
        } else {
          expansion.complete = false;
        }
      }
    } else if (valueSet.expansion) {
      const walk = (entries: ExpansionEntry[] = []) => {
        for (const entry of entries) {
          if (entry.system && entry.code) codesOf(expansion, entry.system).add(entry.code);
          walk(entry.contains);
        }
      };
      walk(valueSet.expansion.contains);
    } else {
      expansion.complete = false;
    }
    this.expansions.set(url, expansion);
    return expansion;
  }

  private include(expansion: Expansion, include: ConceptSetComponent, seen: Set<string>): void {
    // A component with both a system and value sets is their intersection: rare; not expanded here.
    if (include.valueSet && include.system) {
      expansion.complete = false;
      return;
    }
    for (const nested of include.valueSet ?? []) {
      const inner = this.expand(stripVersion(nested), seen);
      if (!inner) {
        expansion.complete = false;
        continue;
      }
      if (!inner.complete) expansion.complete = false;
      for (const [system, codes] of inner.codes) for (const code of codes) codesOf(expansion, system).add(code);
    }
    if (!include.system) return;
    if (include.concept) {
      const target = codesOf(expansion, include.system);
      for (const { code } of include.concept) target.add(code);
      return;
    }
    const codeSystem = this.codeSystems.get(include.system);
    if (!codeSystem || codeSystem.content !== 'complete') {
      expansion.complete = false;
      return;
    }
    const all = this.systemCodes(codeSystem);
    if (!include.filter || include.filter.length === 0) {
      const target = codesOf(expansion, include.system);
      for (const code of all) target.add(code);
      return;
    }
    const filtered = this.filterCodes(codeSystem, include.filter);
    if (!filtered) {
      expansion.complete = false;
      return;
    }
    const target = codesOf(expansion, include.system);
    for (const code of filtered) target.add(code);
  }

  /** Hierarchy filters (is-a, descendent-of) over the CodeSystem's nested concepts; other filters are not supported. */
  private filterCodes(codeSystem: CodeSystemResource, filters: NonNullable<ConceptSetComponent['filter']>): Set<string> | undefined {
    let result: Set<string> | undefined;
    for (const filter of filters) {
      if (filter.property !== 'concept' || (filter.op !== 'is-a' && filter.op !== 'descendent-of')) return undefined;
      const root = findConcept(codeSystem.concept ?? [], filter.value);
      const codes = new Set<string>();
      if (root) {
        if (filter.op === 'is-a') codes.add(root.code);
        collectCodes(root.concept ?? [], codes);
      }
      result = result ? new Set([...result].filter((code) => codes.has(code))) : codes;
    }
    return result;
  }

  private readonly systemCodeCache = new Map<string, Set<string>>();

  private systemCodes(codeSystem: CodeSystemResource): Set<string> {
    let codes = this.systemCodeCache.get(codeSystem.url);
    if (!codes) {
      codes = new Set();
      collectCodes(codeSystem.concept ?? [], codes);
      this.systemCodeCache.set(codeSystem.url, codes);
    }
    return codes;
  }
}

function codesOf(expansion: Expansion, system: string): Set<string> {
  let codes = expansion.codes.get(system);
  if (!codes) {
    codes = new Set();
    expansion.codes.set(system, codes);
  }
  return codes;
}

function collectCodes(concepts: ConceptDefinition[], into: Set<string>): void {
  for (const concept of concepts) {
    into.add(concept.code);
    if (concept.concept) collectCodes(concept.concept, into);
  }
}

function findConcept(concepts: ConceptDefinition[], code: string): ConceptDefinition | undefined {
  for (const concept of concepts) {
    if (concept.code === code) return concept;
    const inner = concept.concept && findConcept(concept.concept, code);
    if (inner) return inner;
  }
  return undefined;
}

function findWithParent(concepts: ConceptDefinition[], code: string, parent: ConceptDefinition | undefined): { concept: ConceptDefinition; parent?: ConceptDefinition } | undefined {
  for (const concept of concepts) {
    if (concept.code === code) return { concept, parent };
    const inner = concept.concept && findWithParent(concept.concept, code, concept);
    if (inner) return inner;
  }
  return undefined;
}

/** The concepts from a root down to `code`, inclusive; undefined when absent. */
function pathTo(concepts: ConceptDefinition[], code: string): ConceptDefinition[] | undefined {
  for (const concept of concepts) {
    if (concept.code === code) return [concept];
    const inner = concept.concept && pathTo(concept.concept, code);
    if (inner) return [concept, ...inner];
  }
  return undefined;
}
