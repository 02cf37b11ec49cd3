import type { Issue } from '../outcome.ts';

/** What a validation found, and which stage refused the resource (if any). */
export interface ValidationResult {
  issues: Issue[];
  /**
   * `schema`: not valid R4 (HTTP 400, the request is malformed); `profile`: valid R4 that breaks a profile
   * or a business rule of the server (HTTP 422); undefined: accepted (issues are then warnings or information).
   */
  failedStage?: 'schema' | 'profile';
}

/** Options of one check (the `$validate` operation's parameters). */
export interface CheckOptions {
  /**
   * Canonical URL of a profile to validate against, instead of the server's default profile for the type
   * (base R4 and the profiles the resource claims still apply). A profile the server does not know is an error.
   */
  profile?: string;
  /**
   * Canonical URLs of profiles the resource must conform to as if it claimed them: those a claimed Bundle
   * profile requires of the entry's resource (its slice's profile). Unknown ones are reported as unknown claims are.
   */
  requiredProfiles?: readonly string[];
}

/** A Bundle checked against the Bundle profiles it claims, its entries' resources left to their own validation. */
export interface BundleProfileCheck {
  issues: Issue[];
  /** Per entry (by index), the profiles its slice requires of its resource, beyond the base definition of its type. */
  entryProfiles: string[][];
}

/** Checks a resource before it is written; issues of severity error (the default) refuse the write. */
export interface ResourceValidator {
  validate(resourceType: string, resource: unknown): Issue[];
  /** Same as `validate`, telling which stage failed; validators without stages need not implement it. */
  check?(resourceType: string, resource: unknown, options?: CheckOptions): ValidationResult;
  /**
   * A transaction or batch Bundle against the profiles it claims in `meta.profile` (slices, cardinalities,
   * constraints), without its entries' resources: each entry's is validated when the entry runs, against what it
   * claims and the profile its slice requires (`entryProfiles`, given back as that check's `requiredProfiles`).
   */
  checkBundleProfiles?(bundle: unknown): BundleProfileCheck;
}

export function isError(issue: Issue): boolean {
  return issue.severity === undefined || issue.severity === 'error' || issue.severity === 'fatal';
}
