import { FhirError } from '../fhir/outcome.ts';
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
    if (resourceType && operation.resourceTypes && !operation.resourceTypes.includes(resourceType)) {
      throw FhirError.notFound(`Operation $${name} is not available on ${resourceType}`);
    }
    if (method === 'GET' && operation.affectsState) throw FhirError.methodNotAllowed(`$${name} changes data: invoke it with POST`, ['POST']);
    return operation;
  }
}
