-- `near` (R4 search.html#special, Location.position: the one R4 parameter of type special) compares a WGS84
-- point with a distance: its coordinates are indexed here at write time (src/search/extract.ts), one row per
-- position, and a search reads a latitude/longitude box through the index before the great-circle distance
-- (src/search/sql.ts). Locations stored before this migration are found after `npm run reindex`.
CREATE TABLE search_position (
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  param         text NOT NULL,
  latitude      double precision NOT NULL,
  longitude     double precision NOT NULL,
  patient_id    text
);
CREATE INDEX search_position_point ON search_position (resource_type, param, latitude, longitude);
CREATE INDEX search_position_resource ON search_position (resource_type, resource_id);

-- A composite whose last component is a date (R4: Observation `code-value-date`) is searched with the date's
-- prefixes and ranges (`http://loinc.org|21112-8$ge1980-01-01`), as one ending with a quantity is (0014): its
-- date is indexed as a date row beside the key of its other components. NULL on the rows of date parameters.
-- Observations written before are found so after `npm run reindex`. Nullable, no default: no table rewrite.
ALTER TABLE search_date ADD COLUMN composite_key text;
