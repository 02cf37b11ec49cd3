import type { OperationOutcome, OperationOutcomeIssue } from 'fhir/r4';

export type IssueSeverity = OperationOutcomeIssue['severity'];
export type IssueCode = OperationOutcomeIssue['code'];

export interface Issue {
  severity?: IssueSeverity;
  code: IssueCode;
  diagnostics: string;
  expression?: string[];
}

/**
 * Bounds of an OperationOutcome, so that no input makes the answer to it large: a 24 KB resource with
 * thousands of faults got 3.4 MB of issues, a 5 MB resourceType came back whole in the diagnostics.
 * Past MAX_ISSUES, one last issue says how many were left out; a longer diagnostics or expression is
 * cut, with an ellipsis (every message of this server fits in it: what runs past it is echoed input).
 */
export const MAX_ISSUES = 100;
export const MAX_DIAGNOSTICS_LENGTH = 1000;
const MAX_EXPRESSION_LENGTH = 200;
const MAX_EXPRESSIONS = 10;

export function operationOutcome(issues: Issue[]): OperationOutcome {
  const kept = issues.length > MAX_ISSUES ? issues.slice(0, MAX_ISSUES) : issues;
  const issue: OperationOutcomeIssue[] = kept.map(({ severity = 'error', code, diagnostics, expression }) => ({
    severity,
    code,
    diagnostics: cut(diagnostics, MAX_DIAGNOSTICS_LENGTH),
    ...(expression && expression.length > 0 ? { expression: expression.slice(0, MAX_EXPRESSIONS).map((path) => cut(path, MAX_EXPRESSION_LENGTH)) } : {}),
  }));
  if (issues.length > kept.length) {
    issue.push({ severity: 'information', code: 'informational', diagnostics: `${issues.length - kept.length} more issues were left out: only the first ${MAX_ISSUES} are reported` });
  }
  return { resourceType: 'OperationOutcome', issue };
}

/** The outcome with `issues` added after its own, within the same bounds. */
export function withMoreIssues(outcome: OperationOutcome, issues: Issue[]): OperationOutcome {
  if (issues.length === 0) return outcome;
  const own: Issue[] = outcome.issue.map(({ severity, code, diagnostics, expression }) => ({ severity, code, diagnostics: diagnostics ?? '', expression }));
  return operationOutcome([...own, ...issues]);
}

/** `text` cut to `length` characters, the last of them an ellipsis, when longer (never in a surrogate pair). */
export function cut(text: string, length: number): string {
  if (text.length <= length) return text;
  const end = /[\uD800-\uDBFF]/.test(text[length - 2] ?? '') ? length - 2 : length - 1;
  return `${text.slice(0, end)}…`;
}

export function informational(diagnostics: string): OperationOutcome {
  return operationOutcome([{ severity: 'information', code: 'informational', diagnostics }]);
}

/**
 * A failure of an interaction, carrying the HTTP status and the OperationOutcome that explains it.
 * Thrown anywhere below the router; the router turns it into a response, for HTTP and bundle entries alike.
 */
export class FhirError extends Error {
  readonly status: number;
  readonly outcome: OperationOutcome;
  readonly headers: Record<string, string>;

  constructor(status: number, issues: Issue[], headers: Record<string, string> = {}) {
    const outcome = operationOutcome(issues);
    super(outcome.issue.map((i) => i.diagnostics).join('; '));
    this.name = 'FhirError';
    this.status = status;
    this.outcome = outcome;
    this.headers = headers;
  }

  static badRequest(diagnostics: string, expression?: string[], code: IssueCode = 'invalid'): FhirError {
    return new FhirError(400, [{ code, diagnostics, expression }]);
  }
  static notFound(diagnostics: string): FhirError {
    return new FhirError(404, [{ code: 'not-found', diagnostics }]);
  }
  static gone(diagnostics: string, headers: Record<string, string> = {}): FhirError {
    return new FhirError(410, [{ code: 'deleted', diagnostics }], headers);
  }
  static methodNotAllowed(diagnostics: string, allow: string[]): FhirError {
    return new FhirError(405, [{ code: 'not-supported', diagnostics }], { allow: allow.join(', ') });
  }
  static preconditionFailed(diagnostics: string): FhirError {
    return new FhirError(412, [{ code: 'conflict', diagnostics }]);
  }
  static conflict(diagnostics: string): FhirError {
    return new FhirError(409, [{ code: 'conflict', diagnostics }]);
  }
}
