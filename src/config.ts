import { availableParallelism } from 'node:os';
import type { LevelWithSilent } from 'pino';
import { DEFAULT_BINARY_INLINE_LIMIT } from './store/binary-store.ts';
import { DEFAULT_INPUT_LIMITS } from './fhir/input-limits.ts';
import { DEFAULT_MAX_INDEX_ROWS } from './store/index-writer.ts';

export interface ServerConfig {
  port: number;
  host: string;
  /** `postgres://…` for a PostgreSQL server, otherwise a PGlite data directory (`memory://` for RAM). */
  databaseUrl: string;
  logLevel: LevelWithSilent;
  /** Largest accepted request body, in bytes. */
  bodyLimit: number;
  /** Most entries accepted in one transaction or batch Bundle. */
  bundleMaxEntries: number;
  /** Largest transaction or batch Bundle accepted, in bytes. */
  bundleBodyLimit: number;
  /** `warning` (default) or `error` for a `meta.profile` this server does not know. */
  unknownProfiles: 'warning' | 'error';
  /** `warning` (default) or `error` for the project's own rules where they apply only as a type's default profile. */
  projectRules: 'warning' | 'error';
  /**
   * `on` (default): a write's references to this server must name resources it holds, and a transaction's
   * `urn:uuid:` ones must be resolved; `off` keeps whatever references are written (legacy data migrations).
   */
  referentialIntegrity: 'on' | 'off';
  /**
   * `on` (default): every interaction leaves an AuditEvent (IHE BALP), a write's in its own transaction;
   * `off` keeps no trail (benchmarks, migrations of legacy data).
   */
  audit: 'on' | 'off';
  /**
   * PUBLIC_BASE_URL: the FHIR base URL put in `Location`, `fullUrl` and links (and tokens' audience). Without
   * it, the base is built from a Host of `allowedHosts`, else it is `http://localhost:$PORT/fhir`: never
   * from a Host header nobody vouched for.
   */
  publicBaseUrl?: string;
  /**
   * FHIR_ALLOWED_HOSTS: the only `Host` headers (`host` any port, or `host:port`) the server answers to
   * (400 otherwise); without PUBLIC_BASE_URL, the base URL is built from the request's one. Empty: any Host,
   * never used in a URL.
   */
  allowedHosts: string[];
  /** FHIR_CORS_ORIGINS: origins (`https://app.example`) whose browser apps may call the API, or `*`; none: no CORS. */
  corsOrigins: string[];
  /** FHIR_RATE_LIMIT: requests per minute one client (one token's client and subject, else one address) may make; 0: no limit. */
  rateLimit: number;
  /**
   * TRUST_PROXY: the proxies whose `X-Forwarded-For`/`-Proto`/`-Host` are believed (addresses or CIDRs);
   * none by default, when those headers are ignored.
   */
  trustProxy?: string[];
  /** Deepest nesting of objects and arrays accepted in a JSON body. */
  resourceMaxDepth: number;
  /** Most items accepted in one array of a JSON body (a Bundle's own entries aside). */
  resourceMaxArrayLength: number;
  /** Most search index rows one resource may produce. */
  resourceMaxIndexRows: number;
  /** Server processes sharing the port (PostgreSQL only: an embedded PGlite store belongs to one process). */
  workers: number;
  /** The largest Binary whose base64 `data` is put into a Bundle or made one text; larger ones are streamed or left out. */
  binaryInlineLimit: number;
  /** Time a client has to send a whole request, body included, in ms (408 and the connection closed beyond). */
  requestTimeout: number;
  /** Time a client has to send a request's headers, in ms. */
  headersTimeout: number;
  /** A connection on which nothing goes either way for this long is closed, in ms (0: never). */
  idleTimeout: number;
  /** How long a kept-alive connection waits for its next request, in ms. */
  keepAliveTimeout: number;
  /** FHIR_AUTH: `on` (default), every /fhir request but metadata needs a SMART token; `off` for local development only. */
  auth: 'on' | 'off';
  /**
   * The FHIR base URL tokens must be issued for (`aud`), which is also the embedded issuer's identifier:
   * PUBLIC_BASE_URL, else `http://localhost:$PORT/fhir` (what `npm run token` puts in its tokens).
   */
  authAudience: string;
  /** FHIR_AUTH_ISSUERS: external issuers trusted besides the embedded one, each with its JWKS URL. */
  authIssuers: Array<{ issuer: string; jwksUri: string }>;
  /**
   * Encryption at rest (src/store/encryption.ts, README): FHIR_ENCRYPTION `on` (default) or `off`; the master key
   * as base64 (FHIR_MASTER_KEY) or in a file (FHIR_MASTER_KEY_FILE). Without one, an embedded store generates
   * its own beside its data directory (with a warning) and a PostgreSQL server refuses to start.
   */
  encryption?: { mode: 'on' | 'off'; masterKey?: string; masterKeyFile?: string; previousMasterKeys?: string };
}

