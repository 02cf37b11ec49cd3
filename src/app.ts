import Fastify, { type FastifyInstance } from 'fastify';
import type { DestinationStream } from 'pino';
import { authAudience, configFromEnv, DEFAULT_RATE_LIMIT, type ServerConfig } from './config.ts';
import { loadCapabilityStatement } from './fhir/capability.ts';
import { DEFAULT_INPUT_LIMITS } from './fhir/input-limits.ts';
import { DeferredValidator } from './fhir/validation/deferred-validator.ts';
import { createProfileValidator, loadValidationContext } from './fhir/validation/profile-validator.ts';
import type { ResourceValidator } from './fhir/validation/validator.ts';
import { answerClientError, frameworkErrors, registerErrorHandlers } from './http/errors.ts';
import { baseUrlResolver, registerHostCheck } from './http/base-url.ts';
import { registerCors } from './http/cors.ts';
import { authorizationRoutes } from './http/authorization-routes.ts';
import { ehrLaunchRoutes } from './http/ehr-launch.ts';
import { authenticatedAccess, FHIR_BASE_PATH, fhirRoutes, type FhirRoutesOptions } from './http/fhir-routes.ts';
import { registerRateLimit } from './http/rate-limit.ts';
import { registerSecurityHeaders } from './http/security-headers.ts';
import { healthRoutes } from './http/health.ts';
import { bearerAuthenticator, smartDiscoveryRoutes } from './http/smart-auth.ts';
import { loggerOptions, requestId } from './http/logging.ts';
import { loadStoredDefinitions } from './operations/conformance.ts';
import { defaultOperations } from './operations/index.ts';
import { FhirRouter, type InteractionHook } from './router/router.ts';
import { auditEventsAppendOnly, AuditTrail } from './security/audit-trail.ts';
import { loadCompartments, prepareCompartments } from './search/compartment.ts';
import { DEFAULT_BINARY_INLINE_LIMIT } from './store/binary-store.ts';
import { DEFAULT_MAX_INDEX_ROWS } from './store/index-writer.ts';
import { loadSearchParameters, SearchParameterRegistry } from './search/registry.ts';
import { smartAuthorisation } from './security/authorisation.ts';
import { authorizationIssuer, createAuthorizationServer, resolveOAuthUris } from './security/authorization-server.ts';
import { generateIssuerKey, publicKeySet } from './security/embedded-issuer.ts';
import { storePatientDirectory } from './security/patient-directory.ts';
import { TokenVerifier } from './security/tokens.ts';
import { ALL_ACCESS, type Storage } from './store/resource-store.ts';
import { startupStep, type StartupLog } from './startup.ts';

export interface AppOptions {
  config: Pick<ServerConfig, 'logLevel' | 'bodyLimit' | 'publicBaseUrl'> &
    Partial<Pick<ServerConfig, 'bundleMaxEntries' | 'bundleBodyLimit' | 'unknownProfiles' | 'projectRules' | 'referentialIntegrity' | 'audit' | 'binaryInlineLimit' | 'requestTimeout' | 'headersTimeout' | 'idleTimeout' | 'keepAliveTimeout' | 'resourceMaxDepth' | 'resourceMaxArrayLength' | 'resourceMaxIndexRows' | 'auth' | 'authAudience' | 'authIssuers' | 'allowedHosts' | 'corsOrigins' | 'rateLimit' | 'trustProxy'>>;
  /** Where the resources are kept (src/store/storage.ts opens it); the app opens its store on it, and does not close it. */
  storage: Storage;
  /** Defaults to the profile validator; shared between app instances because building it takes seconds. */
  validator?: ResourceValidator;
  /** Where log lines go; standard output by default. */
  logStream?: DestinationStream;
  /** What every interaction passes through, bundle entries included: authorisation, consent and audit plug in here. */
  hooks?: InteractionHook[];
  /** Retry the start-up's database steps while the database is unreachable, instead of failing (the server process does). */
  waitForStorage?: boolean;
  /** Where the start-up steps are logged: the server process's own start-up log, so its lines keep their order; else the app's. */
  startupLog?: StartupLog;
  /** Each request's access context (all access when absent, as until the SMART issue): a test seam. */
  accessOf?: FhirRoutesOptions['accessOf'];
}

/** Staged Binary bytes no version claimed within a day were left by a server stopped mid-upload. */
const STALE_UPLOAD_SECONDS = 24 * 3600;

/**
 * The profile validators built so far, one per combination of the settings that shape them: building one
 * costs seconds, and several apps in one process (the tests) share it, but only when they ask for the same checks.
 */
