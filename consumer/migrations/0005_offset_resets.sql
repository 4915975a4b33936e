-- Every time the service moved a partition's stored offset other than by applying records
-- (a stored offset past the end of its log, reset as OFFSET_PAST_END says): which, from
-- where to where, when and why. Written in the transaction of the compare-and-set.
CREATE TABLE offset_resets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    old_offset  bigint NOT NULL,
    new_offset  bigint NOT NULL,
    reason      text NOT NULL,
    reset_at    timestamptz NOT NULL DEFAULT now()
);
