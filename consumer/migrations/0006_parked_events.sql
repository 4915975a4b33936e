-- Parking (docs/parking.md): an event that waits for something another partition brings
-- (its user's user.created, or an email another active user still holds) is kept here,
-- written in the transaction of its batch, until a later batch applies it (heals it) or
-- PARK_TTL passes and it is dead-lettered. The rows are the state: nothing else is.
CREATE TABLE parked_events (
    source          text NOT NULL,
    event_id        text NOT NULL,
    user_id         text NOT NULL,
    -- Why it waits, as its dead letter would say it: unknown_user (waits for user_id's
    -- create) or conflict (waits for waits_for_email to be freed).
    reason          text NOT NULL CHECK (reason IN ('unknown_user', 'conflict')),
    -- Personal data: the lower-cased email a conflict claims (docs/privacy.md).
    waits_for_email text CHECK ((reason = 'conflict') = (waits_for_email IS NOT NULL)),
    -- The rejection its dead letter carries if it expires (dlq.error, dlq.errors).
    error           text NOT NULL,
    errors          text NOT NULL,
    -- The record as fetched, byte for byte: healing decodes it again, and its dead
    -- letter is the record itself with its provenance. Personal data (its value).
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    kafka_timestamp bigint NOT NULL,
    kafka_key       bytea,
    kafka_value     bytea,
    header_names    text[] NOT NULL,
    header_values   bytea[] NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);

-- A batch looks up what waits for the users it changed and the emails it freed; the
-- sweep expires the oldest first.
CREATE INDEX parked_events_user_id_idx ON parked_events (user_id);
CREATE INDEX parked_events_email_idx ON parked_events (waits_for_email)
    WHERE waits_for_email IS NOT NULL;
CREATE INDEX parked_events_parked_at_idx ON parked_events (parked_at);

-- A healed event is logged with when it was parked, so that `event` can say how long it
-- waited; null for every event applied when it arrived.
ALTER TABLE user_events ADD COLUMN parked_at timestamptz;

-- The append-only rule compares every column but the payload: parked_at joins them.
DROP TRIGGER user_events_append_only ON user_events;
CREATE TRIGGER user_events_append_only
    BEFORE UPDATE ON user_events
    FOR EACH ROW
    WHEN (NOT (
        NEW.payload = user_events_erased(OLD.payload)
        AND (NEW.source, NEW.event_id, NEW.user_id, NEW.type, NEW.time, NEW.sequence,
             NEW.kafka_topic, NEW.kafka_partition, NEW.kafka_offset, NEW.outcome,
             NEW.personal, NEW.recorded_at, NEW.recorded_on, NEW.parked_at)
            IS NOT DISTINCT FROM
            (OLD.source, OLD.event_id, OLD.user_id, OLD.type, OLD.time, OLD.sequence,
             OLD.kafka_topic, OLD.kafka_partition, OLD.kafka_offset, OLD.outcome,
             OLD.personal, OLD.recorded_at, OLD.recorded_on, OLD.parked_at)))
    EXECUTE FUNCTION user_events_append_only();
