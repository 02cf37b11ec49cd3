import { createHash } from 'node:crypto';
import { decodeJwt } from 'jose';
import Provider, { errors, type Adapter, type AdapterPayload, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { AuthorizationStore, IssuerKey } from '../store/resource-store.ts';
import { GRANT_TTL, grantableScopes, LAUNCH_CONTEXT, NAMED_SCOPES, rememberedGrant } from './authorization-grants.ts';
import { EMBEDDED_ALGORITHM } from './embedded-issuer.ts';
import type { LaunchContext } from './launch.ts';
import { verifyPassword } from './passwords.ts';
import { escapeXml } from '../fhir/xml-text.ts';

export { NAMED_SCOPES } from './authorization-grants.ts';

/** The endpoints, below the issuer (`https://dmp.example/auth`), as the provider's `routes` puts them. */
export const AUTHORIZATION_ENDPOINTS = {
  authorization: '/authorize',
  token: '/token',
  jwks: '/jwks',
  introspection: '/token/introspection',
  revocation: '/token/revocation',
  userinfo: '/me',
} as const;

/** Where the authorization server is mounted on the FHIR server's origin. */
export const AUTHORIZATION_PATH = '/auth';

/** The path of the login page; `uid` is the provider's interaction. */
export const INTERACTION_PATH = `${AUTHORIZATION_PATH}/interaction`;

/** SMART's signature algorithms for a backend client's assertion (RS384 and ES384 required), and a few more. */
export const CLIENT_ASSERTION_ALGORITHMS = ['RS384', 'ES384', 'RS256', 'ES256', 'RS512', 'ES512', 'PS256', 'PS384', 'PS512', 'EdDSA'];

/** Lifetimes, in seconds. */
const ACCESS_TOKEN_TTL = 3600;

/** How long a user has to log in, pick a patient and approve, in seconds. */
export const INTERACTION_TTL = 600;

/** The client metadata saying a client is an EHR, which may mint launches (`npm run client -- --ehr`). */
export const EHR_LAUNCH_METADATA = 'ehr_launch';

export interface AuthorizationServerOptions {
  /** The FHIR server's origin (`https://dmp.example`): the provider's issuer is its `/auth`. */
  origin: string;
  /** The FHIR base URL: the audience (`aud`) of every access token. */
  fhirBase: string;
  /** The embedded issuer's keys, signing one first: the access tokens are signed as `npm run token`'s are. */
  keys: readonly IssuerKey[];
  store: AuthorizationStore;
  /** Whether X-Forwarded-Proto/-Host are believed (TRUST_PROXY set). */
  proxy?: boolean;
}

/** The issuer identifier of the embedded authorization server. */
export function authorizationIssuer(origin: string): string {
  return `${origin}${AUTHORIZATION_PATH}`;
}

/**
 * The embedded authorization server: oidc-provider (by the author of jose, which verifies the tokens),
 * configured for SMART. Backend services authenticate with a `private_key_jwt` assertion against the JWKS
 * they were registered with; apps use the authorization code with PKCE (S256), standalone or from an EHR
 * launch. Its access tokens are JWTs signed with the embedded issuer's key, for the FHIR base.
 */
export function createAuthorizationServer(options: AuthorizationServerOptions): Provider {
  const { store, fhirBase } = options;
  const issuer = authorizationIssuer(options.origin);
  const signing = options.keys[0];
  if (!signing) throw new Error('the embedded issuer has no key');
  // Cookie signing keys derived from the issuer's private key: every server process on one database agrees on them.
  const cookieKey = createHash('sha256').update(`dossier cookies ${JSON.stringify(signing.privateJwk)}`).digest('base64url');

  const configuration: Configuration = {
    adapter: recordsAdapter(store),
    jwks: { keys: options.keys.map((key) => ({ ...key.privateJwk, use: 'sig' }) as never) },
    clientAuthMethods: ['private_key_jwt', 'client_secret_basic', 'client_secret_post', 'none'],
    // The consent page names the app; an EHR's registration says it may mint launches (src/http/ehr-launch.ts).
    extraClientMetadata: { properties: [EHR_LAUNCH_METADATA], validator: (_ctx, key, value) => {
      if (key === EHR_LAUNCH_METADATA && value !== undefined && typeof value !== 'boolean') throw new errors.InvalidClientMetadata(`${EHR_LAUNCH_METADATA} must be a boolean`);
    } },
    enabledJWA: {
      clientAuthSigningAlgValues: CLIENT_ASSERTION_ALGORITHMS as never,
      idTokenSigningAlgValues: [EMBEDDED_ALGORITHM] as never,
    },
    clientDefaults: { grant_types: ['authorization_code'], response_types: ['code'], token_endpoint_auth_method: 'none', id_token_signed_response_alg: EMBEDDED_ALGORITHM },
    scopes: NAMED_SCOPES,
    claims: { openid: ['sub'], fhirUser: ['fhirUser'], profile: ['fhirUser', 'preferred_username'] },
    extraParams: {
      launch: null,
      // SMART: the app names the FHIR server it means; a token for another server would be a confused deputy.
      aud(_ctx, value) {
        if (value !== undefined && value !== fhirBase) throw new errors.InvalidRequest(`aud must be this server's FHIR base URL, ${fhirBase}`);
      },
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => fhirBase,
        useGrantedResource: () => true,
        getResourceServerInfo: async (ctx, indicator, client) => {
          if (indicator !== fhirBase) throw new errors.InvalidTarget(`this server issues tokens for ${fhirBase} only`);
          const registered = await store.client(client.clientId);
          const granted = grantableScopes(requestedScopes(ctx), registered);
          if (ctx.oidc.route === 'token' && ctx.oidc.params?.grant_type === 'client_credentials' && granted.length === 0) {
            throw new errors.InvalidScope(`none of the requested scopes is one client ${client.clientId} was registered for`, String(ctx.oidc.params?.scope ?? ""));
          }
          return { scope: granted.join(' '), audience: fhirBase, accessTokenFormat: 'jwt', accessTokenTTL: ACCESS_TOKEN_TTL, jwt: { sign: { alg: signing.alg as 'ES256' } } };
        },
      },
    },
    routes: { ...AUTHORIZATION_ENDPOINTS },
    pkce: { required: () => true },
    // A browser app may call the token endpoint from the origin of one of its redirect URIs.
    clientBasedCORS: (_ctx, origin, client) => client.redirectUris?.some((uri) => new URL(uri).origin === origin) ?? false,
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL,
      ClientCredentials: ACCESS_TOKEN_TTL,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: INTERACTION_TTL,
      Session: 8 * 3600,
      Grant: GRANT_TTL,
      // online_access: the refresh token lasts the session's day; offline_access: a month.
      RefreshToken: (_ctx, token) => (token.scopes.has('offline_access') ? GRANT_TTL : 8 * 3600),
    },
    issueRefreshToken: async (_ctx, client, code) => client.grantTypeAllowed('refresh_token') && (code.scopes.has('offline_access') || code.scopes.has('online_access')),
    rotateRefreshToken: true,
    cookies: { keys: [cookieKey], names: { session: 'dossier_session', interaction: 'dossier_interaction', resume: 'dossier_resume' } },
    interactions: { url: (_ctx, interaction) => `${INTERACTION_PATH}/${interaction.uid}` },
    findAccount: async (_ctx, sub) => {
      const account = await store.account(sub);
      if (!account) return undefined;
      return { accountId: sub, claims: () => ({ sub, preferred_username: sub, ...(account.fhirUser ? { fhirUser: absolute(fhirBase, account.fhirUser) } : {}) }) };
    },
    // Each authorization is its own grant, carrying its launch context: made by the consent page
    // (src/http/authorization-routes.ts), which asks the user or, for scopes approved before, does not.
    loadExistingGrant: async (ctx) => {
      const grantId = ctx.oidc.result?.consent?.grantId;
      if (typeof grantId === 'string') return ctx.oidc.provider.Grant.find(grantId);
      // prompt=none shows no page: an authorization approved before is granted here, as the page would have.
      const accountId = ctx.oidc.session?.accountId;
      if (!ctx.oidc.prompts.has('none') || !accountId) return undefined;
      const silent = await rememberedGrant(ctx.oidc.provider, store, fhirBase, {
        accountId,
        clientId: ctx.oidc.client!.clientId,
        scope: String(ctx.oidc.params?.scope ?? ''),
        ...(ctx.oidc.params?.launch !== undefined ? { launch: ctx.oidc.params.launch } : {}),
      });
      return silent ? ctx.oidc.provider.Grant.find(silent) : undefined;
    },
    extraTokenClaims: async (_ctx, token) => {
      const grantId = (token as { grantId?: string }).grantId;
      if (!grantId) return undefined;
      const context = await store.record(LAUNCH_CONTEXT, grantId);
      if (!context) return undefined;
      const { patient, encounter, fhirUser } = context.payload as LaunchContext;
      return { ...(patient ? { patient } : {}), ...(encounter ? { encounter } : {}), ...(fhirUser ? { fhirUser } : {}) };
    },
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = page('Authorization failed', `<p>${escapeXml(String(out.error))}: ${escapeXml(String(out.error_description ?? ''))}</p>`);
    },
  };
  const provider = new Provider(issuer, configuration);
  provider.proxy = options.proxy ?? false;
  // A confidential app's secret is stored as a scrypt hash, as account passwords are (`npm run client -- --secret`).
  provider.Client.prototype.compareClientSecret = async function (this: { clientSecret?: string }, actual: string) {
    return typeof this.clientSecret === 'string' && typeof actual === 'string' && verifyPassword(actual, this.clientSecret);
  };
  // SMART lets a public app refresh with the refresh token alone (no client_id), which the provider needs
  // to find the client: it is read from the refresh token, for a public client only.
  provider.use(async (ctx, next) => {
    if (ctx.path === AUTHORIZATION_ENDPOINTS.token && ctx.method === 'POST' && ctx.is('application/x-www-form-urlencoded') && !ctx.get('authorization')) {
      const form = new URLSearchParams(await readForm(ctx.req));
      const token = form.get('refresh_token');
      if (form.get('grant_type') === 'refresh_token' && token && !form.has('client_id') && !form.has('client_assertion')) {
        const record = await store.record('RefreshToken', token);
        const clientId = typeof record?.payload.clientId === 'string' ? record.payload.clientId : undefined;
        const client = clientId ? await store.client(clientId) : undefined;
        if (client && client.metadata.token_endpoint_auth_method === 'none') form.set('client_id', client.clientId);
      }
      // Read already: the provider takes the parsed form (its documented fallback for an upstream parser).
      (ctx.req as typeof ctx.req & { body?: unknown }).body = Object.fromEntries(form);
    }
    await next();
  });
  // OpenID Connect grants offline_access only with prompt=consent, which SMART apps do not send: every
  // authorization but prompt=none's goes through the consent page anyway (which does not ask again what was
  // approved before); prompt=none gets no offline_access.
  provider.use(async (ctx, next) => {
    if (ctx.path === AUTHORIZATION_ENDPOINTS.authorization && ctx.method === 'GET' && typeof ctx.query.scope === 'string' && ctx.query.scope.split(' ').includes('offline_access')) {
      const prompts = new Set(String(ctx.query.prompt ?? '').split(' ').filter(Boolean));
      if (!prompts.has('none')) {
        prompts.add('consent');
        // The provider finds its mount point by comparing originalUrl with the URL: both change together.
        const raw = ctx.req as typeof ctx.req & { originalUrl?: string };
        const mountPath = raw.originalUrl?.slice(0, Math.max(0, raw.originalUrl.indexOf(ctx.url))) ?? '';
        ctx.query = { ...ctx.query, prompt: [...prompts].join(' ') };
        raw.originalUrl = mountPath + ctx.url;
      }
    }
    await next();
  });
  // SMART's token response names the launch context beside the token (`patient`, `encounter`).
  provider.use(async (ctx, next) => {
    await next();
    const body = ctx.body as Record<string, unknown> | undefined;
    if (ctx.oidc?.route !== 'token' || ctx.status !== 200 || typeof body?.access_token !== 'string') return;
    // The token response's scope is what the app was granted (SMART): the named scopes of its code or
    // refresh token (openid, fhirUser, offline_access…), which the JWT's resource scopes leave out.
    const source = ctx.oidc.entities.RefreshToken?.scope ?? ctx.oidc.entities.AuthorizationCode?.scope;
    if (source !== undefined) {
      const named = String(source).split(' ').filter((scope: string) => NAMED_SCOPES.includes(scope));
      body.scope = [...new Set([...named, ...String(body.scope ?? '').split(' ').filter(Boolean)])].join(' ');
    }
    const claims = decodeJwt(body.access_token);
    if (typeof claims.patient === 'string') body.patient = claims.patient;
    if (typeof claims.encounter === 'string') body.encounter = claims.encounter;
  });
  return provider;
}