const defaultValidators = new Map<string, DeferredValidator>();
let defaultRegistry: SearchParameterRegistry | undefined;

/** Builds the server on an open database: migrations applied, routes registered, not yet listening. */
export async function buildApp({ config, storage, validator, logStream, waitForStorage = false, startupLog, hooks, accessOf }: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerOptions(config.logLevel, logStream),
    bodyLimit: config.bodyLimit,
    requestIdHeader: false,
    genReqId: requestId,
    ...connectionTimeouts({ ...configFromEnv({}), ...definedOnly(config) }),
    frameworkErrors,
    clientErrorHandler: answerClientError,
    // X-Forwarded-* are anyone's to write: believed only from the proxies TRUST_PROXY names.
    trustProxy: config.trustProxy ?? false,
  });
  // Each step logs its duration: a start takes seconds, most of them building the validator.
  const log = startupLog ?? app.log;
  const registry = await startupStep(log, 'search registry', () => {
    if (!defaultRegistry) {
      const definitions = loadSearchParameters();
      defaultRegistry = new SearchParameterRegistry(definitions);
      prepareCompartments(definitions);
    }
    return defaultRegistry;
  });
  const binaryInlineLimit = config.binaryInlineLimit ?? DEFAULT_BINARY_INLINE_LIMIT;
  const store = await storage.open({ registry, maxIndexRows: config.resourceMaxIndexRows ?? DEFAULT_MAX_INDEX_ROWS, binaryInlineLimit, log: app.log });
  // The French profiles by default (FHIR_DEFAULT_PROFILES=none leaves only the base R4 checks). Built once the
  // server listens, between requests: the first answer does not wait for it, and a write arriving first builds it.
  const resourceValidator = validator ?? defaultValidatorFor({ unknownProfiles: config.unknownProfiles ?? 'warning', projectRules: config.projectRules ?? 'warning' });
  if (resourceValidator instanceof DeferredValidator) {
    app.addHook('onListen', () => {
      void startupStep(log, 'validator and profiles (after listening)', () => resourceValidator.warmUp()).catch((error: unknown) => app.log.error({ err: error }, 'building the validator failed'));
    });
  }
  const inputLimits = {
    maxDepth: config.resourceMaxDepth ?? DEFAULT_INPUT_LIMITS.maxDepth,
    maxArrayLength: config.resourceMaxArrayLength ?? DEFAULT_INPUT_LIMITS.maxArrayLength,
  };
  // The database steps come last: a server started during an outage has the rest ready when it returns.
  await startupStep(log, 'migrations', () => store.migrate(), { waitForStorage });
  await startupStep(log, 'sweep stale uploads', () => store.sweepStaleUploads(STALE_UPLOAD_SECONDS), { waitForStorage });
  // Profiles, value sets and code systems written through the API are what the validator uses from the first request.
  await startupStep(log, 'stored definitions', () => loadStoredDefinitions(store.forAccess(ALL_ACCESS), registry), { waitForStorage });
  // SMART on FHIR, on unless FHIR_AUTH=off: the embedded issuer's keys (made at the first start, kept in the
  // database) and the external issuers configured are the only ones whose tokens open /fhir.
  const authOn = (config.auth ?? 'on') === 'on';
  const audience = config.authAudience ?? authAudience(config.publicBaseUrl, configFromEnv({}).port);
  const issuerKeys = authOn ? await startupStep(log, 'issuer keys', () => store.issuerKeys(generateIssuerKey), { waitForStorage }) : [];
  // The authorization server's expired sessions, codes and tokens, forgotten at each start.
  if (authOn) await startupStep(log, 'sweep expired authorizations', () => store.authorization().sweepExpiredRecords(), { waitForStorage });
  // The embedded authorization server (/auth) signs with the same keys, under its own issuer identifier.
  const authOrigin = new URL(audience).origin;
  const verifier = authOn
    ? new TokenVerifier(audience, [
        { issuer: audience, jwks: publicKeySet(issuerKeys) },
        { issuer: authorizationIssuer(authOrigin), jwks: publicKeySet(issuerKeys) },
        ...(config.authIssuers ?? []).map(({ issuer, jwksUri }) => ({ issuer, jwks: new URL(jwksUri) })),
      ])
    : undefined;
  if (!authOn) {
    log.warn('FHIR_AUTH=off: NO AUTHENTICATION, NO AUTHORISATION. Anyone who can reach this server reads and writes every record. For local development only.');
  }
  const capabilityStatement = loadCapabilityStatement();
  const corsOrigins = config.corsOrigins ?? [];
  for (const rest of capabilityStatement.rest ?? []) {
    // Without authentication the statement does not claim SMART security it does not apply.
    if (!authOn) delete rest.security;
    else if (rest.security) {
      if (corsOrigins.length > 0) rest.security.cors = true;
      resolveOAuthUris(rest.security, authOrigin);
    }
  }
  const router = new FhirRouter({
    store,
    validator: resourceValidator,
    capabilityStatement,
    registry,
    compartments: loadCompartments(),
    limits: { maxEntries: config.bundleMaxEntries ?? 10_000, binaryInlineBytes: binaryInlineLimit },
    inputLimits,
    operations: defaultOperations(),
    // Scopes first: an interaction they do not allow reaches no other hook but the trail. The trail's guard
    // always (no client writes an AuditEvent), the trail itself last: it records what the others decided.
    hooks: [smartAuthorisation(registry), auditEventsAppendOnly, ...(hooks ?? []), ...((config.audit ?? 'on') === 'on' ? [new AuditTrail()] : [])],
    referentialIntegrity: (config.referentialIntegrity ?? 'on') === 'on',
  });

  // Callback hooks, not async ones: with every onSend hook synchronous, reply.send() ends the response before
  // the handler's promise settles, so Fastify does not wait for the stream's end on each request (Reply.then).
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    done(null, payload);
  });
  registerErrorHandlers(app);
  // Web hygiene, in this order: every answer's headers, then the Host check, CORS preflights (answered
  // before authentication), and the rate limit (after it, on each route registered below).
  const allowedHosts = config.allowedHosts ?? [];
  registerSecurityHeaders(app, { publicBaseUrl: config.publicBaseUrl });
  registerHostCheck(app, allowedHosts);
  await startupStep(log, 'routes', async () => {
    await registerCors(app, corsOrigins);
    await registerRateLimit(app, { perMinute: config.rateLimit ?? DEFAULT_RATE_LIMIT, accessOf: authenticatedAccess });
    await app.register(healthRoutes, { store });
    if (verifier) {
      await app.register(smartDiscoveryRoutes, { issuer: audience, authorizationServer: authorizationIssuer(authOrigin), jwks: async () => publicKeySet(await store.issuerKeys(generateIssuerKey)) });
      const provider = createAuthorizationServer({ origin: authOrigin, fhirBase: audience, keys: issuerKeys, store: store.authorization(), proxy: (config.trustProxy ?? []).length > 0 });
      const directory = storePatientDirectory(store, registry);
      await app.register(authorizationRoutes, { provider, store: store.authorization(), fhirBase: audience, directory });
      await app.register(ehrLaunchRoutes, { verifier, realm: audience, embeddedIssuers: [audience, authorizationIssuer(authOrigin)], store: store.authorization(), directory });
    }
    await app.register(fhirRoutes, {
      router,
      baseUrl: baseUrlResolver({ publicBaseUrl: config.publicBaseUrl, allowedHosts, defaultBaseUrl: audience, basePath: FHIR_BASE_PATH }),
      bundleBodyLimit: config.bundleBodyLimit,
      inputLimits,
      accessOf,
      ...(verifier ? { authenticate: bearerAuthenticator(verifier, audience) } : {}),
    });
  });
  return app;
}

