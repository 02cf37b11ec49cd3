import type { ReturnPreference } from './request.ts';

/** `Prefer: return=…` (R4 http.html#ops); anything else, or nothing, means the full representation. */
export function returnPreference(prefer: string | undefined): ReturnPreference {
  const match = prefer?.match(/(?:^|[;,\s])return\s*=\s*"?(minimal|representation|OperationOutcome)"?/);
  return (match?.[1] as ReturnPreference | undefined) ?? 'representation';
}

