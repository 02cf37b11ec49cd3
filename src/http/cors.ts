import cors from '@fastify/cors';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/** The request headers a SMART app sends besides the CORS-safelisted ones (SMART App Launch 2.0, FHIR http.html). */
export const CORS_ALLOWED_HEADERS = ['Authorization', 'Content-Type', 'If-Match', 'If-None-Exist', 'If-None-Match', 'If-Modified-Since', 'Prefer', 'X-Request-Id', 'X-Security-Context'];

/** The response headers a browser app may read besides the safelisted ones: what FHIR answers in headers. */
export const CORS_EXPOSED_HEADERS = ['Location', 'ETag', 'Last-Modified', 'Content-Location', 'WWW-Authenticate', 'Retry-After', 'X-Request-Id'];

const CORS_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];

/** A browser may keep a preflight's answer this long (seconds; Chrome caps it at 2 hours). */
const PREFLIGHT_MAX_AGE = 3600;

/** What CORS covers: the FHIR API and SMART discovery, where browser SMART apps go. */
const CORS_PATHS = /^\/(fhir|\.well-known)(\/|\?|$)/;

/**
 * CORS (Fetch standard §3.2) for browser SMART apps on the origins FHIR_CORS_ORIGINS lists, or any with `*`.
 * A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered 204 in the first onRequest
 * hook, before authentication: a browser sends no token with it. Without Origin a request is not a CORS one
 * and goes on as ever (an OPTIONS on /fhir answers 405 with an OperationOutcome). Credentials (cookies) are
 * not allowed: a SMART app sends its token in Authorization.
 */
export async function registerCors(app: FastifyInstance, origins: readonly string[]): Promise<void> {
  if (origins.length === 0) return;
  const allowed = {
    origin: origins.includes('*') ? '*' : [...origins],
    methods: CORS_METHODS,
    allowedHeaders: CORS_ALLOWED_HEADERS,
    exposedHeaders: CORS_EXPOSED_HEADERS,
    maxAge: PREFLIGHT_MAX_AGE,
    credentials: false,
  };
  const none = { origin: false };
  const optionsFor = (request: FastifyRequest) => {
    if (request.headers.origin === undefined || !CORS_PATHS.test(request.url)) return none;
    // An OPTIONS that is no preflight is an ordinary request, which the router answers.
    if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] === undefined) return none;
    return allowed;
  };
  await app.register(cors, { hideOptionsRoute: true, delegator: (request, callback) => callback(null, optionsFor(request)) });
}
