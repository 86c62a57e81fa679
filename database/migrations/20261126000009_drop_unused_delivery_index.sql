-- No query looks attempts up by (job_id, attempt): the unique index on successful attempts
-- serves the one lookup by job. Every recorded attempt paid for this index.
DROP INDEX deliveries_job_idx;