/** The token endpoint's form, at most as long as the provider itself reads (56 KiB). */
async function readForm(request: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of request) {
    length += chunk.length;
    if (length > 56 * 1024) throw new errors.InvalidRequest('the request body is too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The scopes asked for: the request's, else (code exchange, refresh) those of the code or token it comes from. */
function requestedScopes(ctx: KoaContextWithOIDC): string[] {
  const { params, entities } = ctx.oidc;
  const source = (params?.scope as string | undefined) ?? entities.RefreshToken?.scope ?? entities.AuthorizationCode?.scope ?? '';
  return source.split(' ').filter(Boolean);
}

/** The provider's adapter (its storage interface) over the store: clients from `authz_client`, the rest as records. */
function recordsAdapter(store: AuthorizationStore): new (model: string) => Adapter {
  return class RecordsAdapter implements Adapter {
    constructor(private readonly model: string) {}

    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      await store.saveRecord(this.model, id, payload as Record<string, unknown>, expiresIn || undefined);
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.model === 'Client') {
        const client = await store.client(id);
        return client ? ({ ...client.metadata, client_id: client.clientId } as AdapterPayload) : undefined;
      }
      return payloadOf(await store.record(this.model, id));
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      return payloadOf(await store.recordByUserCode(this.model, userCode));
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      return payloadOf(await store.recordByUid(this.model, uid));
    }

    async consume(id: string): Promise<void> {
      await store.consumeRecord(this.model, id);
    }

    async destroy(id: string): Promise<void> {
      await store.removeRecord(this.model, id);
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      await store.removeGrant(grantId);
    }
  };
}

