import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { ProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { isError } from '../src/fhir/validation/validator.ts';

/** Real-world R4 data against the base R4 profiles (no French defaults): no errors, except two known-bad examples. */
const CORPORA = new URL('./fixtures/', import.meta.url);
const read = (path: string) => JSON.parse(readFileSync(new URL(path, CORPORA), 'utf8'));

// Synthea writes US Core and Synthea extensions, whose definitions are not bundled: accepted by domain,
// as the reference validator does with -allow-extension-domain.
const validator = new ProfileValidator({
  defaultProfiles: 'none',
  unknownExtensions: 'error',
  allowedExtensionDomains: ['http://hl7.org/fhir/us/core/StructureDefinition/', 'http://synthetichealth.github.io/synthea/'],
});

const errorsOf = (resource: { resourceType: string }) => validator.check(resource.resourceType, resource).issues.filter(isError);

/** Examples the JSON schema accepts but R4 does not; each breaks exactly these rules. */
const KNOWN_INVALID: Record<string, string[]> = {
  // A test case of the HL7 suite: Bundle.type is 1..1, and its entry's narrative is blank (txt-2).
  'hl7-fhir-test-cases/bundle-with-no-type.json': ['Bundle:bdl-3', 'Bundle:bdl-4', 'Bundle.type:min', 'Bundle.entry[0].resource.text.div:txt-1, txt-2'],
  // The contained Organization has neither name nor identifier (org-1).
  'hl7-fhir-test-cases/patient-container-example.json': ['Patient.contained[0]:org-1'],
};

function summary(diagnostics: string, expression: string): string {
  const constraint = /Constraint failed: ([^:]+):/.exec(diagnostics);
  if (constraint) return `${expression}:${constraint[1]}`;
  if (diagnostics.includes('minimum required')) return `${expression}:min`;
  return `${expression}:${diagnostics}`;
}

t.test('r4-examples: schema-valid examples pass the base profiles', async (t) => {
  const manifest = read('r4-examples/manifest.json');
  let checked = 0;
  for (const entry of manifest.files as { file: string; schemaValid: boolean }[]) {
    if (!entry.schemaValid) continue;
    checked++;
    const errors = errorsOf(read(`r4-examples/${entry.file}`)).map((e) => summary(e.diagnostics, e.expression![0]!));
    t.same(errors, KNOWN_INVALID[entry.file] ?? [], entry.file);
  }
  t.equal(checked, 24);
});

t.test('synthea: every resource of every bundle passes the base profiles', async (t) => {
  let resources = 0;
  const failures: string[] = [];
  for (const name of readdirSync(new URL('synthea/', CORPORA)).filter((n) => n.endsWith('.json') && n !== 'manifest.json')) {
    for (const entry of read(`synthea/${name}`).entry) {
      resources++;
      for (const error of errorsOf(entry.resource)) failures.push(`${name} ${entry.resource.resourceType}: ${error.diagnostics}`);
    }
  }
  t.equal(resources, 464);
  t.same(failures, []);
});
