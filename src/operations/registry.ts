import { FhirError } from '../fhir/outcome.ts';
import { isConformanceResourceType, isServedResourceType } from '../fhir/resource-types.ts';
import type { OperationDefinition, OperationLevel, Operations } from '../router/context.ts';

export type { OperationCall, OperationDefinition, OperationLevel } from '../router/context.ts';

export class OperationRegistry implements Operations {
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
    if (resourceType) {
      // The router lets any type through to an operation: one without a list of types is offered on the served types.
      if (!(operation.resourceTypes ? operation.resourceTypes.includes(resourceType) : isServedResourceType(resourceType))) {
        const known = isServedResourceType(resourceType) || isConformanceResourceType(resourceType);
        throw FhirError.notFound(known ? `Operation $${name} is not available on ${resourceType}` : `Resource type '${resourceType}' is not served by this server`);
      }
    }
    if (method === 'GET' && operation.affectsState) throw FhirError.methodNotAllowed(`$${name} changes data: invoke it with POST`, ['POST']);
    return operation;
  }
}
