import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FhirError, type IssueCode } from '../fhir/outcome.ts';
import { accessFromToken } from '../security/authorisation.ts';
import { AUTHORIZATION_ENDPOINTS, CLIENT_ASSERTION_ALGORITHMS, NAMED_SCOPES } from '../security/authorization-server.ts';
import { CLOCK_SKEW_SECONDS, InvalidToken, type TokenVerifier } from '../security/tokens.ts';
import type { AccessContext } from '../store/access.ts';

/** Tokens verified lately, by their text: a client sends the same token with each request. */
const MAX_CACHED_TOKENS = 10_000;

/**
 * The transport side of SMART authentication: the request's `Authorization: Bearer <JWT>` verified
 * (tokens.ts) and turned into its access context, once per token (cached until it expires). Failures are
 * 401 with `WWW-Authenticate` (RFC 6750 §3) and an OperationOutcome.
 */
export function bearerAuthenticator(verifier: TokenVerifier, realm: string): (request: FastifyRequest) => Promise<AccessContext> {
  const cache = new Map<string, { access: AccessContext; expiresAt: number }>();
  return async (request) => {
    const token = bearerToken(request, realm);
    const now = Date.now() / 1000;
    const cached = cache.get(token);
    if (cached && cached.expiresAt + CLOCK_SKEW_SECONDS > now) return cached.access;
    if (cached) cache.delete(token);
    try {
      const verified = await verifier.verify(token);
      const access = accessFromToken(verified);
      if (cache.size >= MAX_CACHED_TOKENS) {
        for (const [key, entry] of cache) if (entry.expiresAt + CLOCK_SKEW_SECONDS <= now) cache.delete(key);
        // Still full: the oldest entries go (a Map iterates in insertion order).
        for (const key of cache.keys()) {
          if (cache.size < MAX_CACHED_TOKENS) break;
          cache.delete(key);
        }
      }
      cache.set(token, { access, expiresAt: verified.expiresAt });
      return access;
    } catch (error) {
      throw refusal(error, request, realm);
    }
  };
}

/** The request's bearer token; 401 without one, or with an Authorization header of another form. */
export function bearerToken(request: FastifyRequest, realm: string): string {
  const header = request.headers.authorization;
  if (header === undefined || header === '') throw unauthorised(realm, 'login', 'This server needs a SMART access token: Authorization: Bearer <token>');
  const match = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i.exec(header);
  if (!match) throw unauthorised(realm, 'security', 'The Authorization header must be Bearer <token>', 'invalid_request');
  return match[1]!;
}

/** A token the verifier refused, as a 401 with its reason (anything else thrown again). */
export function refusal(error: unknown, request: FastifyRequest, realm: string): unknown {
  if (!(error instanceof InvalidToken)) return error;
  request.log.info({ reason: error.message }, 'token refused');
  return unauthorised(realm, error.message === 'The token has expired' ? 'expired' : 'security', error.message, error.code);
}

function unauthorised(realm: string, code: IssueCode, diagnostics: string, error?: 'invalid_token' | 'invalid_request'): FhirError {
  // RFC 6750 §3.1: a request without credentials gets the challenge without an error code.
  const challenge = [`realm="${realm}"`, ...(error ? [`error="${error}"`, `error_description="${diagnostics.replace(/["\\]/g, '')}"`] : [])].join(', ');
  return new FhirError(401, [{ code, diagnostics }], { 'www-authenticate': `Bearer ${challenge}` });
}

export interface SmartDiscoveryOptions {
  /** The embedded issuer's identifier: the server's FHIR base URL. */
  issuer: string;
  /** The embedded authorization server's issuer identifier (`https://dmp.example/auth`). */
  authorizationServer: string;
  /** The embedded issuer's public keys. */
  jwks: () => Promise<{ keys: unknown[] }>;
}

/** Where the FHIR base publishes its SMART configuration and its issuer keys (both public, no token needed). */
export const SMART_CONFIGURATION_PATHS = ['/fhir/.well-known/smart-configuration', '/.well-known/smart-configuration'];
export const JWKS_PATH = '/fhir/.well-known/jwks.json';

/** SMART's scopes, in v2 and v1 form, besides the resource-specific ones (`patient/Observation.rs`). */
const SCOPES_SUPPORTED = ['patient/*.rs', 'patient/*.cruds', 'user/*.rs', 'user/*.cruds', 'system/*.rs', 'system/*.cruds', 'patient/*.read', 'user/*.read', 'user/*.write', 'system/*.read', 'system/*.write'];

/**
 * SMART App Launch 2.0 discovery (conformance.html#using-well-known): the embedded authorization server's
 * endpoints (src/security/authorization-server.ts), what it grants, and the keys tokens are signed with.
 */
export async function smartDiscoveryRoutes(app: FastifyInstance, options: SmartDiscoveryOptions): Promise<void> {
  const endpoint = (name: keyof typeof AUTHORIZATION_ENDPOINTS) => `${options.authorizationServer}${AUTHORIZATION_ENDPOINTS[name]}`;
  const configuration = {
    issuer: options.authorizationServer,
    jwks_uri: `${options.issuer}/.well-known/jwks.json`,
    authorization_endpoint: endpoint('authorization'),
    token_endpoint: endpoint('token'),
    introspection_endpoint: endpoint('introspection'),
    revocation_endpoint: endpoint('revocation'),
    userinfo_endpoint: endpoint('userinfo'),
    grant_types_supported: ['authorization_code', 'client_credentials', 'refresh_token'],
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'none'],
    token_endpoint_auth_signing_alg_values_supported: CLIENT_ASSERTION_ALGORITHMS,
    scopes_supported: [...NAMED_SCOPES, ...SCOPES_SUPPORTED],
    capabilities: [
      'launch-ehr',
      'launch-standalone',
      'client-public',
      'client-confidential-asymmetric',
      'client-confidential-symmetric',
      'context-ehr-patient',
      'context-ehr-encounter',
      'context-standalone-patient',
      'sso-openid-connect',
      'permission-offline',
      'permission-online',
      'permission-v1',
      'permission-v2',
      'permission-patient',
      'permission-user',
      'authorize-post',
    ],
  };
  for (const path of SMART_CONFIGURATION_PATHS) {
    app.get(path, async (_request, reply) => reply.header('cache-control', 'public, max-age=3600').send(configuration));
  }
  app.get(JWKS_PATH, async (_request, reply) => reply.type('application/jwk-set+json').header('cache-control', 'public, max-age=600').send(await options.jwks()));
}
