import type { SearchParameterRegistry, SearchParamDefinition } from '../../src/search/registry.ts';

/** A well-formed value of a parameter's type, for a search that must be understood (not ignored, not refused). */
export function sampleValue(param: SearchParamDefinition, registry: SearchParameterRegistry): string | undefined {
  switch (param.type) {
    case 'token':
      return 'http://example.org/codes|x';
    case 'string':
      return 'x';
    case 'date':
      return 'ge2024-01-01';
    case 'number':
      return 'gt0';
    case 'quantity':
      return 'gt0||mg';
    case 'uri':
      return 'http://example.org/x';
    case 'special':
      return '43.6|3.9|10|km';
    case 'reference':
      return param.targets.length > 0 ? `${param.targets[0]}/x` : 'http://example.org/fhir/Patient/x';
    case 'composite':
      return param.components?.map((component) => {
        const inner = registry.definitionByUrl(component.definition);
        return inner ? sampleValue({ ...param, type: inner.type as SearchParamDefinition['type'], targets: (inner.target ?? []) as string[], components: undefined }, registry)?.replace(/\$/g, '\\$') : 'x';
      }).join('$');
    default:
      return undefined;
  }
}

