-- Search indexes, one table per search parameter type (as HAPI FHIR JPA lays them out). Rows are
-- derived from the current version of each resource by the official SearchParameter expressions and
-- rewritten in the same transaction as the resource. `_id` and `_lastUpdated` use the resource table.

CREATE INDEX resource_type_last_updated ON resource (resource_type, last_updated);

CREATE TABLE search_token (
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  param         text NOT NULL,
  system        text,
  code          text,
  text          text              -- display / CodeableConcept.text, normalised, for :text
);
CREATE INDEX search_token_code ON search_token (resource_type, param, code, system);
CREATE INDEX search_token_resource ON search_token (resource_type, resource_id);

CREATE TABLE search_string (
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  param         text NOT NULL,
  value         text NOT NULL,    -- as written, for :exact
  normalized    text NOT NULL     -- case and accents folded, for the default starts-with and :contains
);
CREATE INDEX search_string_normalized ON search_string (resource_type, param, normalized text_pattern_ops);
CREATE INDEX search_string_resource ON search_string (resource_type, resource_id);

CREATE TABLE search_date (
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  param         text NOT NULL,
  low           timestamptz NOT NULL,  -- the value's range at its precision: [low, high)
  high          timestamptz NOT NULL
);
CREATE INDEX search_date_low ON search_date (resource_type, param, low);
CREATE INDEX search_date_high ON search_date (resource_type, param, high);
CREATE INDEX search_date_resource ON search_date (resource_type, resource_id);

CREATE TABLE search_reference (
  resource_type     text NOT NULL,
  resource_id       text NOT NULL,
  param             text NOT NULL,
  target_type       text,            -- a local reference `Type/id`
  target_id         text,
  url               text,            -- an absolute, canonical or urn reference
  identifier_system text,            -- Reference.identifier, for :identifier
  identifier_value  text
);
CREATE INDEX search_reference_source ON search_reference (resource_type, param, target_id);
CREATE INDEX search_reference_target ON search_reference (target_type, target_id, resource_type, param);
CREATE INDEX search_reference_resource ON search_reference (resource_type, resource_id);

CREATE TABLE search_uri (
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  param         text NOT NULL,
  uri           text NOT NULL
);
CREATE INDEX search_uri_uri ON search_uri (resource_type, param, uri text_pattern_ops);
CREATE INDEX search_uri_resource ON search_uri (resource_type, resource_id);

CREATE TABLE search_number (
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  param         text NOT NULL,
  value         numeric NOT NULL
);
CREATE INDEX search_number_value ON search_number (resource_type, param, value);
CREATE INDEX search_number_resource ON search_number (resource_type, resource_id);

CREATE TABLE search_quantity (
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  param         text NOT NULL,
  value         numeric NOT NULL,
  system        text,
  code          text,
  unit          text
);
CREATE INDEX search_quantity_value ON search_quantity (resource_type, param, value);
CREATE INDEX search_quantity_resource ON search_quantity (resource_type, resource_id);

CREATE TABLE search_composite (
  resource_type text NOT NULL,
  resource_id   text NOT NULL,
  param         text NOT NULL,
  key           text NOT NULL     -- component values joined by `$`
);
CREATE INDEX search_composite_key ON search_composite (resource_type, param, key);
CREATE INDEX search_composite_resource ON search_composite (resource_type, resource_id);
