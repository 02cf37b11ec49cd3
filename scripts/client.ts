// Registers a client of the embedded authorization server (/auth) in the store on DATABASE_URL.
// A backend service (a hospital's or a lab's feed: client_credentials with a private_key_jwt assertion):
//   npm run client -- --id lab-feed --jwks-uri https://lab.example/jwks.json --scope "system/Observation.cruds system/Patient.rs"
//   npm run client -- --id lab-feed --jwks ./lab-feed.jwks.json --scope "system/*.cruds"
// An app (authorization code + PKCE; public unless it has keys):
//   npm run client -- --id my-app --redirect-uri https://app.example/callback --scope "launch launch/patient openid fhirUser offline_access patient/*.rs"
// A confidential web app (client_secret_basic or client_secret_post): --secret prints the secret once, stored hashed:
//   npm run client -- --id web-app --secret --name "Mon dossier" --redirect-uri https://web.example/callback --scope "launch/patient openid fhirUser user/*.rs"
// An EHR, which mints launch ids (POST /auth/launch) with a backend-services token:
//   npm run client -- --id ehr --ehr --jwks ./ehr.jwks.json --scope "system/Patient.rs"
//   npm run client -- --remove --id my-app
// With the embedded PGlite store, whose directory one process holds at a time, run it while the server is stopped.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { configFromEnv } from '../src/config.ts';
import { StartupRefused } from '../src/startup.ts';
import { newClientSecret, registerClient, removeClient, withStore } from './lib/authorization-admin.ts';

const USAGE = 'usage: npm run client -- --id ID --scope "SCOPES" [--jwks FILE | --jwks-uri URL | --secret] [--redirect-uri URL...] [--name NAME] [--ehr] | --remove --id ID';
const { values } = parseArgs({
  options: {
    id: { type: 'string' },
    scope: { type: 'string' },
    jwks: { type: 'string' },
    'jwks-uri': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
    secret: { type: 'boolean', default: false },
    name: { type: 'string' },
    ehr: { type: 'boolean', default: false },
    remove: { type: 'boolean', default: false },
  },
});
if (!values.id || (!values.remove && !values.scope)) {
  console.error(USAGE);
  process.exit(2);
}
const clientId = values.id;
try {
  await withStore(configFromEnv().databaseUrl, async (db) => {
    if (values.remove) {
      console.log((await removeClient(db, clientId)) ? `client ${clientId} removed` : `no client ${clientId}`);
      return;
    }
    const secret = values.secret ? newClientSecret() : undefined;
    await registerClient(db, {
      clientId,
      scope: values.scope!,
      ...(values.jwks ? { jwks: JSON.parse(readFileSync(values.jwks, 'utf8')) as { keys: unknown[] } } : {}),
      ...(values['jwks-uri'] ? { jwksUri: values['jwks-uri'] } : {}),
      ...(values['redirect-uri'] ? { redirectUris: values['redirect-uri'] } : {}),
      ...(secret !== undefined ? { secret } : {}),
      ...(values.name ? { name: values.name } : {}),
      ...(values.ehr ? { ehr: true } : {}),
    });
    console.log(`client ${clientId} registered`);
    // Shown once: only its hash is kept.
    if (secret !== undefined) console.log(`client secret (shown once, keep it): ${secret}`);
  });
} catch (error) {
  if (error instanceof StartupRefused) {
    console.error(`${error.message}\n(the embedded PGlite store belongs to one process: stop the server, register, start it again)`);
  } else {
    console.error(error instanceof Error ? error.message : error);
  }
  process.exit(1);
}
