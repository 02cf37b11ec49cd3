import type { OperationOutcome, OperationOutcomeIssue } from 'fhir/r4';

export type IssueSeverity = OperationOutcomeIssue['severity'];
export type IssueCode = OperationOutcomeIssue['code'];

export interface Issue {
  severity?: IssueSeverity;
  code: IssueCode;
  diagnostics: string;
  expression?: string[];
}

export function operationOutcome(issues: Issue[]): OperationOutcome {
  return {
    resourceType: 'OperationOutcome',
    issue: issues.map(({ severity = 'error', code, diagnostics, expression }) => ({
      severity,
      code,
      diagnostics,
      ...(expression && expression.length > 0 ? { expression } : {}),
    })),
  };
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
    super(issues.map((i) => i.diagnostics).join('; '));
    this.name = 'FhirError';
    this.status = status;
    this.outcome = operationOutcome(issues);
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
