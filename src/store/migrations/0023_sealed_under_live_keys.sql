-- Nothing is sealed under a destroyed data key (issue 18): a server process keeps the data keys it unwrapped
-- in memory (src/store/encryption.ts), and hears of a key another process destroyed (Patient/{id}/$erase) by
-- a notification, which a write already under way may beat. A version's content, or a Binary chunk, written
-- sealed names its key: that key must exist, else the write fails with SQLSTATE DK001 (the writer forgets the
-- key and answers 409; tried again, the write gets the owner's current key, a new one for an erased record).
-- The WHEN clauses keep clear writes (JSON starts with '{', a chunk without key) free of the function call.

CREATE FUNCTION refuse_content_under_destroyed_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM data_key WHERE key_id = substr(NEW.content, 5, 36)::uuid) THEN
    RAISE EXCEPTION 'data key % was destroyed: %/% is not sealed under it', substr(NEW.content, 5, 36), NEW.resource_type, NEW.id
      USING ERRCODE = 'DK001';
  END IF;
  RETURN NEW;
END
$$;

CREATE FUNCTION refuse_chunk_under_destroyed_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM data_key WHERE key_id = NEW.key_id) THEN
    RAISE EXCEPTION 'data key % was destroyed: no Binary bytes are sealed under it', NEW.key_id
      USING ERRCODE = 'DK001';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER resource_sealed_under_live_key
  BEFORE INSERT OR UPDATE OF content ON resource
  FOR EACH ROW WHEN (left(NEW.content, 1) = '$')
  EXECUTE FUNCTION refuse_content_under_destroyed_key();

CREATE TRIGGER resource_history_sealed_under_live_key
  BEFORE INSERT OR UPDATE OF content ON resource_history
  FOR EACH ROW WHEN (left(NEW.content, 1) = '$')
  EXECUTE FUNCTION refuse_content_under_destroyed_key();

CREATE TRIGGER binary_chunk_sealed_under_live_key
  BEFORE INSERT OR UPDATE OF key_id ON binary_chunk
  FOR EACH ROW WHEN (NEW.key_id IS NOT NULL)
  EXECUTE FUNCTION refuse_chunk_under_destroyed_key();
