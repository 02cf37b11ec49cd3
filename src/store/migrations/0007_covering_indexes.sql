-- Two index lookups that ran once per row of a reverse chain (`_has`) or a date range now answer from the
-- index alone, without visiting the table (measured at 1,000,000 resources, one request at a time, the
-- search benchmark's `_has` query: reading its sources 17.2 -> 12.9 ms, its page 17.4 -> 12.1 ms):
-- - a resource's references, by its id, carry where they point (also what `_include` follows);
-- - a date range's rows, walked by their low bound, carry their high bound and their resource.
-- The indexes grow (2.4 M references: 93 -> 326 MB; 1.6 M dates: 78 -> 163 MB).
DROP INDEX search_reference_resource;
CREATE INDEX search_reference_resource ON search_reference (resource_type, resource_id) INCLUDE (param, target_type, target_id);
DROP INDEX search_date_low;
CREATE INDEX search_date_low ON search_date (resource_type, param, low) INCLUDE (high, resource_id);
