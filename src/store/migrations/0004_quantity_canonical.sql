-- Quantities with a UCUM code, also in UCUM base units (src/search/ucum.ts), so a search in mg finds a
-- dose written in µg (R4 search.html#quantity: "the server SHOULD support canonical units"). NULL when
-- the quantity has no UCUM code or the code has no such form. Rows written before this migration have
-- NULL until `npm run reindex` rebuilds them.
ALTER TABLE search_quantity ADD COLUMN canonical_value numeric;
ALTER TABLE search_quantity ADD COLUMN canonical_unit text;
CREATE INDEX search_quantity_canonical ON search_quantity (resource_type, param, canonical_unit, canonical_value);
