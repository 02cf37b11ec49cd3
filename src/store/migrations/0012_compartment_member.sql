-- Compartment membership (issue 15): each resource's compartments among the five of R4 (Patient, Encounter,
-- RelatedPerson, Practitioner, Device), several per resource (an Appointment is in each participant's), as
-- the official CompartmentDefinitions give them (src/search/compartment.ts). Written with the index rows,
-- in the write's own statement (src/search/index-writer.ts). One index: a compartment search
-- (`Practitioner/1/Immunization`) reads it alone, and a rewrite finds a resource's old rows in it from the
-- compartments its old reference rows name (no second index by resource, which every write would pay for).
-- Not a unique key: a rewrite deletes and inserts the same rows in one statement, where a unique check sees
-- the old ones still there (the writer gives each membership once).
CREATE TABLE compartment_member (
  compartment_type text NOT NULL,
  compartment_id   text NOT NULL,
  resource_type    text NOT NULL,
  resource_id      text NOT NULL
);
CREATE INDEX compartment_member_compartment ON compartment_member (compartment_type, compartment_id, resource_type, resource_id);
CREATE INDEX compartment_member_resource ON compartment_member (resource_type, resource_id);

-- The rows of resources already stored, and the record patient (`patient_id`) of their index rows as the
-- definitions now give it, are filled after these statements by a step in TypeScript
-- (src/store/migration-steps.ts) that reads the parameters from the definitions: no copy of them here.
