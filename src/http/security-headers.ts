import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * What an API answer may do once a browser has it: load nothing, run nothing, be framed by no page. JSON
 * needs none of it, and an answer that a browser would render by mistake can then do no harm.
 */
export const API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'";

/** A Binary of an active type, served raw: a unique opaque origin, no script, nothing loaded. */
export const ACTIVE_CONTENT_SECURITY_POLICY = "sandbox; default-src 'none'; frame-ancestors 'none'";

/** What every answer carries, whatever its request (HSTS aside, which depends on how the client came). */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});

/** One year, as OWASP advises; not `includeSubDomains`, which would speak for the deployer's other hosts. */
const STRICT_TRANSPORT_SECURITY = 'max-age=31536000';

/**
 * Media types a browser shows without running anything the document carries (images but SVG, PDF in the
 * browser's own viewer, plain text, audio and video, JSON). Every other type, HTML, SVG, any XML,
 * JavaScript and types unknown here, can script the server's origin once rendered from it (stored XSS), so
 * it is served as a download: an allow-list, since a deny-list misses the next active type.
 */
const PASSIVE_MEDIA_TYPES = new Set([
  'application/pdf',
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'image/avif',
  'image/bmp',
  'image/tiff',
  'text/plain',
  'text/csv',
  'audio/mpeg',
  'audio/ogg',
  'audio/wav',
  'audio/webm',
  'video/mp4',
  'video/webm',
  'video/ogg',
  'application/json',
  'application/fhir+json',
]);

/** Whether content of `contentType` may be shown inline from this origin (its parameters, `charset`…, aside). */
export function isPassiveMediaType(contentType: string): boolean {
  return PASSIVE_MEDIA_TYPES.has(contentType.split(';')[0]!.trim().toLowerCase());
}

/** Raw Binary answers of a passive type, which keep no Content-Security-Policy (below). */
const passiveContent = new WeakSet<FastifyReply>();

/**
 * The headers that make a Binary's raw content safe to serve from the API's origin. Active content is an
 * attachment (downloaded, not rendered) and, should a browser render it anyway, sandboxed. Passive content
 * stays inline, as before, with no policy: Chrome's PDF viewer does not open under `default-src 'none'`,
 * and `nosniff` (on every answer) keeps it the type it says.
 */
export function setRawContentHeaders(reply: FastifyReply, contentType: string): void {
  if (isPassiveMediaType(contentType)) {
    passiveContent.add(reply);
    return;
  }
  reply.header('content-disposition', 'attachment').header('content-security-policy', ACTIVE_CONTENT_SECURITY_POLICY);
}

export interface SecurityHeadersOptions {
  /** PUBLIC_BASE_URL: when it is https, clients reach the server over TLS (ended at a proxy), so HSTS is sent. */
  publicBaseUrl?: string;
}

/**
 * Security headers on every answer (OWASP HTTP Headers Cheat Sheet, REST Security): `nosniff`, no referrer,
 * a policy that lets an answer load and run nothing, HSTS when clients come over TLS. Written here rather
 * than with @fastify/helmet: helmet's defaults are for HTML pages (a dozen headers an API does not need),
 * it sends HSTS over plain HTTP too, and a raw Binary needs its own policy per answer.
 */
export function registerSecurityHeaders(app: FastifyInstance, options: SecurityHeadersOptions): void {
  const httpsBase = options.publicBaseUrl?.startsWith('https:') ?? false;
  // A callback hook, not an async one (app.ts says why).
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.headers(SECURITY_HEADERS);
    if (!reply.hasHeader('content-security-policy') && !passiveContent.has(reply)) reply.header('content-security-policy', API_CONTENT_SECURITY_POLICY);
    // Over plain HTTP a browser ignores it (RFC 6797 §8.1); request.protocol follows X-Forwarded-Proto only with TRUST_PROXY.
    if (httpsBase || request.protocol === 'https') reply.header('strict-transport-security', STRICT_TRANSPORT_SECURITY);
    // Fastify sends none; a plugin or proxy module that adds one names the software to an attacker.
    reply.removeHeader('x-powered-by');
    done(null, payload);
  });
}
