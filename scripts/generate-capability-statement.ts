// Rewrites the generated parts of capability-statement.json from what the server really has: for each
// served type its search parameters (from the same registry the search engine uses) and the profiles its
// resources are held to (from the validator, with the French default profiles the server starts with), and
// the five R4 compartments (from their definitions, search/compartment.ts); for the conformance types
// (ValueSet, CodeSystem, StructureDefinition) their fixed parameters.
// Interactions and operations stay hand-written; test/capability.test.ts checks both against behaviour.
import { readFileSync, writeFileSync } from 'node:fs';
import type { CapabilityStatement, CapabilityStatementRestResource } from 'fhir/r4';
import { isServedResourceType, SERVED_RESOURCE_TYPES } from '../src/fhir/resource-types.ts';
import { FRENCH_DEFAULT_PROFILES } from '../src/fhir/validation/default-profiles.ts';
import { createProfileValidator } from '../src/fhir/validation/profile-validator.ts';
import { loadCompartments } from '../src/search/compartment.ts';
import { loadSearchParameters, SearchParameterRegistry } from '../src/search/registry.ts';

/** How quantities compare here (src/search/ucum.ts), which R4 leaves to the server ("SHOULD support canonical units"). */
const QUANTITY_DOCUMENTATION =
  'With the system http://unitsofmeasure.org, compared in UCUM base units (5.4 mg finds 5400 ug, never mL); ' +
  'a unit that is not valid UCUM, arbitrary ([iU]), special (Cel, [degF]) or an annotated count ({tbl}) is compared as written.';

