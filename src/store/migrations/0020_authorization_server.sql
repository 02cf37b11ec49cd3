-- The embedded authorization server (src/security/authorization-server.ts, on oidc-provider).
-- Clients registered with `npm run client`: backend services (a lab's feed) with their JWKS or jwks_uri, and
-- apps with their redirect URIs. `metadata` is the client's OAuth metadata (RFC 7591 names) as the provider
-- reads it; `allowed_scopes` the SMART scopes a token for it may carry at most.
CREATE TABLE authz_client (
  client_id text PRIMARY KEY,
  metadata jsonb NOT NULL,
  allowed_scopes text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Local accounts for the login page (`npm run account`): the password as a scrypt hash, never in clear; the
-- FHIR resource the user is (fhirUser) and, for a patient's account, the patient of a standalone launch.
CREATE TABLE authz_account (
  username text PRIMARY KEY,
  password_hash text NOT NULL,
  fhir_user text,
  patient text,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- What the provider keeps between requests (its adapter's models: sessions, interactions, authorization
-- codes, refresh tokens, grants, replayed client assertion ids) and the EHR launch contexts, each until it
-- expires. `grant_id` lets a revoked grant take all its tokens along; `uid` finds a session.
CREATE TABLE authz_record (
  model text NOT NULL,
  id text NOT NULL,
  payload jsonb NOT NULL,
  grant_id text,
  uid text,
  user_code text,
  expires_at timestamptz,
  consumed_at timestamptz,
  PRIMARY KEY (model, id)
);
CREATE INDEX authz_record_grant ON authz_record (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX authz_record_uid ON authz_record (model, uid) WHERE uid IS NOT NULL;
CREATE INDEX authz_record_expiry ON authz_record (expires_at) WHERE expires_at IS NOT NULL;
