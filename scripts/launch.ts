// Prints an EHR launch id for the store on DATABASE_URL: the EHR opens the app with `?iss=<FHIR base>&launch=<id>`,
// and the app's authorization then carries this patient (and encounter) as its launch context. What an EHR
// gets over HTTP from POST /auth/launch (src/http/ehr-launch.ts), with the same checks but for existence.
//   npm run launch -- --patient Patient/123 [--encounter Encounter/9] [--user Practitioner/7] [--expires 300]
import { parseArgs } from 'node:util';
import { configFromEnv } from '../src/config.ts';
import { FhirError } from '../src/fhir/outcome.ts';
import { StartupRefused } from '../src/startup.ts';
import { registerLaunch, withStore } from './lib/authorization-admin.ts';

const USAGE = 'usage: npm run launch -- --patient Patient/123 [--encounter Encounter/9] [--user Practitioner/7] [--expires seconds]';
const { values } = parseArgs({ options: { patient: { type: 'string' }, encounter: { type: 'string' }, user: { type: 'string' }, expires: { type: 'string', default: '300' } } });
const request = {
  ...(values.patient ? { patient: values.patient } : {}),
  ...(values.encounter ? { encounter: values.encounter } : {}),
  ...(values.user ? { fhirUser: values.user } : {}),
  expires_in: Number(values.expires),
};
try {
  console.log(await withStore(configFromEnv().databaseUrl, (db) => registerLaunch(db, request)));
} catch (error) {
  if (error instanceof FhirError) {
    console.error(`${error.outcome.issue.map((issue) => issue.diagnostics).join('; ')}\n${USAGE}`);
    process.exit(2);
  }
  if (!(error instanceof StartupRefused)) throw error;
  console.error(`${error.message}\n(the embedded PGlite store belongs to one process: stop the server, get the launch, start it again)`);
  process.exit(1);
}
