import t from 'tap';
import type { Issue } from '../src/fhir/outcome.ts';
import { FRENCH_DEFAULT_PROFILES, parseDefaultProfiles } from '../src/fhir/validation/default-profiles.ts';
import { ProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { isError } from '../src/fhir/validation/validator.ts';
import * as fixtures from './helpers/validation-fixtures.ts';

const validator = new ProfileValidator({});
/** FHIR_PROJECT_RULES=error: the project's own profiles refuse what they do not allow, as if claimed. */
const strictProject = new ProfileValidator({ projectRules: 'error' });

function check(resource: any, by = validator) {
  return by.check(resource.resourceType, resource);
}

/** Errors as `expression` → diagnostics, for exact assertions. */
function errors(resource: any, by = validator): [string, string][] {
  return check(resource, by).issues.filter(isError).map((issue: Issue) => [issue.expression![0]!, issue.diagnostics]);
}

function errorExpressions(resource: any, by = validator): string[] {
  return errors(resource, by).map(([expression]) => expression);
}

t.test('valid instances of every French and project profile', async (t) => {
  const valid = {
    'FR Core Patient INS': fixtures.insPatient(),
    'FR Core Practitioner': fixtures.practitioner(),
    'FR Core Organization': fixtures.organization(),
    'PDSm DocumentReference': fixtures.pdsmDocument(),
    'Dossier Immunization': fixtures.immunization(),
    'Dossier AllergyIntolerance': fixtures.allergy(),
    'Dossier MedicationStatement': fixtures.medicationStatement(),
    'Dossier Consent': fixtures.consent(),
  };
  for (const [name, resource] of Object.entries(valid)) {
    const result = check(resource);
    t.same(result.issues.filter(isError), [], `${name}: no errors`);
    t.equal(result.failedStage, undefined, `${name}: accepted`);
  }
});

t.test('INS: NIR and NIA keys', async (t) => {
  const corsican = fixtures.insPatient();
  corsican.identifier[0].value = fixtures.CORSICAN_NIR;
  t.same(errors(corsican), [], 'a Corsican NIR (2A counts as 19) is accepted');

  const badKey = fixtures.insPatient();
  badKey.identifier[0].value = '284076322004267';
  const [error, ...others] = errors(badKey);
  t.same(others, []);
  t.equal(error![0], 'Patient.identifier[0].value');
  t.match(error![1], /INS-NIR.*key of '284076322004267' is 67, expected 66/);
  t.equal(check(badKey).failedStage, 'profile');

  const nia = fixtures.insPatient();
  nia.identifier[0] = { ...nia.identifier[0], system: 'urn:oid:1.2.250.1.213.1.4.9', type: { coding: [{ system: 'https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203', code: 'INS-NIA' }] }, value: '28407632200426' };
  t.same(errorExpressions(nia), ['Patient.identifier[0].value'], 'an INS-NIA of 14 characters is refused');
});

t.test("FR Core's own example patient carries a NIR whose key should be 12", async (t) => {
  const example = fixtures.insPatient();
  example.identifier[0].value = '123456789012244';
  const found = errors(example);
  t.equal(found.length, 1);
  t.equal(found[0]![0], 'Patient.identifier[0].value');
  t.match(found[0]![1], /is 44, expected 12/);
});

t.test('a validated identity (VALI) must carry an INS', async (t) => {
  // Under the default FR Core Patient profile: only the INS rule speaks.
  const patient = fixtures.insPatient();
  delete patient.meta;
  patient.identifier = [{ use: 'usual', system: 'urn:oid:1.2.250.1.999.1', value: 'IPP-123' }];
  const found = errors(patient);
  t.same(found.map(([e]) => e), ['Patient']);
  t.match(found[0]![1], /identityReliability VALI.*no INS identifier/);

  // Claiming FR Core Patient INS adds its own invariant fr-core-1 on the same fact.
  const claimed = fixtures.insPatient();
  claimed.identifier = [{ use: 'usual', system: 'urn:oid:1.2.250.1.999.1', value: 'IPP-123' }];
  const claimedErrors = errors(claimed);
  t.ok(claimedErrors.some(([e, d]) => e === 'Patient' && /fr-core-1/.test(d)), 'fr-core-1 fails');
  t.ok(claimedErrors.some(([e, d]) => e === 'Patient' && /no INS identifier/.test(d)), 'the INS rule fails');
});

t.test('FR Core Patient INS: required birth place and official name', async (t) => {
  const patient = fixtures.insPatient();
  patient.extension = patient.extension.filter((e: any) => !e.url.endsWith('patient-birthPlace'));
  const found = errors(patient);
  t.same(found.map(([e]) => e), ['Patient.extension']);
  t.match(found[0]![1], /Patient\.extension:birthPlace: minimum required = 1, but only found 0.*fr-core-patient-ins/);

  const noGiven = fixtures.insPatient();
  delete noGiven.name[0].given;
  t.same(errorExpressions(noGiven), ['Patient.name[0].given'], 'officialName.given is 1..1');
});

t.test('professional and structure identifiers', async (t) => {
  const practitioner = fixtures.practitioner();
  practitioner.identifier[1].value = '10001234566';
  const found = errors(practitioner);
  t.same(found.map(([e]) => e), ['Practitioner.identifier[1].value']);
  t.match(found[0]![1], /RPPS.*Luhn key/);

  const idNatPs = fixtures.practitioner();
  idNatPs.identifier[0].value = '9' + fixtures.VALID_RPPS;
  t.same(errorExpressions(idNatPs), ['Practitioner.identifier[0].value'], 'IdNatPS with an unknown kind prefix');

  const organization = fixtures.organization();
  organization.identifier[0].value = '350005178';
  const orgErrors = errors(organization);
  t.same(orgErrors.map(([e]) => e), ['Organization.identifier[0].value']);
  t.match(orgErrors[0]![1], /FINESS '350005178' is wrong/);
});

t.test('PDSm document metadata', async (t) => {
  const cases: [string, (d: any) => void, string, RegExp][] = [
    ['missing type', (d) => delete d.type, 'DocumentReference.type', /DocumentReference\.type: minimum required = 1/],
    ['class outside J06', (d) => (d.category[0].coding[0].code = '77'), 'DocumentReference.category[0]', /JDV-J06-XdsClassCode-CISIS \(rule constr-bind-category/],
    ['type outside J07', (d) => (d.type.coding[0].code = '99999-9'), 'DocumentReference.type', /JDV-J07-XdsTypeCode-CISIS/],
    ['bad confidentiality code', (d) => (d.securityLabel[0].coding[0].code = 'X'), 'DocumentReference.securityLabel[0]', /JDV-J58-ConfidentialityCode-DMP/],
    ['missing author', (d) => delete d.author, 'DocumentReference.author', /DocumentReference\.author: minimum required = 1/],
    ['source patient not contained (ref-1)', (d) => (d.contained = [{ ...d.contained[0], id: 'another' }]), 'DocumentReference.context.sourcePatientInfo', /ref-1/],
    ['format outside J10', (d) => (d.content[0].format.code = 'urn:x'), 'DocumentReference.content[0].format', /JDV-J10-XdsFormatCode-CISIS/],
    ['facility type outside J02', (d) => (d.context.facilityType.coding[0].code = 'SA99'), 'DocumentReference.context.facilityType', /JDV-J02/],
    ['inline data forbidden', (d) => (d.content[0].attachment.data = 'SGVsbG8='), 'DocumentReference.content[0].attachment.data', /maximum allowed = 0/],
    ['source patient NIR key', (d) => (d.contained[0].identifier[0].value = '284076322004200'), 'DocumentReference.contained[0].identifier[0].value', /expected 66/],
  ];
  // DMP visibility (TRE_A07, part of J58): a document masked to health professionals is valid metadata.
  const masked = fixtures.pdsmDocument();
  masked.securityLabel.push({ coding: [{ system: 'https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument', code: 'MASQUE_PS' }] });
  t.same(errors(masked), [], 'MASQUE_PS is a DMP confidentiality code');
  const invisible = fixtures.pdsmDocument();
  invisible.securityLabel[0].coding[0] = { system: 'https://mos.esante.gouv.fr/NOS/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument', code: 'INVISIBLE_PARENTS' };
  t.same(errors(invisible).map(([e]) => e), ['DocumentReference.securityLabel[0]'], 'a visibility code outside TRE_A07 is refused');
  for (const [name, breakIt, expression, message] of cases) {
    const document = fixtures.pdsmDocument();
    breakIt(document);
    const found = errors(document);
    t.same(found.map(([e]) => e), [expression], name);
    t.match(found[0]?.[1] ?? '', message, `${name}: message`);
  }
  // Without the contained patient, both the slice's cardinality and the reference to it (ref-1) fail.
  const noSourcePatient = fixtures.pdsmDocument();
  delete noSourcePatient.contained;
  t.same(errorExpressions(noSourcePatient), ['DocumentReference.contained', 'DocumentReference.context.sourcePatientInfo'], 'missing source patient');
  const missingType = fixtures.pdsmDocument();
  delete missingType.type;
  t.match(errors(missingType)[0]![1], /PDSm Comprehensive DocumentReference https:\/\/interop\.esante\.gouv\.fr/, 'names the profile');
});

t.test('project profiles, with FHIR_PROJECT_RULES=error', async (t) => {
  const noLot = fixtures.immunization();
  delete noLot.lotNumber;
  const found = errors(noLot, strictProject);
  t.same(found.map(([e]) => e), ['Immunization']);
  t.match(found[0]![1], /dossier-imm-1: A completed vaccination states the vaccine lot number.*dossier-immunization/);
  const notDone = fixtures.immunization();
  delete notDone.lotNumber;
  notDone.status = 'not-done';
  t.same(errors(notDone, strictProject), [], 'a vaccination not done needs no lot');

  const foreignVaccinator = fixtures.immunization();
  foreignVaccinator.performer[0].actor = { identifier: { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' } };
  t.same(errorExpressions(foreignVaccinator, strictProject), ['Immunization.performer[0].actor'], 'vaccinator without a French identifier');

  const noPatientReference = fixtures.allergy();
  noPatientReference.patient = { display: 'Marie Martin' };
  t.same(errorExpressions(noPatientReference, strictProject), ['AllergyIntolerance.patient.reference']);

  const noEffective = fixtures.medicationStatement();
  delete noEffective.effectiveDateTime;
  t.same(errorExpressions(noEffective, strictProject), ['MedicationStatement.effective']);

  const wrongScope = fixtures.consent();
  wrongScope.scope.coding[0].code = 'research';
  const consentErrors = errors(wrongScope, strictProject);
  t.same(consentErrors.map(([e]) => e), ['Consent.scope']);
  t.match(consentErrors[0]![1], /does not match the pattern/);
  const noProvisionType = fixtures.consent();
  delete noProvisionType.provision.type;
  t.same(errorExpressions(noProvisionType, strictProject), ['Consent.provision.type']);
});

t.test('the project rules are warnings where only a default profile applies them, errors where claimed', async (t) => {
  const noLot = fixtures.immunization();
  delete noLot.lotNumber;
  t.same(errors(noLot), [], 'ordinary R4 data is not refused for a rule beyond FR Core and ANS');
  const warning = check(noLot).issues.find((issue) => /dossier-imm-1/.test(issue.diagnostics));
  t.equal(warning?.severity, 'warning');
  t.match(warning?.diagnostics, /FHIR_PROJECT_RULES=error/, 'the warning says how to make it an error');

  const foreignVaccinator = fixtures.immunization();
  foreignVaccinator.performer[0].actor = { identifier: { system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567893' } };
  t.same(errors(foreignVaccinator), [], 'a vaccinator without a French identifier is a warning');
  t.ok(check(foreignVaccinator).issues.some((issue) => issue.severity === 'warning' && /dossier-imm-2/.test(issue.diagnostics)));

  const claimsProfile = { ...noLot, meta: { profile: [FRENCH_DEFAULT_PROFILES.Immunization] } };
  t.match(errors(claimsProfile), [['Immunization', /dossier-imm-1/]], 'a resource claiming the profile is held to it');

  const noVaccine = fixtures.immunization();
  delete noVaccine.vaccineCode;
  t.ok(check(noVaccine).issues.some((issue) => isError(issue) && /vaccineCode/.test(issue.diagnostics)), 'base R4 stays an error');

  const wrongNir = fixtures.immunization();
  wrongNir.performer[0].actor = { identifier: { system: 'urn:oid:1.2.250.1.71.4.2.1', value: '810101201234' } };
  t.ok(errors(wrongNir).some(([, message]) => /Luhn key/.test(message)), 'a French identifier with a wrong key stays an error');
});

t.test('FHIR_PROJECT_RULES=warning: a base R4 rule stays an error, also on an element the project profile constrains', async (t) => {
  // The root element carries the project's dossier-imm-1 beside R4's dom-4: one is relaxed, the other not.
  const noLotVersionedContained = fixtures.immunization();
  delete noLotVersionedContained.lotNumber;
  noLotVersionedContained.contained = [{ resourceType: 'Practitioner', id: 'vaccinator', meta: { versionId: '2' }, name: [{ family: 'Durand' }] }];
  noLotVersionedContained.performer[0].actor = { reference: '#vaccinator' };
  const result = check(noLotVersionedContained);
  t.equal(result.failedStage, 'profile');
  t.match(errors(noLotVersionedContained), [['Immunization', /dom-4: If a resource is contained in another resource/]], 'dom-4 is an error');
  const warned = result.issues.filter((issue) => issue.severity === 'warning').map((issue) => issue.diagnostics);
  t.ok(warned.some((text) => /dossier-imm-1/.test(text)), 'dossier-imm-1, on the same element, warns');
  t.ok(warned.some((text) => /dossier-imm-2/.test(text)), 'dossier-imm-2 warns');

  const noPolicyNoProvisionType = fixtures.consent();
  delete noPolicyNoProvisionType.policyRule;
  delete noPolicyNoProvisionType.provision.type;
  t.match(errors(noPolicyNoProvisionType), [['Consent', /ppc-1: Either a Policy or PolicyRule/]], 'R4 ppc-1 is an error');
  t.ok(check(noPolicyNoProvisionType).issues.some((issue) => issue.severity === 'warning' && issue.expression?.[0] === 'Consent.provision.type'),
    'the project minimum on provision.type warns');
  t.same(errors(noPolicyNoProvisionType, strictProject).map(([expression]) => expression), ['Consent', 'Consent.provision.type'], 'both errors with FHIR_PROJECT_RULES=error');
});

t.test('which profiles apply', async (t) => {
  const unknown = fixtures.immunization();
  unknown.meta = { profile: ['https://example.org/fhir/StructureDefinition/unknown'] };
  const warning = check(unknown).issues.find((i) => i.expression?.[0] === 'Immunization.meta.profile[0]');
  t.equal(warning?.severity, 'warning', 'an unknown claimed profile is a warning by default');
  const strict = new ProfileValidator({ unknownProfiles: 'error' });
  t.equal(strict.check('Immunization', unknown).failedStage, 'profile', 'and an error when asked');

  const noLot = fixtures.immunization();
  delete noLot.lotNumber;
  const baseOnly = new ProfileValidator({ defaultProfiles: 'none' });
  t.same(baseOnly.check('Immunization', noLot).issues.filter(isError), [], 'FHIR_DEFAULT_PROFILES=none: base R4 only');

  const notJson = fixtures.immunization();
  notJson.lotNumbr = 'AB1234';
  const schemaResult = check(notJson);
  t.equal(schemaResult.failedStage, 'schema', 'a schema error stops before the profiles');
  t.same(schemaResult.issues.map((i) => i.expression?.[0]), ['Immunization.lotNumbr']);

  // The R4 JSON schema does not enumerate every required code: the base binding catches it, at the profile stage.
  const badStatus = fixtures.immunization();
  badStatus.status = 'done';
  t.same(errorExpressions(badStatus), ['Immunization.status']);
  t.equal(check(badStatus).failedStage, 'profile');
});

t.test('FHIR_DEFAULT_PROFILES parsing', async (t) => {
  t.same(parseDefaultProfiles(undefined), FRENCH_DEFAULT_PROFILES);
  t.same(parseDefaultProfiles(''), FRENCH_DEFAULT_PROFILES);
  t.same(parseDefaultProfiles('none'), {});
  t.same(parseDefaultProfiles('Patient=https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins, Consent=http://x/y'), {
    Patient: 'https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins',
    Consent: 'http://x/y',
  });
  t.throws(() => parseDefaultProfiles('Patient'), /not Type=canonical-url/);
  t.throws(() => new ProfileValidator({ defaultProfiles: 'Patient=https://example.org/none' }), /Default profile for Patient not found/);
});
