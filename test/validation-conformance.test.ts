import { readFileSync } from 'node:fs';
import t from 'tap';
import { ProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { isError } from '../src/fhir/validation/validator.ts';

/**
 * The HL7 fhir-test-cases validator suite (the R4 subset in test/fixtures/fhir-test-cases): our error count
 * per case against the Java reference validator's. Malformed JSON must be refused by the server's JSON
 * parser (400 before validation); agreement there means JSON.parse throws.
 */
const DIR = new URL('./fixtures/fhir-test-cases/', import.meta.url);
const manifest = JSON.parse(readFileSync(new URL('manifest.json', DIR), 'utf8'));

interface Case {
  name: string;
  file: string;
  malformedJson: boolean;
  txDependent: boolean | null;
  expectedErrorCount: number | null;
  validatorOptions?: Record<string, unknown>;
}

const validators = new Map<string, ProfileValidator>();

/**
 * The reference validator's options mapped onto ours (the base profiles only: no French defaults). Options
 * of the reference validator that ours has no counterpart for map to the same settings, and share one
 * validator: each validator compiles the structure of every type it meets, seconds apiece.
 */
function validatorFor(options: Record<string, unknown> = {}): ProfileValidator {
  const domain = options['allowed-extension-domain'];
  const settings = {
    defaultProfiles: 'none' as const,
    unknownExtensions: 'error' as const,
    allowExampleUrls: options.examples !== false,
    allowedExtensionDomains: typeof domain === 'string' ? [domain] : [],
  };
  const key = JSON.stringify(settings);
  let validator = validators.get(key);
  if (!validator) {
    validator = new ProfileValidator(settings);
    validators.set(key, validator);
  }
  return validator;
}

t.test('agreement with the reference validator', async (t) => {
  const skipped: string[] = [];
  const disagreements: string[] = [];
  let compared = 0;
  for (const c of manifest.cases as Case[]) {
    if (c.txDependent) {
      skipped.push(`${c.name} (needs a terminology server)`);
      continue;
    }
    if (c.expectedErrorCount === null) {
      skipped.push(`${c.name} (no expected outcome upstream)`);
      continue;
    }
    if (c.validatorOptions?.['allow-comments']) {
      skipped.push(`${c.name} (reference run with JSON comments allowed; the server's JSON is strict)`);
      continue;
    }
    compared++;
    const text = readFileSync(new URL(c.file, DIR), 'utf8');
    let resource: { resourceType: string };
    try {
      resource = JSON.parse(text);
    } catch {
      if (!c.malformedJson) disagreements.push(`${c.name}: not parsable, expected ${c.expectedErrorCount} errors`);
      continue;
    }
    if (c.malformedJson) {
      disagreements.push(`${c.name}: parsed although malformed`);
      continue;
    }
    const errors = validatorFor(c.validatorOptions).check(resource.resourceType, resource).issues.filter(isError);
    if (errors.length !== c.expectedErrorCount) {
      disagreements.push(`${c.name}: ${errors.length} errors, reference ${c.expectedErrorCount}: ${errors.map((e) => e.diagnostics.slice(0, 120)).join(' | ')}`);
    }
  }
  const agreement = (compared - disagreements.length) / compared;
  t.comment(`skipped ${skipped.length}: ${skipped.join('; ')}`);
  t.comment(`agreement ${compared - disagreements.length}/${compared} = ${(agreement * 100).toFixed(1)}%`);
  for (const line of disagreements) t.comment(`disagreement: ${line}`);
  t.ok(agreement >= 0.95, `agreement ${(agreement * 100).toFixed(1)}% >= 95%`);
});
