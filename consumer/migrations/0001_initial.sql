-- The projection, the append-only event log, and the consumer's offsets.

CREATE TABLE users (
    user_id     text PRIMARY KEY,
    email       text,
    name        text,
    status      text NOT NULL CHECK (status IN ('active', 'deleted')),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    -- The version of the event that last wrote each register (status, email, name):
    -- [sequence, time, source, id]. Ordering decisions compare against these.
    versions    jsonb NOT NULL
);

-- No two active users share an email, whatever its case.
CREATE UNIQUE INDEX users_active_email_key ON users (lower(email)) WHERE status = 'active';

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
    -- CloudEvents: source + id identify an event; this is the idempotency key.
    PRIMARY KEY (source, event_id)
);

CREATE INDEX user_events_user_id_idx ON user_events (user_id);

CREATE FUNCTION user_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'user_events is append-only';
END;
$$;

CREATE TRIGGER user_events_append_only
    BEFORE UPDATE OR DELETE ON user_events
    FOR EACH STATEMENT EXECUTE FUNCTION user_events_append_only();

-- Offsets are written in the same transaction as the effects of the records before
-- them, so that after any crash the consumer resumes exactly where its effects end.
CREATE TABLE consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
