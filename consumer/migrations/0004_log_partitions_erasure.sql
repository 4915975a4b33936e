-- Personal data gets a lifecycle: the event log is partitioned by the day it was recorded,
-- so that retention drops whole days; erasure may null a row's personal values and
-- nothing else; every erasure and every prune is recorded, without personal data.

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
-- row trigger sees.
CREATE FUNCTION user_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND NEW.payload = user_events_erased(OLD.payload)
        AND to_jsonb(NEW) - 'payload' = to_jsonb(OLD) - 'payload'
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'user_events is append-only: only an erasure of personal values may change a row';
END;
$$;

CREATE TRIGGER user_events_append_only
    BEFORE UPDATE OR DELETE ON user_events
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
    log_rows     integer NOT NULL,
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
-- deleted now, and every row up to a user's last applied delete (re-created since).
CREATE TEMPORARY TABLE erased_before ON COMMIT DROP AS
SELECT e.user_id,
       max(e.recorded_at) AS deleted_at,
       (array_agg(jsonb_build_array(e.sequence, e.time, e.source, e.event_id)
                  ORDER BY e.recorded_at DESC, e.kafka_offset DESC))[1] AS version
FROM user_events_0003 AS e
WHERE e.type = 'user.deleted' AND e.outcome = 'applied'
GROUP BY e.user_id;

INSERT INTO user_events (
    source, event_id, user_id, type, time, sequence, kafka_topic, kafka_partition,
    kafka_offset, payload, outcome, recorded_at, recorded_on)
SELECT e.source, e.event_id, e.user_id, e.type, e.time, e.sequence, e.kafka_topic,
       e.kafka_partition, e.kafka_offset,
       CASE WHEN u.status = 'deleted' OR e.recorded_at <= d.deleted_at
            THEN user_events_erased(e.payload) ELSE e.payload END,
       e.outcome, e.recorded_at, (e.recorded_at AT TIME ZONE 'UTC')::date
FROM user_events_0003 AS e
LEFT JOIN users AS u USING (user_id)
LEFT JOIN erased_before AS d USING (user_id);

INSERT INTO erasures (user_id, trigger, event_source, event_id, log_rows, version)
SELECT d.user_id, 'event', d.version ->> 2, d.version ->> 3,
       (SELECT count(*) FROM user_events AS e
        WHERE e.user_id = d.user_id
          AND (e.payload -> 'data' ? 'email' OR e.payload -> 'data' ? 'name')),
       d.version
FROM erased_before AS d;

DROP TABLE user_events_0003;
