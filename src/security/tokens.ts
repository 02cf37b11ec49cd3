import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';

/**
 * Signature algorithms a token may use: asymmetric only. `none` is never one, nor HS*: a shared secret
 * would let anyone holding the issuer's public key (published) sign tokens with it (RS256→HS256 confusion).
 */
export const ALLOWED_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

/** Longer tokens are refused before anything is decoded: a Bearer header is no place for kilobytes. */
export const MAX_TOKEN_LENGTH = 8192;

/** Clocks of issuer and server may differ by this much, in seconds, for `exp`, `nbf` and `iat`. */
export const CLOCK_SKEW_SECONDS = 30;

/**
 * Tokens verified once are remembered until they expire, at most this many (the oldest verified first out): a
 * client sends the same token with every request for an hour, and checking its signature again each time was
 * the largest part of what authentication cost a read (an ES256 or RS256 verification against a map lookup).
 */
export const VERIFIED_TOKENS_KEPT = 5000;

/** An issuer whose tokens the server accepts, with where its keys are. */
export interface TrustedIssuer {
  issuer: string;
  /** Its JWKS URL (fetched when a `kid` is not known yet, at most every 30 s, cached 10 min), or its key set itself. */
  jwks: URL | JSONWebKeySet;
}

/** A token that passed every check, and the SMART claims the server reads from it. */
export interface VerifiedToken {
  issuer: string;
  scopes: string[];
  /** Launch context patient as `Patient/id`. */
  patient?: string;
  fhirUser?: string;
  clientId?: string;
  /** `sub`: whom the token was issued for. */
  subject?: string;
  purposeOfUse: string[];
  /** Seconds since the epoch. */
  expiresAt: number;
}

/** Why a token was refused: the reason goes to the client in `WWW-Authenticate` (RFC 6750 §3). */
export class InvalidToken extends Error {
  constructor(
    message: string,
    /** `invalid_request` for a malformed Authorization header; `invalid_token` otherwise. */
    readonly code: 'invalid_token' | 'invalid_request' = 'invalid_token',
  ) {
    super(message);
    this.name = 'InvalidToken';
  }
}

/** Verifies bearer tokens against the trusted issuers: signature, issuer, audience, time, algorithm, size. */
export class TokenVerifier {
  private readonly keys = new Map<string, JWTVerifyGetKey>();
  /** Tokens that passed every check, by their exact text, in the order they were verified. */
  private readonly verified = new Map<string, VerifiedToken>();

  private readonly clockSkew: number;
  private readonly kept: number;

  constructor(
    private readonly audience: string,
    issuers: readonly TrustedIssuer[],
    options: { clockSkewSeconds?: number; verifiedTokensKept?: number } = {},
  ) {
    this.clockSkew = options.clockSkewSeconds ?? CLOCK_SKEW_SECONDS;
    this.kept = options.verifiedTokensKept ?? VERIFIED_TOKENS_KEPT;
    for (const { issuer, jwks } of issuers) {
      this.keys.set(
        issuer,
        jwks instanceof URL ? createRemoteJWKSet(jwks, { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 600_000 }) : createLocalJWKSet(jwks),
      );
    }
  }

  async verify(token: string): Promise<VerifiedToken> {
    const known = this.verified.get(token);
    if (known) {
      // The same text is the same signed claims: only time can have made them unacceptable since.
      if (known.expiresAt + this.clockSkew > Date.now() / 1000) return known;
      this.verified.delete(token);
    }
    const checked = await this.check(token);
    if (this.verified.size >= this.kept) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, checked);
    return checked;
  }

  private async check(token: string): Promise<VerifiedToken> {
    if (token.length > MAX_TOKEN_LENGTH) throw new InvalidToken(`The token is longer than ${MAX_TOKEN_LENGTH} characters`);
    let issuer: unknown;
    try {
      const { alg } = decodeProtectedHeader(token);
      if (typeof alg !== 'string' || !ALLOWED_ALGORITHMS.includes(alg)) throw new InvalidToken(`The token's algorithm '${String(alg)}' is not accepted`);
      issuer = decodeJwt(token).iss;
    } catch (error) {
      if (error instanceof InvalidToken) throw error;
      throw new InvalidToken('The token is not a well-formed JWT');
    }
    const keys = typeof issuer === 'string' ? this.keys.get(issuer) : undefined;
    if (!keys) throw new InvalidToken('The token is not from a trusted issuer');
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, keys, {
        issuer: issuer as string,
        audience: this.audience,
        algorithms: ALLOWED_ALGORITHMS,
        clockTolerance: this.clockSkew,
        requiredClaims: ['exp'],
      }));
    } catch (error) {
      // Whatever failed (signature, claims, an unknown kid, an issuer whose keys cannot be fetched), the token
      // is not accepted; the reason stays general so that the answer teaches a forger nothing.
      throw new InvalidToken(reasonOf(error));
    }
    return claimsOf(payload);
  }
}

function reasonOf(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return 'The token has expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return `The token's '${String((error as { claim?: unknown }).claim)}' claim is not acceptable`;
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return "The token's key is not one of its issuer's";
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JOSE_GENERIC':
      return "The token's issuer keys could not be obtained";
    default:
      return 'The token could not be verified';
  }
}

function claimsOf(payload: JWTPayload): VerifiedToken {
  const text = (value: unknown) => (typeof value === 'string' && value.length > 0 ? value : undefined);
  const list = (value: unknown) => (typeof value === 'string' ? value.split(' ').filter(Boolean) : Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);
  const context = typeof payload.context === 'object' && payload.context !== null ? (payload.context as Record<string, unknown>) : {};
  const patient = text(payload.patient) ?? text(context.patient);
  return {
    issuer: payload.iss!,
    scopes: list(payload.scope ?? payload.scp),
    ...(patient ? { patient: patient.startsWith('Patient/') ? patient : `Patient/${patient}` } : {}),
    ...(text(payload.fhirUser) ? { fhirUser: text(payload.fhirUser) } : {}),
    ...(text(payload.client_id) ?? text(payload.azp) ? { clientId: text(payload.client_id) ?? text(payload.azp) } : {}),
    ...(text(payload.sub) ? { subject: text(payload.sub) } : {}),
    purposeOfUse: list(payload.purpose_of_use),
    expiresAt: payload.exp!,
  };
}
