import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { createProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { FHIR_JSON, json, startTestServer } from './helpers/app.ts';

// txt-1/txt-2 (narrative.html §rules) as the HL7 reference validator applies them to IG Publisher output.
const validator = createProfileValidator({ defaultProfiles: 'none' });
const folder = new URL('./fixtures/ig-narratives/', import.meta.url);
const examples = readdirSync(folder)
  .filter((name) => name.endsWith('.json'))
  .map((name) => ({ name, resource: JSON.parse(readFileSync(new URL(name, folder), 'utf8')) as { resourceType: string; text: { div: string } } }));

const narrativeIssues = (resource: { resourceType: string }) =>
  validator.validate(resource.resourceType, resource).filter((issue) => /txt-1/.test(issue.diagnostics ?? ''));

t.test('the narratives the IG Publisher writes, with xml:lang and lang, pass txt-1', async (t) => {
  t.equal(examples.length, 6);
  for (const { name, resource } of examples) {
    t.match(resource.text.div, /xml:lang="/, `${name} carries xml:lang`);
    t.same(narrativeIssues(resource), [], name);
  }
});

t.test('the rest of txt-1 stays enforced, xml:lang or not', async (t) => {
  const { resource } = examples.find((example) => example.name === 'Organization-org-example.json')!;
  const withRoot = (root: string, body = '<p>Organisation</p>') => ({ ...resource, text: { status: 'generated', div: `${root}${body}</div>` } });
  const root = '<div xmlns="http://www.w3.org/1999/xhtml" xml:lang="fr" lang="fr">';
  t.same(narrativeIssues(withRoot(root)), [], 'a well-formed narrative with xml:lang');
  const refused: Array<[string, ReturnType<typeof withRoot>]> = [
    ['a script element', withRoot(root, '<script>alert(1)</script>')],
    ['an event handler', withRoot(root, '<p onclick="alert(1)">x</p>')],
    ['another prefixed attribute', withRoot('<div xmlns="http://www.w3.org/1999/xhtml" xml:space="preserve">')],
    ['a namespace declaration with a prefix', withRoot('<div xmlns="http://www.w3.org/1999/xhtml" xmlns:x="urn:x" x:y="1">')],
    ['an unquoted xml:lang', withRoot('<div xmlns="http://www.w3.org/1999/xhtml" xml:lang=fr>')],
    ['an element left open', withRoot(root, '<p>Organisation')],
    ['a form', withRoot(root, '<form><p>x</p></form>')],
  ];
  for (const [what, resource] of refused) t.not(narrativeIssues(resource).length, 0, `${what} is refused`);
});

t.test('an official ANS example is created through the API, its narrative as written', async (t) => {
  const server = await startTestServer(t);
  const { resource } = examples.find((example) => example.name === 'Organization-org-example.json')!;
  const created = await server.inject({ method: 'POST', url: '/fhir/Organization', payload: JSON.stringify(resource), headers: { 'content-type': FHIR_JSON } });
  t.equal(created.statusCode, 201, created.body.slice(0, 400));
  t.equal(json(created).text.div, resource.text.div);
});
