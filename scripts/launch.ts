// Prints an EHR launch id for the store on DATABASE_URL: the EHR opens the app with `?iss=<FHIR base>&launch=<id>`,
// and the app's authorization then carries this patient (and encounter) as its launch context.
//   npm run launch -- --patient Patient/123 [--encounter Encounter/9] [--expires 300]
import { parseArgs } from 'node:util';
import { configFromEnv } from '../src/config.ts';
import { StartupRefused } from '../src/startup.ts';
import { registerLaunch, withStore } from './lib/authorization-admin.ts';

const { values } = parseArgs({ options: { patient: { type: 'string' }, encounter: { type: 'string' }, expires: { type: 'string', default: '300' } } });
const expiresIn = Number(values.expires);
if (!values.patient || !Number.isInteger(expiresIn) || expiresIn <= 0) {
  console.error('usage: npm run launch -- --patient Patient/123 [--encounter Encounter/9] [--expires seconds]');
  process.exit(2);
}
try {
  console.log(await withStore(configFromEnv().databaseUrl, (db) => registerLaunch(db, { patient: values.patient!, ...(values.encounter ? { encounter: values.encounter } : {}) }, expiresIn)));
} catch (error) {
  if (!(error instanceof StartupRefused)) throw error;
  console.error(`${error.message}\n(the embedded PGlite store belongs to one process: stop the server, get the launch, start it again)`);
  process.exit(1);
}
