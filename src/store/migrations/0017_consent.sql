-- The patient's consent, as the reads need it (src/store/consent-rows.ts, consent-scope.ts): written with the
-- index rows, in the write's own statement, from the resource being written, so that a read costs indexed
-- lookups in these tables and never a parse of Consents or of resource content. `npm run reindex` rebuilds them.

-- What active patient-privacy Consents say about a patient's record: an actor opposed (a Practitioner,
-- PractitionerRole or Organization, `Type/id`) or, `actor` NULL, the record closed to everyone but the patient.
CREATE TABLE consent_rule (
  consent_id text NOT NULL,   -- the Consent the rule comes from (its rows are rewritten with it)
  patient_id text NOT NULL,
  actor      text
);
CREATE INDEX consent_rule_patient ON consent_rule (patient_id, actor);
CREATE INDEX consent_rule_actor ON consent_rule (actor, patient_id);
CREATE INDEX consent_rule_consent ON consent_rule (consent_id);

-- Resources labelled with a DMP visibility (TRE_A07 MASQUE_PS, INVISIBLE_PATIENT), and the deleted members of a
-- patient's record (whose compartment memberships go with their index rows, while their history stays): one
-- row each, found by the resource, with what decides who sees it.
CREATE TABLE resource_visibility (
  resource_type       text    NOT NULL,
  resource_id         text    NOT NULL,
  patient_id          text,              -- the patient whose record it is part of
  masked              boolean NOT NULL,  -- MASQUE_PS: hidden from professionals but its authors and the médecin traitant
  hidden_from_patient boolean NOT NULL,  -- INVISIBLE_PATIENT: hidden from the patient
  authors             text[]  NOT NULL,  -- its author/recorder/performer references, `Type/id`
  sent_by             text               -- the SMART client whose write labelled it (a feeding system still matches it)
);
CREATE INDEX resource_visibility_resource ON resource_visibility (resource_type, resource_id);

-- Each Binary's local securityContext (`Type/id`): a Binary is seen as what it belongs to (R4 binary.html#security).
CREATE TABLE binary_context (
  binary_id    text NOT NULL,
  context_type text NOT NULL,
  context_id   text NOT NULL
);
CREATE INDEX binary_context_binary ON binary_context (binary_id);
