import type { Resource } from 'fhir/r4';
import { FhirError } from '../fhir/outcome.ts';
import type { HandlerContext, Outcome } from '../router/context.ts';
import type { FhirRequest } from '../router/request.ts';

export type OperationLevel = 'system' | 'type' | 'instance';

/** What an operation is invoked on, and with what (R4 operations.html). */
export interface OperationCall {
  name: string;
  level: OperationLevel;
  resourceType?: string;
  id?: string;
  /** The input: a Parameters resource (POST) or the query parameters turned into one (GET). */
  parameters: Resource;
  request: FhirRequest;
  ctx: HandlerContext;
}

/** One `$operation`: where it may be invoked and how. Registered once, dispatched by the router. */
export interface OperationDefinition {
  name: string;
  levels: OperationLevel[];
  /** Resource types it applies to at type and instance level; undefined: every served type. */
  resourceTypes?: string[];
  /** GET is allowed only for operations that change nothing (R4 operations.html#request). */
  affectsState: boolean;
  invoke(call: OperationCall): Promise<Outcome>;
}

export class OperationRegistry {
  private readonly operations = new Map<string, OperationDefinition>();

  register(definition: OperationDefinition): this {
    this.operations.set(definition.name, definition);
    return this;
  }

  list(): OperationDefinition[] {
    return [...this.operations.values()];
  }

  /** Finds the operation for a call, refusing unknown names, wrong levels and types, and GET on state changes. */
  resolve(name: string, level: OperationLevel, resourceType: string | undefined, method: string): OperationDefinition {
    const operation = this.operations.get(name);
    if (!operation) throw FhirError.notFound(`Operation $${name} is not supported`);
    if (!operation.levels.includes(level)) throw FhirError.notFound(`Operation $${name} is not available at ${level} level`);
    if (resourceType && operation.resourceTypes && !operation.resourceTypes.includes(resourceType)) {
      throw FhirError.notFound(`Operation $${name} is not available on ${resourceType}`);
    }
    if (method === 'GET' && operation.affectsState) throw FhirError.methodNotAllowed(`$${name} changes data: invoke it with POST`, ['POST']);
    return operation;
  }
}