/**
 * Node's timeouts on the connection, which Fastify leaves off by default (no requestTimeout): the
 * connection checks run often enough that a timeout fires within a quarter of itself.
 */
function connectionTimeouts(config: Pick<ServerConfig, 'requestTimeout' | 'headersTimeout' | 'idleTimeout' | 'keepAliveTimeout'>) {
  return {
    requestTimeout: config.requestTimeout,
    connectionTimeout: config.idleTimeout,
    keepAliveTimeout: config.keepAliveTimeout,
    http: { headersTimeout: config.headersTimeout, connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(config.headersTimeout / 4))) },
  };
}

function definedOnly<T extends object>(object: T): Partial<T> {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as Partial<T>;
}

function defaultValidatorFor(settings: Pick<ServerConfig, 'unknownProfiles' | 'projectRules'>): DeferredValidator {
  const key = `${settings.unknownProfiles} ${settings.projectRules}`;
  let validator = defaultValidators.get(key);
  if (!validator) {
    validator = new DeferredValidator(() => createProfileValidator({ ...settings }), {
      prepare: [() => loadValidationContext()],
      // The first check compiles the R4 schema, whose Resource list pulls in every type (about 2 s).
      exercise: [(built) => built.validate('Patient', { resourceType: 'Patient' })],
    });
    defaultValidators.set(key, validator);
  }
  return validator;
}
