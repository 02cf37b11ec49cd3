-- The change feed: each history row carries the id of the transaction that wrote it. `seq` is taken
-- inside the transaction and `last_updated` before it commits, so neither follows commit order; the
-- transaction id does what they cannot: every transaction below the oldest one still running
-- (pg_snapshot_xmin) is finished, and any later writer gets a larger id, so the rows below that horizon
-- are final and a reader walking (xid, seq) upwards to it never skips or repeats one (change-feed.ts).

-- Rows written before this migration share xid 0, below every horizon, in their old seq order. A
-- constant default fills them without rewriting the table; new rows then take their writer's id.
ALTER TABLE resource_history ADD COLUMN xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE resource_history ALTER COLUMN xid SET DEFAULT pg_current_xact_id();

-- System and type history are listed in feed order, newest first, through these two, which replace their
-- seq indexes. One resource's history is listed by version_id, through the primary key: its seq index
-- goes, so a write maintains one index fewer than before.
CREATE UNIQUE INDEX resource_history_feed ON resource_history (xid, seq);
CREATE INDEX resource_history_type_feed ON resource_history (resource_type, xid, seq);
DROP INDEX resource_history_seq;
DROP INDEX resource_history_type_seq;
DROP INDEX resource_history_instance_seq;
