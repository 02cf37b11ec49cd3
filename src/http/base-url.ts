import type { FastifyInstance, FastifyRequest } from 'fastify';
import { FhirError } from '../fhir/outcome.ts';

export interface BaseUrlOptions {
  /** PUBLIC_BASE_URL: the base, whatever the request's Host. */
  publicBaseUrl?: string;
  /** FHIR_ALLOWED_HOSTS: the Hosts a base may be built from (`host` any port, or `host:port`). */
  allowedHosts: readonly string[];
  /** The base when neither is set: the one tokens are issued for (`http://localhost:$PORT/fhir`). */
  defaultBaseUrl: string;
  /** Where the FHIR API is below a Host (`/fhir`). */
  basePath: string;
}

/**
 * The FHIR base URL of a request, put in `Location`, `Content-Location`, `fullUrl` and links, and taken as
 * this server's own when a reference is absolute. A Host header is the client's to write: built from it,
 * `Host: attacker.example` would send the next page, a created resource or a document's references to
 * another server (host header injection). So the base is PUBLIC_BASE_URL, else the request's Host only when
 * FHIR_ALLOWED_HOSTS lists it (as Django's ALLOWED_HOSTS), else the fixed default; as Medplum, whose base
 * is configured, never taken from a request.
 */
export function baseUrlResolver(options: BaseUrlOptions): (request: FastifyRequest) => string {
  if (options.publicBaseUrl) {
    const base = options.publicBaseUrl;
    return () => base;
  }
  if (options.allowedHosts.length > 0) {
    return (request) => {
      // The onRequest check refused other Hosts already; checked again so this never builds from one.
      if (!hostAllowed(request.host, options.allowedHosts)) throw hostRefused();
      return `${request.protocol}://${request.host.toLowerCase()}${options.basePath}`;
    };
  }
  return () => options.defaultBaseUrl;
}

/**
 * FHIR_ALLOWED_HOSTS: a request naming another Host is refused (400 with an OperationOutcome) before anything
 * else is done with it, as Django and Rails refuse a host they were not told about. `/health` is left
 * alone: load balancers probe it by address.
 */
export function registerHostCheck(app: FastifyInstance, allowedHosts: readonly string[]): void {
  if (allowedHosts.length === 0) return;
  app.addHook('onRequest', async (request) => {
    if (request.url === '/health' || request.url.startsWith('/health?')) return;
    if (!hostAllowed(request.host, allowedHosts)) throw hostRefused();
  });
}

/** Whether `host` (a Host header: `name`, `name:port`, `[v6]:port`) is one of `allowed`; an entry without a port allows any. */
export function hostAllowed(host: string | undefined, allowed: readonly string[]): boolean {
  if (!host) return false;
  const match = /^(\[[^\]]*\]|[^:[\]]*)(?::(\d{1,5}))?$/.exec(host.toLowerCase());
  if (!match) return false;
  const [whole, name] = match;
  return allowed.some((entry) => entry === whole || entry === name);
}

function hostRefused(): FhirError {
  // The Host is not echoed: what a client wrote there is not to be sent back.
  return new FhirError(400, [{ code: 'security', diagnostics: 'The Host header names no host this server answers to (FHIR_ALLOWED_HOSTS)' }]);
}
