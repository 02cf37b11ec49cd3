/**
 * A local, in-memory terminology service: enough of $validate-code for binding checks at write time,
 * without calling a terminology server. It knows the CodeSystems and ValueSets it was given; anything
 * else (SNOMED CT, LOINC beyond the codes a value set lists, unknown filters) is "not checkable" and the
 * caller decides what that means (the profile validator stays silent, as a validator without a
 * terminology server must).
 */

export interface CodeSystemResource {
  resourceType: 'CodeSystem';
  url: string;
  content?: string;
  caseSensitive?: boolean;
  concept?: ConceptDefinition[];
}

interface ConceptDefinition {
  code: string;
  concept?: ConceptDefinition[];
}

interface ConceptSetComponent {
  system?: string;
  concept?: { code: string }[];
  filter?: { property: string; op: string; value: string }[];
  valueSet?: string[];
}

export interface ValueSetResource {
  resourceType: 'ValueSet';
  url: string;
  compose?: { include?: ConceptSetComponent[]; exclude?: ConceptSetComponent[] };
  expansion?: { contains?: ExpansionEntry[] };
}

interface ExpansionEntry {
  system?: string;
  code?: string;
  contains?: ExpansionEntry[];
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
  private readonly codeSystems = new Map<string, CodeSystemResource>();
  private readonly valueSets = new Map<string, ValueSetResource>();
  private readonly expansions = new Map<string, Expansion>();

  add(resource: CodeSystemResource | ValueSetResource): void {
    if (!resource.url) return;
    // First one wins: the loader adds the most specific sources first.
    if (resource.resourceType === 'CodeSystem') {
      if (!this.codeSystems.has(resource.url)) this.codeSystems.set(resource.url, resource);
    } else if (!this.valueSets.has(resource.url)) {
      this.valueSets.set(resource.url, resource);
    }
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
