-- The embedded token issuer's signing keys (src/security/embedded-issuer.ts). The private key stays in the
-- database, next to the data it protects: whoever can read this table can mint tokens, as whoever can read
-- the resource tables can read the records without any token. The oldest key signs; every key is published
-- in the server's JWKS, so that a new key can be added before an old one goes (rotation).
CREATE TABLE issuer_key (
  kid text PRIMARY KEY,
  alg text NOT NULL,
  public_jwk jsonb NOT NULL,
  private_jwk jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
