import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * scrypt's cost: N=2^15, r=8 (32 MiB, about 0.1 s a hash on an idle core). OWASP's figure is 2^17, which
 * costs 128 MiB and seconds on a loaded two-core server at each login; the parameters are stored with each
 * hash, so raising them later keeps the existing passwords valid.
 */
const COST: ScryptOptions = { N: 2 ** 15, r: 8, p: 1, maxmem: 256 * 1024 * 1024 };
const KEY_LENGTH = 32;

function derive(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password.normalize('NFC'), salt, KEY_LENGTH, options, (error, key) => (error ? reject(error) : resolve(key))));
}

/** The stored form of a password: `scrypt$N$r$p$salt$hash` (base64url), its parameters kept to verify it after they change. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(password, salt, COST);
  return ['scrypt', COST.N, COST.r, COST.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** Whether `password` is the one `stored` was made from (in constant time). */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const N = Number(n);
  const key = await derive(password, Buffer.from(salt, 'base64url'), { N, r: Number(r), p: Number(p), maxmem: Math.max(COST.maxmem!, 256 * N * Number(r)) });
  return key.length === expected.length && timingSafeEqual(key, expected);
}
