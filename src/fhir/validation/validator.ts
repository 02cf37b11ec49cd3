import type { Issue } from '../outcome.ts';
import { SchemaValidator } from './schema-validator.ts';

/** Checks a resource before it is written; issues of severity error (the default) refuse the write. */
export interface ResourceValidator {
  validate(resourceType: string, resource: unknown): Issue[];
}

/** Base R4 validation: the official JSON schema plus the JSON rules it cannot state. */
export function baseValidator(resourceTypes: readonly string[]): ResourceValidator {
  return new SchemaValidator(resourceTypes);
}
