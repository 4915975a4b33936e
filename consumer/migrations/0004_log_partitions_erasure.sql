-- Personal data gets a lifecycle: the event log is partitioned by the day it was recorded,
-- so that retention drops whole days; each user gets a key that seals the personal values
-- the log keeps of them, and erasure destroys it; every erasure and every prune is
-- recorded, without personal data.

-- The key that seals the user's personal values in the event log (AES-256-GCM, see
-- consumer/core/sealing.py); null once the user is deleted or erased, which leaves
-- every log row sealed with it unreadable. Active users get one here (two random UUIDs:
-- 244 random bits); the service makes the others.
ALTER TABLE users ADD COLUMN data_key bytea;
UPDATE users
SET data_key = decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
WHERE status = 'active';

-- Rows written before this migration hold their personal values in plain text; an
-- erasure nulls them in place (rows written since are sealed, and erasure destroys the
-- key). Erasure looks for plain text only on the days up to ``through``; none when the
-- log was empty.
CREATE TABLE log_plaintext (through date NOT NULL);

-- The event's personal values in a stored payload replaced by null. The keys stay, so
-- that the row still says which personal fields the event carried. The service writes
-- a payload of a deleted user's event this way too (consumer/core/erasure.py: the same
-- rule, kept equal by a test).
CREATE FUNCTION user_events_erased(payload jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN jsonb_typeof(payload -> 'data') = 'object'
            AND (payload -> 'data' ? 'email' OR payload -> 'data' ? 'name')
        THEN jsonb_set(
            payload,
            '{data}',
            (payload -> 'data')
                || CASE WHEN payload -> 'data' ? 'email'
                        THEN '{"email": null}'::jsonb ELSE '{}'::jsonb END
                || CASE WHEN payload -> 'data' ? 'name'
                        THEN '{"name": null}'::jsonb ELSE '{}'::jsonb END)
        ELSE payload
    END
$$;

-- True while a payload still holds a personal value (what an erasure must reach).
CREATE FUNCTION user_events_holds_personal(payload jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(payload -> 'data' ->> 'email', payload -> 'data' ->> 'name') IS NOT NULL
$$;

ALTER TABLE user_events RENAME TO user_events_0003;
ALTER TABLE user_events_0003 RENAME CONSTRAINT user_events_pkey TO user_events_0003_pkey;
ALTER INDEX user_events_user_id_idx RENAME TO user_events_0003_user_id_idx;
DROP TRIGGER user_events_append_only ON user_events_0003;
DROP FUNCTION user_events_append_only();

CREATE TABLE user_events (
    source          text NOT NULL,
    event_id        text NOT NULL,
    user_id         text NOT NULL,
    type            text NOT NULL,
    time            timestamptz NOT NULL,
    sequence        bigint,
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    payload         jsonb NOT NULL,
    outcome         text NOT NULL CHECK (outcome IN ('applied', 'stale')),
    -- The event's personal values, sealed with its user's key (users.data_key): payload
    -- holds them as null. Null for an event without any, one of a user without a key,
    -- and rows from before this migration (whose payload holds them in plain).
    personal        bytea,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The partition key: the UTC day of recorded_at (one transaction, one now()).
    recorded_on     date NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')::date,
    -- A unique key of a partitioned table must hold its partition key: this one makes
    -- (source, id) unique within a day. Across days, a redelivery is found a duplicate
    -- by its version before it is written (consumer/core/dedupe.py).
    PRIMARY KEY (source, event_id, recorded_on)
) PARTITION BY RANGE (recorded_on);

CREATE INDEX user_events_user_id_idx ON user_events (user_id);

-- The partition of one day, created if missing; true when it was created. Replicas and
-- tools call it at will: the lock makes two creations of one day queue.
CREATE FUNCTION user_events_add_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    partition_name text := 'user_events_' || to_char(day, 'YYYYMMDD');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('user_events_add_partition'), 0);
    IF to_regclass(partition_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format(
        'CREATE TABLE %I PARTITION OF user_events FOR VALUES FROM (%L) TO (%L)',
        partition_name, day, day + 1);
    RETURN true;
END;
$$;

-- Append-only, but for erasure: an UPDATE may only null the personal values of the
-- payload, and nothing may DELETE a row. Retention drops whole partitions, which no
-- row trigger sees. The UPDATE rule is the trigger's WHEN condition, which PostgreSQL
-- evaluates without calling a function for the rows that pass it: an erasure pays
-- half what a PL/pgSQL check per row costs (measured).
CREATE FUNCTION user_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'user_events is append-only: only an erasure of personal values may change a row';
END;
$$;

CREATE TRIGGER user_events_append_only
    BEFORE UPDATE ON user_events
    FOR EACH ROW
    WHEN (NOT (
        NEW.payload = user_events_erased(OLD.payload)
        AND (NEW.source, NEW.event_id, NEW.user_id, NEW.type, NEW.time, NEW.sequence,
             NEW.kafka_topic, NEW.kafka_partition, NEW.kafka_offset, NEW.outcome,
             NEW.personal, NEW.recorded_at, NEW.recorded_on)
            IS NOT DISTINCT FROM
            (OLD.source, OLD.event_id, OLD.user_id, OLD.type, OLD.time, OLD.sequence,
             OLD.kafka_topic, OLD.kafka_partition, OLD.kafka_offset, OLD.outcome,
             OLD.personal, OLD.recorded_at, OLD.recorded_on)))
    EXECUTE FUNCTION user_events_append_only();

CREATE TRIGGER user_events_no_delete
    BEFORE DELETE ON user_events
    FOR EACH ROW EXECUTE FUNCTION user_events_append_only();

-- Each erasure: whose, when and how, never what. ``version`` is the tombstone's version
-- ([sequence, time, source, id], as in users.versions): the deleting event's, or for a
-- request the one the tool made, which ``rebuild`` applies again.
CREATE TABLE erasures (
    erasure_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      text NOT NULL,
    erased_at    timestamptz NOT NULL DEFAULT now(),
    trigger      text NOT NULL CHECK (trigger IN ('event', 'request')),
    event_source text NOT NULL,
    event_id     text NOT NULL,
    reason       text,
    version      jsonb NOT NULL
);

CREATE INDEX erasures_user_id_idx ON erasures (user_id, erased_at);

-- Each prune that dropped days of the log: a rebuild from a pruned log would be wrong,
-- and says so.
CREATE TABLE log_prunes (
    pruned_at   timestamptz NOT NULL DEFAULT now(),
    horizon     timestamptz NOT NULL,
    days        date[] NOT NULL,
    rows        bigint NOT NULL,
    pruned_by   text NOT NULL CHECK (pruned_by IN ('schedule', 'tool'))
);

-- The existing log, day by day, with the days around today ready for what comes next.
SELECT user_events_add_partition(day)
FROM (
    SELECT DISTINCT (recorded_at AT TIME ZONE 'UTC')::date AS day FROM user_events_0003
    UNION
    SELECT (now() AT TIME ZONE 'UTC')::date + ahead FROM generate_series(0, 2) AS ahead
) AS days;

-- The users whose personal data a delete should have erased already: every row of a user
-- deleted now, and every row before a user's last applied delete (re-created since):
-- recorded in an earlier batch, or in the delete's own batch with an older version. And
-- every stale row: the service now writes none with personal values.
CREATE TEMPORARY TABLE erased_before ON COMMIT DROP AS
SELECT DISTINCT ON (e.user_id)
       e.user_id, e.recorded_at AS deleted_at, e.sequence AS deleted_sequence,
       e.time AS deleted_time,
       jsonb_build_array(e.sequence, e.time, e.source, e.event_id) AS version
FROM user_events_0003 AS e
WHERE e.type = 'user.deleted' AND e.outcome = 'applied'
ORDER BY e.user_id, e.recorded_at DESC, e.kafka_offset DESC;

INSERT INTO user_events (
    source, event_id, user_id, type, time, sequence, kafka_topic, kafka_partition,
    kafka_offset, payload, outcome, recorded_at, recorded_on)
SELECT e.source, e.event_id, e.user_id, e.type, e.time, e.sequence, e.kafka_topic,
       e.kafka_partition, e.kafka_offset,
       CASE WHEN u.status = 'deleted'
                 OR e.outcome = 'stale'
                 OR e.recorded_at < d.deleted_at
                 OR (e.recorded_at = d.deleted_at
                     AND CASE WHEN e.sequence IS NOT NULL AND d.deleted_sequence IS NOT NULL
                              THEN e.sequence <= d.deleted_sequence
                              ELSE e.time <= d.deleted_time END)
            THEN user_events_erased(e.payload) ELSE e.payload END,
       e.outcome, e.recorded_at, (e.recorded_at AT TIME ZONE 'UTC')::date
FROM user_events_0003 AS e
LEFT JOIN users AS u USING (user_id)
LEFT JOIN erased_before AS d USING (user_id);

INSERT INTO erasures (user_id, trigger, event_source, event_id, version)
SELECT d.user_id, 'event', d.version ->> 2, d.version ->> 3, d.version
FROM erased_before AS d;

INSERT INTO log_plaintext (through)
SELECT max(recorded_on) FROM user_events HAVING count(*) > 0;

DROP TABLE user_events_0003;
