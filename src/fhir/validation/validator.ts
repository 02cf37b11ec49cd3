import type { Issue } from '../outcome.ts';
import { SchemaValidator } from './schema-validator.ts';

/** What a validation found, and which stage refused the resource (if any). */
export interface ValidationResult {
  issues: Issue[];
  /**
   * `schema`: not valid R4 (HTTP 400, the request is malformed); `profile`: valid R4 that breaks a profile
   * or a business rule of the server (HTTP 422); undefined: accepted (issues are then warnings or information).
   */
  failedStage?: 'schema' | 'profile';
}

/** Checks a resource before it is written; issues of severity error (the default) refuse the write. */
export interface ResourceValidator {
  validate(resourceType: string, resource: unknown): Issue[];
  /** Same as `validate`, telling which stage failed; validators without stages need not implement it. */
  check?(resourceType: string, resource: unknown): ValidationResult;
}

export function isError(issue: Issue): boolean {
  return issue.severity === undefined || issue.severity === 'error' || issue.severity === 'fatal';
}

/** Base R4 validation: the official JSON schema plus the JSON rules it cannot state. */
export function baseValidator(resourceTypes: readonly string[]): ResourceValidator {
  return new SchemaValidator(resourceTypes);
}
