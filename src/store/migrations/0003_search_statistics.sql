-- Extended statistics: the planner otherwise assumes resource_type, param and code are independent and
-- expects 2 rows where thousands match (measured at a million resources: a `_has` planned as a loop,
-- document searches starting from the wrong index). ANALYZE (autovacuum) fills them in.
CREATE STATISTICS search_token_stats (dependencies, mcv) ON resource_type, param, code, system FROM search_token;
CREATE STATISTICS search_reference_stats (dependencies, mcv) ON resource_type, param, target_type FROM search_reference;
CREATE STATISTICS search_date_stats (dependencies, mcv) ON resource_type, param FROM search_date;
CREATE STATISTICS search_string_stats (dependencies, mcv) ON resource_type, param FROM search_string;
