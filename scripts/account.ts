// Creates (or updates) a local account of the embedded authorization server's login page, in the store on
// DATABASE_URL. The password is read from standard input (not an argument, which the shell history keeps).
//   echo 'a long passphrase' | npm run account -- --username dr-martin --user Practitioner/7
//   echo 'another passphrase' | npm run account -- --username jeanne --user Patient/123 --patient Patient/123
// With the embedded PGlite store, whose directory one process holds at a time, run it while the server is stopped.
import { parseArgs } from 'node:util';
import { configFromEnv } from '../src/config.ts';
import { StartupRefused } from '../src/startup.ts';
import { registerAccount, withStore } from './lib/authorization-admin.ts';

const { values } = parseArgs({ options: { username: { type: 'string' }, user: { type: 'string' }, patient: { type: 'string' } } });
if (!values.username) {
  console.error('usage: echo PASSWORD | npm run account -- --username NAME [--user Practitioner/7] [--patient Patient/123]');
  process.exit(2);
}
const chunks: Buffer[] = [];
for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
const password = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
try {
  await withStore(configFromEnv().databaseUrl, (db) =>
    registerAccount(db, { username: values.username!, password, ...(values.user ? { fhirUser: values.user } : {}), ...(values.patient ? { patient: values.patient } : {}) }),
  );
  console.log(`account ${values.username} saved`);
} catch (error) {
  if (error instanceof StartupRefused) {
    console.error(`${error.message}\n(the embedded PGlite store belongs to one process: stop the server, create the account, start it again)`);
  } else {
    console.error(error instanceof Error ? error.message : error);
  }
  process.exit(1);
}