function payloadOf(record: Awaited<ReturnType<AuthorizationStore['record']>>): AdapterPayload | undefined {
  if (!record) return undefined;
  return { ...record.payload, ...(record.consumed ? { consumed: true } : {}) } as AdapterPayload;
}

/**
 * `fhirUser` in the ID token is a URL (SMART): a relative reference is made absolute on the FHIR base. The
 * access token keeps it relative (`Practitioner/7`), as `npm run token`'s and as the server reads it.
 */
function absolute(fhirBase: string, reference: string): string {
  return /^https?:\/\//.test(reference) ? reference : `${fhirBase}/${reference}`;
}

/** A minimal HTML page: no script, no style, nothing loaded (the login page's policy allows nothing else). */
export function page(title: string, body: string): string {
  return `<!doctype html>\n<html lang="fr"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeXml(title)}</title></head>\n<body><h1>${escapeXml(title)}</h1>\n${body}\n</body></html>\n`;
}

const OAUTH_URIS = 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris';

/**
 * The CapabilityStatement's SMART oauth-uris extension (SMART App Launch 1.0, still read by clients such as
 * fhirclient) with its endpoints made absolute on the server's origin: the file keeps them as paths.
 */
export function resolveOAuthUris(security: { extension?: Array<{ url: string; extension?: Array<{ url: string; valueUri?: string }> }> }, origin: string): void {
  for (const extension of security.extension ?? []) {
    if (extension.url !== OAUTH_URIS) continue;
    for (const endpoint of extension.extension ?? []) if (endpoint.valueUri) endpoint.valueUri = new URL(endpoint.valueUri, origin).href;
  }
}
