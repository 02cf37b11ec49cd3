import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FhirError } from '../fhir/outcome.ts';
import type { AccessContext } from '../store/access.ts';

export interface RateLimitOptions {
  /** FHIR_RATE_LIMIT: requests per minute per client; 0, none. */
  perMinute: number;
  /** The access context a request's token gave it, once authenticated. */
  accessOf: (request: FastifyRequest) => AccessContext | undefined;
}

/**
 * A limit per client (FHIR_RATE_LIMIT requests a minute), beyond which a request is answered 429 with
 * `Retry-After` and an OperationOutcome (issue `throttled`), as RFC 6585 §4 describes. The client is the
 * token's: its SMART client and subject together, so that each user of one public browser app gets a
 * budget of their own, a backend system one for itself; a request without a token (the CapabilityStatement,
 * SMART discovery, health) counts against its address. It runs after authentication, which a request
 * without a valid token does not pass: those are refused (401) without costing the limit anything.
 * Counts are kept in each server process: with WORKERS=n a client may make up to n times the limit.
 */
export async function registerRateLimit(app: FastifyInstance, options: RateLimitOptions): Promise<void> {
  if (options.perMinute <= 0) return;
  await app.register(rateLimit, {
    max: options.perMinute,
    timeWindow: 60_000,
    // A route's own onRequest hooks run after those of its plugin, authentication among them.
    hook: 'onRequest',
    keyGenerator: (request) => clientKey(options.accessOf(request), request.ip),
    errorResponseBuilder: (_request, context) =>
      new FhirError(429, [{ code: 'throttled', diagnostics: `More than ${context.max} requests a minute from this client: retry in ${context.after}` }], {
        'retry-after': String(Math.max(1, Math.ceil(context.ttl / 1000))),
      }),
  });
}

/** Whose budget a request spends: its token's client and subject, else its address. */
export function clientKey(access: AccessContext | undefined, ip: string): string {
  if (access && (access.clientId !== undefined || access.subject !== undefined)) return `token ${access.clientId ?? ''} ${access.subject ?? ''}`;
  return `address ${ip}`;
}
