// Prints a SMART access token for the server on the same DATABASE_URL, signed by its embedded issuer
// (whose key this makes, as the server would, on a new store).
// Usage: npm run token -- --scope "system/*.cruds" [--patient Patient/123] [--user Practitioner/7] [--client my-app] [--purpose BTG] [--expires 3600]
// The audience is the server's FHIR base: PUBLIC_BASE_URL, else http://localhost:$PORT/fhir (PORT 8080 by
// default), as the server expects. With the embedded PGlite store, whose directory one process holds at a
// time, run it while the server is stopped: the token stays valid across restarts until it expires.
import { parseArgs } from 'node:util';
import { configFromEnv } from '../src/config.ts';
import { StartupRefused } from '../src/startup.ts';
import { embeddedTokenFor } from './lib/embedded-token.ts';

const { values } = parseArgs({
  options: {
    scope: { type: 'string' },
    patient: { type: 'string' },
    user: { type: 'string' },
    client: { type: 'string' },
    purpose: { type: 'string' },
    expires: { type: 'string', default: '3600' },
  },
});
if (!values.scope) {
  console.error('usage: npm run token -- --scope "system/*.cruds" [--patient Patient/123] [--user Practitioner/7] [--client id] [--purpose BTG,ETREAT] [--expires seconds]');
  process.exit(2);
}
const expiresIn = Number(values.expires);
if (!Number.isInteger(expiresIn) || expiresIn <= 0) {
  console.error('--expires takes a number of seconds');
  process.exit(2);
}
const config = configFromEnv();
try {
  const token = await embeddedTokenFor(config.databaseUrl, {
    audience: config.authAudience,
    scope: values.scope,
    expiresIn,
    ...(values.patient ? { patient: values.patient } : {}),
    ...(values.user ? { fhirUser: values.user } : {}),
    ...(values.client ? { clientId: values.client } : {}),
    ...(values.purpose ? { purposeOfUse: values.purpose.split(',').map((code) => code.trim()).filter(Boolean) } : {}),
  });
  console.log(token);
} catch (error) {
  if (!(error instanceof StartupRefused)) throw error;
  console.error(`${error.message}\n(the embedded PGlite store belongs to one process: stop the server, get the token, start it again)`);
  process.exit(1);
}
