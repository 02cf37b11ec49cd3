// The authorization server's storage (src/store/authorization.ts) on the real store, PGlite or PostgreSQL:
// what oidc-provider relies on (records that expire, are used once, go with their grant) and what the login
// page relies on (accounts whose passwords are only hashes).
import t from 'tap';
import { registerAccount, registerClient, registerLaunch } from '../scripts/lib/authorization-admin.ts';
import { pendingLaunch } from '../src/security/authorization-grants.ts';
import { LAUNCH } from '../src/security/launch.ts';
import { verifyPassword } from '../src/security/passwords.ts';
import { authorizationStore } from '../src/store/authorization.ts';
import { migrate } from '../src/store/migrate.ts';
import { openTestDatabase } from './helpers/app.ts';

const database = await openTestDatabase();
await migrate(database.db);
t.teardown(() => database.drop());
const store = authorizationStore(database.db);

t.test('a record is found until it expires, by id, uid or user code', async (t) => {
  await store.saveRecord('Session', 's1', { uid: 'u1', accountId: 'jeanne' }, 3600);
  await store.saveRecord('DeviceCode', 'd1', { userCode: 'ABCD' }, 3600);
  await store.saveRecord('AuthorizationCode', 'gone', { grantId: 'g0' }, 0);
  t.same((await store.record('Session', 's1'))?.payload, { uid: 'u1', accountId: 'jeanne' });
  t.same((await store.recordByUid('Session', 'u1'))?.payload.accountId, 'jeanne');
  t.ok(await store.recordByUserCode('DeviceCode', 'ABCD'));
  t.equal(await store.record('Session', 'nope'), undefined);
  t.equal(await store.record('AuthorizationCode', 'gone'), undefined, 'an expired record is not found');
  t.equal(await store.sweepExpiredRecords(), 1, 'and is swept');
  await store.saveRecord('Session', 's1', { uid: 'u2' }, 3600);
  t.same((await store.record('Session', 's1'))?.payload, { uid: 'u2' }, 'a save replaces');
  await store.removeRecord('Session', 's1');
  t.equal(await store.record('Session', 's1'), undefined, 'removed');
});

t.test('a code is consumed once; a grant takes its records along', async (t) => {
  await store.saveRecord('AuthorizationCode', 'c1', { grantId: 'g1' }, 60);
  await store.saveRecord('RefreshToken', 'r1', { grantId: 'g1' }, 60);
  await store.saveRecord('RefreshToken', 'r2', { grantId: 'g2' }, 60);
  t.equal((await store.record('AuthorizationCode', 'c1'))?.consumed, false);
  t.equal(await store.consumeRecord('AuthorizationCode', 'c1'), true, 'first use');
  t.equal(await store.consumeRecord('AuthorizationCode', 'c1'), false, 'not twice');
  t.equal((await store.record('AuthorizationCode', 'c1'))?.consumed, true);
  await store.removeGrant('g1');
  t.equal(await store.record('AuthorizationCode', 'c1'), undefined);
  t.equal(await store.record('RefreshToken', 'r1'), undefined);
  t.ok(await store.record('RefreshToken', 'r2'), 'the token of another grant stays');
});

t.test('clients and accounts', async (t) => {
  await registerClient(database.db, { clientId: 'lab', scope: 'system/Observation.cruds', jwksUri: 'https://lab.example/jwks' });
  const client = await store.client('lab');
  t.equal(client?.metadata.token_endpoint_auth_method, 'private_key_jwt');
  t.same(client?.metadata.grant_types, ['client_credentials']);
  t.equal(client?.allowedScopes, 'system/Observation.cruds');
  await t.rejects(registerClient(database.db, { clientId: 'x', scope: 'system/*.cruds' }), /needs keys/, 'a client with neither keys nor redirect URIs');
  await t.rejects(registerClient(database.db, { clientId: 'x', scope: 'everything', jwksUri: 'https://x.example/jwks' }), /not SMART scopes/);
  t.equal(await store.removeClient('lab'), true);
  t.equal(await store.client('lab'), undefined);

  await registerAccount(database.db, { username: 'jeanne', password: 'correct horse battery', fhirUser: 'Patient/1', patient: 'Patient/1' });
  const account = await store.account('jeanne');
  t.equal(account?.fhirUser, 'Patient/1');
  t.notMatch(account!.passwordHash, /correct horse/, 'the password is not stored');
  t.ok(await verifyPassword('correct horse battery', account!.passwordHash));
  t.notOk(await verifyPassword('correct horse batterY', account!.passwordHash));
  await t.rejects(registerAccount(database.db, { username: 'x', password: 'short' }), /8 characters/);
});

t.test('a confidential client keeps only its secret\'s hash; an EHR needs credentials', async (t) => {
  const secret = 'a-secret-of-thirty-two-characters-or-more';
  await registerClient(database.db, { clientId: 'web', scope: 'openid user/*.rs', secret, redirectUris: ['https://web.example/cb'], name: 'Web' });
  const client = await store.client('web');
  t.equal(client?.metadata.token_endpoint_auth_method, 'client_secret_basic');
  t.same(client?.metadata.grant_types, ['authorization_code', 'refresh_token', 'client_credentials']);
  t.equal(client?.metadata.client_name, 'Web');
  t.ok(await verifyPassword(secret, String(client?.metadata.client_secret)), 'a scrypt hash of the secret');
  t.notMatch(JSON.stringify(client), /a-secret-of/, 'not the secret');
  await t.rejects(registerClient(database.db, { clientId: 'x', scope: 'openid', secret: 'short', redirectUris: ['https://x.example/cb'] }), /32 characters/);
  await t.rejects(registerClient(database.db, { clientId: 'x', scope: 'openid', secret, jwksUri: 'https://x.example/jwks' }), /not both/);
  await t.rejects(registerClient(database.db, { clientId: 'x', scope: 'openid', ehr: true, redirectUris: ['https://x.example/cb'] }), /backend service/);
  await registerClient(database.db, { clientId: 'ehr', scope: 'system/Patient.rs', ehr: true, jwksUri: 'https://ehr.example/jwks' });
  t.equal((await store.client('ehr'))?.metadata.ehr_launch, true);
});

t.test('an EHR launch (npm run launch): checked as the endpoint checks it, used once', async (t) => {
  const launch = await registerLaunch(database.db, { patient: '123', encounter: 'Encounter/9', fhirUser: 'Practitioner/7', expires_in: 60 });
  t.same(await pendingLaunch(store, launch), { patient: '123', encounter: '9', fhirUser: 'Practitioner/7' });
  t.equal(await store.consumeRecord(LAUNCH, launch), true);
  t.equal(await pendingLaunch(store, launch), undefined, 'used: no longer pending');
  await t.rejects(registerLaunch(database.db, { encounter: 'Encounter/9', expires_in: 60 }), /'patient' is required/);
  await t.rejects(registerLaunch(database.db, { patient: 'Patient/1', fhirUser: '7', expires_in: 60 }), /fhirUser/);
  await t.rejects(registerLaunch(database.db, { patient: 'Patient/1', expires_in: 0 }), /expires_in/);
});
