import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { InputLimits } from '../fhir/input-limits.ts';
import type { FhirRouter } from '../router/router.ts';
import type { FhirRequest, HttpMethod } from '../router/request.ts';
import type { AccessContext } from '../store/access.ts';
import { PURPOSE_OF_USE_HEADER, withAssertedPurpose } from '../security/authorisation.ts';
import { StoredBinary } from '../store/repository.ts';
import { FHIR_JSON, negotiateResponseType, registerBodyParsers, sendRawBinary, sendResource, wantsRawBinary } from './content.ts';

export interface FhirRoutesOptions {
  router: FhirRouter;
  /** The FHIR base URL of a request (base-url.ts): PUBLIC_BASE_URL, an allowed Host, or the default; never any Host. */
  baseUrl: (request: FastifyRequest) => string;
  /** Body limit of POSTs to the base (transaction and batch Bundles), which may exceed other requests'. */
  bundleBodyLimit?: number;
  inputLimits: InputLimits;
  /**
   * The access context of a request. None yet: every request has all access until authorisation (the
   * SMART issue) builds it from the request's token; tests set it to prove the store applies it.
   */
  accessOf?: (request: FastifyRequest) => AccessContext;
  /**
   * Authentication (smart-auth.ts): the access context of a request's token, or a 401 FhirError. Run as
   * soon as the request is routed, before its body is read: a caller without a token costs nothing.
   * Absent with FHIR_AUTH=off, when every request has all access.
   */
  authenticate?: (request: FastifyRequest) => Promise<AccessContext>;
}

/** The access context each authenticated request was given. */
const authenticated = new WeakMap<FastifyRequest, AccessContext>();

/** The access context a request's token gave it, once authenticated (the rate limit's client). */
export function authenticatedAccess(request: FastifyRequest): AccessContext | undefined {
  return authenticated.get(request);
}

export const FHIR_BASE_PATH = '/fhir';

/**
 * The FHIR REST API over HTTP. Every method on every path below /fhir goes to the one transport-free
 * router, which decides 404 and 405 itself so that bundle entries get the same answers.
 */
export async function fhirRoutes(app: FastifyInstance, options: FhirRoutesOptions): Promise<void> {
  registerBodyParsers(app, options.inputLimits);
  const { authenticate } = options;
  if (authenticate) {
    app.addHook('onRequest', async (request) => {
      // The CapabilityStatement is public (R4 http.html#capabilities; SMART discovery starts from it).
      const path = (request.params as { '*'?: string })['*'] ?? '';
      if ((request.method === 'GET' || request.method === 'HEAD') && path === 'metadata') return;
      authenticated.set(request, withAssertedPurpose(await authenticate(request), request.headers[PURPOSE_OF_USE_HEADER]));
    });
  }

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const fhirRequest = toFhirRequest(request, options.baseUrl(request));
    const raw = wantsRawBinary(request, fhirRequest.path);
    const mediaType = raw ? FHIR_JSON : negotiateResponseType(request);
    const access = options.accessOf?.(request) ?? authenticated.get(request);
    const response = await options.router.handle({ ...fhirRequest, rawBinary: raw, streamBinary: true, ...(access ? { access } : {}) });
    reply.status(response.status).headers(response.headers);
    if (response.body === undefined) return reply.send();
    if (raw && response.body instanceof StoredBinary) return sendRawBinary(request, reply, response.body);
    return sendResource(request, reply, response.body, mediaType);
  };
  app.all(FHIR_BASE_PATH, options.bundleBodyLimit ? { bodyLimit: options.bundleBodyLimit } : {}, handler);
  app.all(`${FHIR_BASE_PATH}/*`, handler);
}

function toFhirRequest(request: FastifyRequest, baseUrl: string): FhirRequest {
  const header = (name: string) => {
    const value = request.headers[name];
    return Array.isArray(value) ? value.join(', ') : value;
  };
  return {
    method: request.method as HttpMethod,
    path: (request.params as { '*'?: string })['*'] ?? '',
    query: request.query as Record<string, string | string[]>,
    body: request.body,
    ifMatch: header('if-match'),
    ifNoneExist: header('if-none-exist'),
    securityContext: header('x-security-context'),
    prefer: header('prefer'),
    baseUrl,
  };
}
