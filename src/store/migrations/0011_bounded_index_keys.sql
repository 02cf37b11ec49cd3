-- A btree index entry holds at most about 2.7 KB: a searchable value longer than that (a 3 KB text in a
-- string, token, uri or composite parameter) failed its whole write with "index row size exceeds btree
-- maximum" (54000). The indexes now hold the first 256 characters of those values (at most 1 KB each in
-- UTF-8); a search compares that prefix through the index, then the whole value where the searched one is
-- as long (src/search/sql.ts, INDEXED_PREFIX). The value itself is stored whole, as before.
DROP INDEX search_token_code;
CREATE INDEX search_token_code ON search_token (resource_type, param, left(code, 256), left(system, 256));
DROP INDEX search_string_normalized;
CREATE INDEX search_string_normalized ON search_string (resource_type, param, left(normalized, 256) text_pattern_ops);
DROP INDEX search_uri_uri;
CREATE INDEX search_uri_uri ON search_uri (resource_type, param, left(uri, 256) text_pattern_ops);
DROP INDEX search_composite_key;
CREATE INDEX search_composite_key ON search_composite (resource_type, param, left(key, 256));

-- The planner's knowledge of common codes (0003, 0009) follows the codes as they are now compared.
DROP STATISTICS search_token_stats;
CREATE STATISTICS search_token_stats (dependencies, mcv) ON resource_type, param, (left(code, 256)), (left(system, 256)) FROM search_token;
ALTER STATISTICS search_token_stats SET STATISTICS 1000;
ANALYZE search_token;
