-- A dead letter refused because it reached `dlq redrive --max-redrives` is redriven by a
-- later run with a higher limit. Such a refusal is told apart from the others, which are
-- for good (the dead letter lacks its value, or its original topic).
ALTER TABLE dlq_redrives ADD COLUMN refused_at_limit boolean NOT NULL DEFAULT false;

-- Refusals recorded before this column existed, by the detail they were recorded with.
UPDATE dlq_redrives SET refused_at_limit = true
WHERE outcome = 'refused' AND detail LIKE 'redriven % times already (limit %)';

-- Each run reads them wherever its position stands.
CREATE INDEX dlq_redrives_refused_at_limit_idx ON dlq_redrives (dlq_topic)
    WHERE refused_at_limit;
