import { randomUUID } from 'node:crypto';
import type { Resource } from 'fhir/r4';
import { CONFORMANCE_RESOURCE_TYPES, isValidId } from './resource-types.ts';
import { loadValidationContext, type ValidationContext } from './validation/profile-validator.ts';

export type BuiltInDefinition = Resource & { id: string; url?: string; name?: string; version?: string };

/**
 * The built-in ValueSets, CodeSystems and StructureDefinitions: what the validator and the terminology service
 * loaded from files (base R4, FR Core, ANS, IPS, the project's profiles), served read-only beside the stored
 * ones, from memory rather than copied into the database at the first start. Each type's resources are indexed
 * by id; a resource without an id (or whose id another already took) gets one from its canonical URL.
 */
export class BuiltInDefinitions {
  private readonly byType = new Map<string, { list: BuiltInDefinition[]; byId: Map<string, BuiltInDefinition> }>();

  constructor(context: ValidationContext) {
    const sources: Record<string, readonly object[]> = {
      ValueSet: context.terminology.valueSetList(),
      CodeSystem: context.terminology.codeSystemList(),
      StructureDefinition: context.registry.all(),
    };
    for (const type of CONFORMANCE_RESOURCE_TYPES) {
      const byId = new Map<string, BuiltInDefinition>();
      for (const source of sources[type] ?? []) {
        const resource = source as BuiltInDefinition;
        let id = typeof resource.id === 'string' && isValidId(resource.id) ? resource.id : idFromUrl(resource.url);
        for (let n = 2; byId.has(id); n++) id = `${idFromUrl(resource.url)}-${n}`.slice(-64);
        byId.set(id, id === resource.id ? resource : ({ ...resource, id } as BuiltInDefinition));
      }
      this.byType.set(type, { list: [...byId.values()], byId });
    }
  }

  /** The built-in `type/id`, if there is one. */
  find(type: string, id: string): BuiltInDefinition | undefined {
    return this.byType.get(type)?.byId.get(id);
  }

  list(type: string): readonly BuiltInDefinition[] {
    return this.byType.get(type)?.list ?? [];
  }
}

function idFromUrl(url: string | undefined): string {
  const last = (url ?? '').split('|')[0]!.split('/').pop() ?? '';
  const id = last.replace(/[^A-Za-z0-9\-.]/g, '-').slice(0, 64);
  return id.length > 0 ? id : randomUUID();
}

let shared: BuiltInDefinitions | undefined;

/** The built-in definitions of the shared validation context (the one the server's validator uses). */
export function builtInDefinitions(): BuiltInDefinitions {
  return (shared ??= new BuiltInDefinitions(loadValidationContext()));
}
