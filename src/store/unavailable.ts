import type { OperationOutcome } from 'fhir/r4';
import { operationOutcome } from '../fhir/outcome.ts';

/**
 * Which failures mean "the database cannot be reached right now", as opposed to a failure of the request
 * itself. The one place that knows the drivers' ways of saying so; the HTTP error handler answers these
 * 503 with Retry-After, and the start-up retries them. PGlite runs in the process and has no outage: none
 * of its errors matches.
 */

/** Retry-After of a 503 while the database is unreachable: a restarting PostgreSQL takes seconds. */
export const STORAGE_RETRY_AFTER_SECONDS = 5;

/** Socket-level failures of the connection to the database server (Node system error codes). */
const UNREACHABLE_SOCKET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * SQLSTATEs of a server that is going away or not yet there: admin_shutdown (57P01: fast or immediate
 * stop), crash_shutdown (57P02), cannot_connect_now (57P03: starting up or recovering), too_many_connections
 * (53300). Class 08 (connection exceptions) is matched as a whole. A serialization failure (40001) or a
 * deadlock (40P01) is the request's own conflict with another one, not an outage: it is not here.
 */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

/**
 * `pg` reports a lost connection, a client it will no longer use and a pool connect timeout by message
 * only, without a code.
 */
const UNAVAILABLE_MESSAGES = [
  /^Connection terminated/,
  /^Client has encountered a connection error and is not queryable$/,
  /^timeout exceeded when trying to connect$/,
];

export function isStorageUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (UNREACHABLE_SOCKET_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return true;
  if (UNAVAILABLE_MESSAGES.some((message) => message.test(error.message))) return true;
  // Node's connect to a host name with several addresses fails with an AggregateError of each attempt's.
  if (error instanceof AggregateError) return error.errors.length > 0 && error.errors.every(isStorageUnavailable);
  return error.cause !== undefined && isStorageUnavailable(error.cause);
}

/**
 * SQLSTATEs of a transaction the server undid because it met a concurrent one: serialization_failure (40001)
 * and deadlock_detected (40P01), as when two transactions delete resources that reference each other in
 * opposite orders. Nothing of the request was written, and the same request sent again will most likely
 * succeed: the client's conflict, not a fault of the server.
 */
const CONFLICT_SQLSTATES = new Set(['40001', '40P01']);

export function isConcurrencyConflict(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && CONFLICT_SQLSTATES.has(code)) return true;
  return error.cause !== undefined && isConcurrencyConflict(error.cause);
}

export interface FailureAnswer {
  status: 409 | 500 | 503;
  outcome: OperationOutcome;
  headers: Record<string, string>;
}

/**
 * The answer to a failure that is not a FhirError: 503 with Retry-After while the database is unreachable,
 * 409 when the database undid the request for a concurrent one (R4 http.html: a conflict the client may
 * resolve by sending it again), else 500, saying nothing of the internals. The HTTP error handler sends it (with the request's id, to
 * find it in the log); the router records it in the audit trail before.
 */
export function failureAnswer(error: unknown, requestId?: string): FailureAnswer {
  const request = requestId === undefined ? '' : ` (request ${requestId})`;
  if (isStorageUnavailable(error)) {
    return {
      status: 503,
      outcome: operationOutcome([{ severity: 'error', code: 'transient', diagnostics: `The database is unreachable; retry in a few seconds${request}` }]),
      headers: { 'retry-after': String(STORAGE_RETRY_AFTER_SECONDS) },
    };
  }
  if (isConcurrencyConflict(error)) {
    return {
      status: 409,
      outcome: operationOutcome([
        {
          severity: 'error',
          code: 'conflict',
          diagnostics: `This request met a concurrent one on the same resources and was undone, nothing of it written: send it again${request}`,
        },
      ]),
      headers: {},
    };
  }
  return { status: 500, outcome: operationOutcome([{ severity: 'fatal', code: 'exception', diagnostics: `Internal server error${request}` }]), headers: {} };
}
