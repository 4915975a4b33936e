-- Where `dlq redrive` stands on each dead-letter partition, and what it did to each
-- dead letter, so that a rerun picks up where the last one stopped and never redrives
-- the same dead letter twice by accident.

-- Every dead letter before next_offset has been handled (redriven or refused).
CREATE TABLE dlq_redrive_positions (
    dlq_topic   text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, partition)
);

-- One row per handled dead letter; dead letters a filter left out have none yet.
CREATE TABLE dlq_redrives (
    dlq_topic     text NOT NULL,
    partition     integer NOT NULL,
    dlq_offset    bigint NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('redriven', 'refused')),
    reason        text,
    target_topic  text,
    redrive_count integer NOT NULL,
    detail        text,
    handled_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, partition, dlq_offset)
);