/**
 * Requests per minute per client by default: 100 a second sustained, bursts of up to 6,000 within a minute,
 * far above what an application or a user's browser sends; an integration pushing more raises it.
 */
export const DEFAULT_RATE_LIMIT = 6000;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const port = integer(env.PORT, 8080, 'PORT');
  const bodyLimit = integer(env.BODY_LIMIT, 16 * 1024 * 1024, 'BODY_LIMIT');
  const logLevel = env.LOG_LEVEL ?? 'info';
  if (!LOG_LEVELS.includes(logLevel)) throw new Error(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  const auth = oneOf(env.FHIR_AUTH, ['on', 'off'] as const, 'on', 'FHIR_AUTH');
  const publicBaseUrl = env.PUBLIC_BASE_URL ? env.PUBLIC_BASE_URL.replace(/\/+$/, '') : undefined;
  return {
    port,
    // Without authentication the server answers only this machine unless told otherwise.
    host: env.HOST || (auth === 'off' ? '127.0.0.1' : '0.0.0.0'),
    databaseUrl: env.DATABASE_URL ?? './data/pglite',
    logLevel: logLevel as LevelWithSilent,
    bodyLimit,
    bundleMaxEntries: integer(env.BUNDLE_MAX_ENTRIES, 10_000, 'BUNDLE_MAX_ENTRIES'),
    bundleBodyLimit: integer(env.BUNDLE_BODY_LIMIT, 64 * 1024 * 1024, 'BUNDLE_BODY_LIMIT'),
    unknownProfiles: oneOf(env.FHIR_UNKNOWN_PROFILES, ['warning', 'error'] as const, 'warning', 'FHIR_UNKNOWN_PROFILES'),
    projectRules: oneOf(env.FHIR_PROJECT_RULES, ['warning', 'error'] as const, 'warning', 'FHIR_PROJECT_RULES'),
    referentialIntegrity: oneOf(env.FHIR_REFERENTIAL_INTEGRITY, ['on', 'off'] as const, 'on', 'FHIR_REFERENTIAL_INTEGRITY'),
    audit: oneOf(env.FHIR_AUDIT, ['on', 'off'] as const, 'on', 'FHIR_AUDIT'),
    resourceMaxDepth: integer(env.RESOURCE_MAX_DEPTH, DEFAULT_INPUT_LIMITS.maxDepth, 'RESOURCE_MAX_DEPTH'),
    resourceMaxArrayLength: integer(env.RESOURCE_MAX_ARRAY_LENGTH, DEFAULT_INPUT_LIMITS.maxArrayLength, 'RESOURCE_MAX_ARRAY_LENGTH'),
    resourceMaxIndexRows: integer(env.RESOURCE_MAX_INDEX_ROWS, DEFAULT_MAX_INDEX_ROWS, 'RESOURCE_MAX_INDEX_ROWS'),
    publicBaseUrl,
    allowedHosts: allowedHosts(env.FHIR_ALLOWED_HOSTS),
    corsOrigins: corsOrigins(env.FHIR_CORS_ORIGINS),
    rateLimit: integer(env.FHIR_RATE_LIMIT, DEFAULT_RATE_LIMIT, 'FHIR_RATE_LIMIT'),
    ...trustedProxies(env.TRUST_PROXY),
    auth,
    authAudience: authAudience(publicBaseUrl, port),
    authIssuers: trustedIssuers(env.FHIR_AUTH_ISSUERS),
    workers: env.WORKERS === 'auto' ? availableParallelism() : integer(env.WORKERS, 1, 'WORKERS') || 1,
    binaryInlineLimit: integer(env.BINARY_INLINE_LIMIT, DEFAULT_BINARY_INLINE_LIMIT, 'BINARY_INLINE_LIMIT'),
    encryption: {
      mode: oneOf(env.FHIR_ENCRYPTION, ['on', 'off'] as const, 'on', 'FHIR_ENCRYPTION'),
      ...(env.FHIR_MASTER_KEY ? { masterKey: env.FHIR_MASTER_KEY } : {}),
      ...(env.FHIR_MASTER_KEY_FILE ? { masterKeyFile: env.FHIR_MASTER_KEY_FILE } : {}),
      ...(env.FHIR_PREVIOUS_MASTER_KEYS ? { previousMasterKeys: env.FHIR_PREVIOUS_MASTER_KEYS } : {}),
    },
    ...timeouts(env),
  };
}

/**
 * Bounds on slow clients: 300 connections sending their bodies a byte at a time were once never cut. A
 * whole request must arrive within REQUEST_TIMEOUT (10 minutes by default: a 64 MB Bundle at 110 KB/s);
 * who raises BODY_LIMIT for large documents on slow links raises it too.
 */
