// The invariants of a datatype's own definition (R4 ref-1 on Reference, per-1 on Period, trd-3 on
// TriggerDefinition…) hold wherever the type appears: R4 snapshots give the elements using a type ele-1 only,
// so they are checked from the type's root, in a resource, inside another datatype, in an extension's value.
import t from 'tap';
import type { Issue } from '../src/fhir/outcome.ts';
import { ProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { isError } from '../src/fhir/validation/validator.ts';

const validator = new ProfileValidator({});

/** Error issues as [expression, rule key] pairs. */
function errors(resource: Record<string, unknown>): Array<[string, string]> {
  return validator
    .check(resource.resourceType as string, resource)
    .issues.filter(isError)
    .map((issue: Issue) => [issue.expression![0]!, /Constraint failed: ([a-z0-9-]+)/.exec(issue.diagnostics)?.[1] ?? issue.diagnostics]);
}

const condition = (more: Record<string, unknown>) => ({ resourceType: 'Condition', subject: { reference: 'Patient/p1' }, ...more });

t.test('ref-1: a local reference (#id) needs a contained resource with that id, wherever the Reference is', async (t) => {
  t.same(errors(condition({ subject: { reference: '#nobody' } })), [['Condition.subject', 'ref-1']], 'in a resource element');
  t.same(errors(condition({ note: [{ authorReference: { reference: '#nobody' }, text: 'x' }] })), [['Condition.note[0].authorReference', 'ref-1']], 'inside Annotation');
  t.same(errors(condition({ identifier: [{ value: '1', assigner: { reference: '#nobody' } }] })), [['Condition.identifier[0].assigner', 'ref-1']], 'inside Identifier');
  t.same(
    errors(condition({ extension: [{ url: 'http://example.net/fhir/StructureDefinition/x', valueReference: { reference: '#nobody' } }] })).filter(([, rule]) => rule === 'ref-1'),
    [['Condition.extension[0].valueReference', 'ref-1']],
    'as an extension value',
  );
  t.same(errors(condition({ contained: [{ resourceType: 'Practitioner', id: 'dr' }], asserter: { reference: '#dr' } })), [], 'contained: it holds');
  t.same(errors(condition({ subject: { reference: 'Patient/p1' }, recorder: { display: 'no reference at all' } })), [], 'a non-local or absent reference holds');
});

t.test('ref-1: `#` alone names the container, from a contained resource only', async (t) => {
  const contained = { resourceType: 'Provenance', id: 'prov', target: [{ reference: '#' }], recorded: '2024-01-01T00:00:00Z', agent: [{ who: { display: 'x' } }] };
  t.same(errors(condition({ contained: [contained], evidence: [{ detail: [{ reference: '#prov' }] }] })), [], 'a contained resource naming its container');
  t.same(errors(condition({ asserter: { reference: '#' } })), [['Condition.asserter', 'ref-1']], 'the container naming itself so is not');
});

t.test('other datatype invariants: per-1 in a Period, qty-3 and age-1 in an Age', async (t) => {
  t.same(errors(condition({ onsetPeriod: { start: '2024-02-01', end: '2024-01-01' } })), [['Condition.onsetPeriod', 'per-1']]);
  t.same(errors(condition({ onsetPeriod: { start: '2024-01-01', end: '2024-02-01' } })), []);
  t.same(errors(condition({ onsetAge: { value: 3, code: 'a' } })), [['Condition.onsetAge', 'qty-3']], 'a code without its system (Quantity\'s qty-3, on Age)');
  t.same(errors(condition({ onsetAge: { value: 3, system: 'http://unitsofmeasure.org' } })), [['Condition.onsetAge', 'age-1']], 'a value without its UCUM code (Age\'s own age-1)');
  t.same(errors(condition({ onsetAge: { value: 3, system: 'http://unitsofmeasure.org', code: 'a' } })), []);
});
