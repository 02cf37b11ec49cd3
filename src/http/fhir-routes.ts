import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FhirRouter } from '../router/router.ts';
import type { FhirRequest, HttpMethod } from '../router/request.ts';
import { negotiateResponseType, registerBodyParsers, sendResource } from './content.ts';

export interface FhirRoutesOptions {
  router: FhirRouter;
  publicBaseUrl?: string;
}

export const FHIR_BASE_PATH = '/fhir';

/**
 * The FHIR REST API over HTTP. Every method on every path below /fhir goes to the one transport-free
 * router, which decides 404 and 405 itself so that bundle entries get the same answers.
 */
export async function fhirRoutes(app: FastifyInstance, options: FhirRoutesOptions): Promise<void> {
  registerBodyParsers(app);

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const mediaType = negotiateResponseType(request);
    const response = await options.router.handle(toFhirRequest(request, options.publicBaseUrl));
    reply.status(response.status).headers(response.headers);
    if (response.body === undefined) return reply.send();
    return sendResource(request, reply, response.body, mediaType);
  };
  app.all(FHIR_BASE_PATH, handler);
  app.all(`${FHIR_BASE_PATH}/*`, handler);
}

function toFhirRequest(request: FastifyRequest, publicBaseUrl: string | undefined): FhirRequest {
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
    prefer: header('prefer'),
    baseUrl: publicBaseUrl ?? `${request.protocol}://${request.host}${FHIR_BASE_PATH}`,
  };
}
