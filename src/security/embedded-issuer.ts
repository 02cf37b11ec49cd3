import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import type { IssuerKey } from '../store/resource-store.ts';

/** The embedded issuer signs with ECDSA P-256: short keys and signatures, verified in microseconds. */
export const EMBEDDED_ALGORITHM = 'ES256';

/** A new signing key pair for the embedded issuer, its `kid` the public key's RFC 7638 thumbprint. */
export async function generateIssuerKey(): Promise<IssuerKey> {
  const { publicKey, privateKey } = await generateKeyPair(EMBEDDED_ALGORITHM, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  return {
    kid,
    alg: EMBEDDED_ALGORITHM,
    publicJwk: { ...publicJwk, kid, alg: EMBEDDED_ALGORITHM, use: 'sig' },
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: EMBEDDED_ALGORITHM },
  };
}

/** The public half of each key, as the server publishes them (JWKS, RFC 7517 §5). */
export function publicKeySet(keys: readonly IssuerKey[]): { keys: JWK[] } {
  return { keys: keys.map((key) => key.publicJwk as JWK) };
}

export interface TokenRequest {
  /** The embedded issuer's identifier: the server's FHIR base URL. */
  issuer: string;
  /** The FHIR base URL the token is for (`aud`). */
  audience: string;
  /** Space-separated SMART scopes. */
  scope: string;
  /** Launch context patient (`Patient/123` or `123`), put in the `patient` claim as an id. */
  patient?: string;
  /** `fhirUser`: the professional or patient the token speaks for (`Practitioner/7`). */
  fhirUser?: string;
  clientId?: string;
  /** `purpose_of_use`: HL7 PurposeOfUse codes the user asserts for the token's lifetime (`BTG`: break the glass). */
  purposeOfUse?: string[];
  /** Lifetime in seconds. */
  expiresIn: number;
}

/** A token signed by the embedded issuer's signing key (the first of `keys`). */
export async function signToken(keys: readonly IssuerKey[], request: TokenRequest): Promise<string> {
  const key = keys[0];
  if (!key) throw new Error('the embedded issuer has no key');
  const privateKey = await importJWK(key.privateJwk as JWK, key.alg);
  const clientId = request.clientId ?? 'dossier-cli';
  const claims: Record<string, unknown> = { scope: request.scope, client_id: clientId };
  if (request.patient) claims.patient = request.patient.replace(/^Patient\//, '');
  if (request.fhirUser) claims.fhirUser = request.fhirUser;
  if (request.purposeOfUse?.length) claims.purpose_of_use = request.purposeOfUse;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' })
    .setIssuer(request.issuer)
    .setAudience(request.audience)
    .setSubject(request.fhirUser ?? clientId)
    .setIssuedAt()
    .setNotBefore('0s')
    .setExpirationTime(`${Math.max(1, Math.floor(request.expiresIn))}s`)
    .setJti(crypto.randomUUID())
    .sign(privateKey);
}
