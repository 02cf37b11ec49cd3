// TokenVerifier on its own: a token verified once is remembered, but never past its expiry, and a refused
// token is never remembered.
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import t from 'tap';
import { InvalidToken, TokenVerifier } from '../src/security/tokens.ts';

const AUDIENCE = 'https://dmp.example/fhir';
const ISSUER = 'https://issuer.example';
const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] };
const now = () => Math.floor(Date.now() / 1000);

function token(claims: Record<string, unknown>, key = privateKey): Promise<string> {
  return new SignJWT({ scope: 'system/*.rs', ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .sign(key);
}

t.test('a remembered token is refused once it has expired', async (t) => {
  const verifier = new TokenVerifier(AUDIENCE, [{ issuer: ISSUER, jwks }], { clockSkewSeconds: 0 });
  const shortLived = await token({ exp: now() + 2 });
  t.same((await verifier.verify(shortLived)).scopes, ['system/*.rs']);
  t.same((await verifier.verify(shortLived)).scopes, ['system/*.rs'], 'accepted again while valid');
  await new Promise((resolve) => setTimeout(resolve, 3100));
  await t.rejects(verifier.verify(shortLived), InvalidToken, 'refused after its expiry, though verified before');
});

t.test('a refused token stays refused: nothing about it is remembered', async (t) => {
  const verifier = new TokenVerifier(AUDIENCE, [{ issuer: ISSUER, jwks }]);
  const other = await generateKeyPair('ES256');
  const forged = await token({ exp: now() + 600 }, other.privateKey);
  await t.rejects(verifier.verify(forged), InvalidToken);
  await t.rejects(verifier.verify(forged), InvalidToken, 'the second try is checked again');
  const genuine = await token({ exp: now() + 600 });
  const tampered = `${genuine.split('.')[0]}.${Buffer.from(JSON.stringify({ iss: ISSUER, aud: AUDIENCE, exp: now() + 600, scope: 'system/*.cruds' })).toString('base64url')}.${genuine.split('.')[2]}`;
  t.ok(await verifier.verify(genuine), 'the genuine token verifies and is remembered');
  await t.rejects(verifier.verify(tampered), InvalidToken, 'its claims with another payload do not ride on it');
});

t.test('a bounded number of tokens is remembered, and the forgotten still verify', async (t) => {
  const verifier = new TokenVerifier(AUDIENCE, [{ issuer: ISSUER, jwks }], { verifiedTokensKept: 3 });
  const first = await token({ exp: now() + 600, sub: 'first' });
  await verifier.verify(first);
  for (let i = 0; i < 3; i++) await verifier.verify(await token({ exp: now() + 600, sub: `s${i}` }));
  t.equal((verifier as unknown as { verified: Map<string, unknown> }).verified.size, 3, 'bounded');
  t.equal((await verifier.verify(first)).subject, 'first', 'the first, pushed out, is verified again');
});
