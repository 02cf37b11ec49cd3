import type { ReturnPreference } from './request.ts';

/** `Prefer: return=…` (R4 http.html#ops); anything else, or nothing, means the full representation. */
export function returnPreference(prefer: string | undefined): ReturnPreference {
  const match = prefer?.match(/(?:^|[;,\s])return\s*=\s*"?(minimal|representation|OperationOutcome)"?/);
  return (match?.[1] as ReturnPreference | undefined) ?? 'representation';
}


/** `Prefer: handling=strict` (R4 search.html#errors): unknown search parameters are errors, not ignored. */
export function strictHandling(prefer: string | undefined): boolean {
  return /(?:^|[;,\s])handling\s*=\s*"?strict"?/.test(prefer ?? '');
}