/** What the router does for every stored type (src/router/interaction.ts, crud.ts, conditional.ts). */
const STORED_TYPE_CAPABILITIES = {
  interaction: ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'history-type', 'create', 'search-type'].map((code) => ({ code: code as never })),
  versioning: 'versioned-update' as const,
  readHistory: true,
  updateCreate: true,
  conditionalCreate: true,
  conditionalRead: 'not-supported' as const,
  conditionalUpdate: true,
  conditionalDelete: 'single' as const,
  searchInclude: ['*'],
  searchRevInclude: ['*'],
  operation: [{ name: 'validate', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate' }],
};

/**
 * The audit trail is written by the server and append-only (src/security/audit-trail.ts): read, searched
 * and listed, never created, changed or deleted through the API.
 */
const AUDIT_EVENT_CAPABILITIES = {
  ...STORED_TYPE_CAPABILITIES,
  interaction: ['read', 'vread', 'history-instance', 'history-type', 'search-type'].map((code) => ({ code: code as never })),
  versioning: 'versioned' as const,
  readHistory: false,
  updateCreate: false,
  conditionalCreate: false,
  conditionalUpdate: false,
  conditionalDelete: 'not-supported' as const,
};

/** Operations of one type beyond `$validate` (src/operations; test/capability.test.ts checks them against the registry). */
const TYPE_OPERATIONS: Record<string, { name: string; definition: string; documentation?: string }[]> = {
  CodeSystem: [{ name: 'lookup', definition: 'http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup' }],
  ValueSet: [
    { name: 'expand', definition: 'http://hl7.org/fhir/OperationDefinition/ValueSet-expand' },
    { name: 'validate-code', definition: 'http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code' },
  ],
  Patient: [
    { name: 'everything', definition: 'http://hl7.org/fhir/OperationDefinition/Patient-everything' },
    {
      name: 'summary',
      definition: 'http://hl7.org/fhir/uv/ips/OperationDefinition/summary',
      documentation:
        'IPS 2.0.0 patient summary, composed on demand (README § Patient summary). Beyond the IPS parameters (`identifier`, `profile`: Composition-uv-ips only), `language`: `fr` (default) or `en`, the narrative\'s language.',
    },
    {
      name: 'erase',
      definition: 'https://dossier.example.org/fhir/OperationDefinition/Patient-erase',
      documentation:
        'POST Patient/{id}/$erase closes the record for good (README § Encryption at rest): the patient, its compartment\'s members and their Binaries are deleted with their history, index and consent rows, and its data key is destroyed, so that the AuditEvents about it (append-only) are left unreadable. Allowed to the patient (token fhirUser = this Patient, a scope granting d on Patient) and to an administrator (a system/ scope granting d on every type). Answers an OperationOutcome.',
    },
  ],
};

/** Where a type behaves beyond the common interactions. */
const TYPE_DOCUMENTATION: Record<string, string> = {
  Binary:
    'Document content. Read with Accept other than FHIR JSON returns the raw bytes in their own media type; create/update also accept the raw bytes with their Content-Type.',
  Bundle:
    'Stored as a resource when its type is document, collection or message (as HAPI FHIR does); a transaction or batch is posted to the base, and a searchset or history is not stored (422).',
  CodeSystem: 'Stored like any other type, and in use by the validator and the terminology operations once written (a profile without a snapshot gets one from its differential). Besides the stored ones, the built-in base R4 code systems (HL7 FHIR, v2, v3) and the French ones (FR Core, ANS), read-only (update, patch, delete: 405), are read by their id and found by a search using only _id, url, name and version, after the stored ones.',
  StructureDefinition: 'Stored like any other type, and in use by the validator and the terminology operations once written (a profile without a snapshot gets one from its differential). Besides the stored ones, the built-in base R4 types, resources and extensions and the profiles the validator loads (FR Core, PDSm, IPS, dossier), read-only (update, patch, delete: 405), are read by their id and found by a search using only _id, url, name and version, after the stored ones.',
  ValueSet: 'Stored like any other type, and in use by the validator and the terminology operations once written (a profile without a snapshot gets one from its differential). Besides the stored ones, the built-in base R4 value sets and the French ones (FR Core, ANS), read-only (update, patch, delete: 405), are read by their id and found by a search using only _id, url, name and version, after the stored ones.',
  AuditEvent:
    'The audit trail (IHE BALP): one AuditEvent per interaction, written by the server (FHIR_AUDIT=on), a write\'s in its own transaction. Append-only: a create is refused (403), an update, patch or delete is not allowed (405), and the database refuses them too. Searched newest first (_sort=-date) unless _sort is given; AuditEvent?patient= reads a patient\'s trail, emergency accesses labelled (meta.security v3-ActReason BTG/ETREAT).',
};

const file = new URL('../capability-statement.json', import.meta.url);
const statement = JSON.parse(readFileSync(file, 'utf8')) as CapabilityStatement;
const registry = new SearchParameterRegistry(loadSearchParameters());
const rest = statement.rest![0]!;
// Every stored type admits the same interactions (the router has no code per type); only the search parameters differ.
rest.resource = [
  ...SERVED_RESOURCE_TYPES.map((type): CapabilityStatementRestResource => ({
    type: type as CapabilityStatementRestResource['type'],
    ...(TYPE_DOCUMENTATION[type] ? { documentation: TYPE_DOCUMENTATION[type] } : {}),
    ...(type === 'AuditEvent' ? AUDIT_EVENT_CAPABILITIES : STORED_TYPE_CAPABILITIES),
    ...(TYPE_OPERATIONS[type] ? { operation: [...STORED_TYPE_CAPABILITIES.operation, ...TYPE_OPERATIONS[type]] } : {}),
    searchParam: registry
      .forType(type)
      .sort((a, b) => a.code.localeCompare(b.code))
      .map((p) => ({ name: p.code, definition: p.url, type: p.type as never, ...(p.type === 'quantity' ? { documentation: QUANTITY_DOCUMENTATION } : {}) })),
  })),
];
// The profiles each served type's resources are held to, as the server starts (the French default profiles).
const validator = createProfileValidator({ defaultProfiles: FRENCH_DEFAULT_PROFILES });
rest.resource = rest.resource!.map((resource) => {
  if (!isServedResourceType(resource.type)) return resource;
  // supportedProfile goes where R4 puts it, after type.
  const { type, supportedProfile: _previous, ...declared } = resource;
  const profiles = validator.supportedProfiles(type);
  return { type, ...(profiles.length > 0 ? { supportedProfile: profiles } : {}), ...declared };
});
rest.compartment = [...loadCompartments().values()].map((compartment) => compartment.url);
writeFileSync(file, `${JSON.stringify(statement, null, 2)}\n`);
console.log(SERVED_RESOURCE_TYPES.map((t) => `${t}: ${registry.forType(t).length} search parameters`).join('\n'));