function timeouts(env: NodeJS.ProcessEnv): Pick<ServerConfig, 'requestTimeout' | 'headersTimeout' | 'idleTimeout' | 'keepAliveTimeout'> {
  const requestTimeout = integer(env.REQUEST_TIMEOUT, 600_000, 'REQUEST_TIMEOUT');
  const headersTimeout = integer(env.HEADERS_TIMEOUT, Math.min(30_000, requestTimeout || 30_000), 'HEADERS_TIMEOUT');
  if (requestTimeout === 0 || headersTimeout === 0) throw new Error('REQUEST_TIMEOUT and HEADERS_TIMEOUT must be positive');
  if (headersTimeout > requestTimeout) throw new Error(`HEADERS_TIMEOUT (${headersTimeout}) must not exceed REQUEST_TIMEOUT (${requestTimeout})`);
  return {
    requestTimeout,
    headersTimeout,
    idleTimeout: integer(env.IDLE_TIMEOUT, requestTimeout, 'IDLE_TIMEOUT'),
    keepAliveTimeout: integer(env.KEEP_ALIVE_TIMEOUT, 72_000, 'KEEP_ALIVE_TIMEOUT') || 1,
  };
}

/** The FHIR base URL tokens are issued for: the public one, else the one a client on this machine uses. */
export function authAudience(publicBaseUrl: string | undefined, port: number): string {
  return publicBaseUrl ?? `http://localhost:${port}/fhir`;
}

/** A comma-separated list, its items trimmed, empty ones dropped. */
function list(value: string | undefined): string[] {
  return (value ?? '').split(',').map((item) => item.trim()).filter((item) => item !== '');
}

/** FHIR_ALLOWED_HOSTS: `host` or `host:port` items, an IPv6 address in brackets; compared in lower case. */
function allowedHosts(value: string | undefined): string[] {
  return list(value).map((host) => {
    const lower = host.toLowerCase();
    if (!/^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)(:\d{1,5})?$/.test(lower)) {
      throw new Error(`FHIR_ALLOWED_HOSTS must list hosts as host or host:port, not '${host}'`);
    }
    return lower;
  });
}

/** FHIR_CORS_ORIGINS: origins as browsers send them (`https://app.example:8443`, no path), or `*` alone. */
function corsOrigins(value: string | undefined): string[] {
  const origins = list(value);
  if (origins.includes('*')) {
    if (origins.length > 1) throw new Error('FHIR_CORS_ORIGINS is either * alone or a list of origins');
    return origins;
  }
  return origins.map((origin) => {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin.replace(/\/$/, '').toLowerCase()) {
      throw new Error(`FHIR_CORS_ORIGINS must list origins as scheme://host[:port], not '${origin}'`);
    }
    return parsed.origin;
  });
}

/**
 * TRUST_PROXY: the proxies' addresses and CIDRs (Fastify's trustProxy, through proxy-addr). Not `true` nor a
 * number of hops: either believes a client that writes X-Forwarded-For itself (Fastify refuses hop counts).
 */
function trustedProxies(value: string | undefined): Pick<ServerConfig, 'trustProxy'> {
  const proxies = list(value);
  if (proxies.length === 0) return {};
  for (const proxy of proxies) {
    if (!/^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F]*:[0-9a-fA-F:.]*)(\/\d{1,3})?$/.test(proxy) && !['loopback', 'linklocal', 'uniquelocal'].includes(proxy)) {
      throw new Error(`TRUST_PROXY must list addresses, CIDRs, loopback, linklocal or uniquelocal, not '${proxy}'`);
    }
  }
  return { trustProxy: proxies };
}

/** FHIR_AUTH_ISSUERS: a JSON list `[{"issuer": "https://idp.example", "jwks_uri": "https://idp.example/jwks"}]`. */
function trustedIssuers(value: string | undefined): ServerConfig['authIssuers'] {
  if (value === undefined || value.trim() === '') return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new Error('FHIR_AUTH_ISSUERS must be a JSON list of {"issuer", "jwks_uri"}');
  }
  if (!Array.isArray(parsed)) throw new Error('FHIR_AUTH_ISSUERS must be a JSON list of {"issuer", "jwks_uri"}');
  return parsed.map((entry: { issuer?: unknown; jwks_uri?: unknown }) => {
    if (typeof entry?.issuer !== 'string' || typeof entry.jwks_uri !== 'string' || !/^https?:\/\//.test(entry.jwks_uri)) {
      throw new Error('each FHIR_AUTH_ISSUERS entry needs an "issuer" and an http(s) "jwks_uri"');
    }
    return { issuer: entry.issuer, jwksUri: entry.jwks_uri };
  });
}

function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], fallback: T, name: string): T {
  if (value === undefined || value === '') return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`${name} must be one of ${allowed.join(', ')}, not '${value}'`);
  return value as T;
}

function integer(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined || value === '') return fallback;
  if (!/^\d+$/.test(value)) throw new Error(`${name} must be a non-negative integer, not '${value}'`);
  return Number(value);
}
