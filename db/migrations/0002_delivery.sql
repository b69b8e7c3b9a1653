-- 0002: what the channel workers need to claim messages safely and keep their history.

ALTER TABLE message_logs
    -- The worker holding the message, and until when: a redelivered record is not sent again while a
    -- live claim exists, and an expired claim (a dead worker) can be taken over.
    ADD COLUMN claimed_by text,
    ADD COLUMN lease_until timestamptz,
    -- One entry per failed attempt and per replay: {"at", "attempt", "error", "code", ...}.
    ADD COLUMN attempt_errors jsonb NOT NULL DEFAULT '[]';

CREATE INDEX message_logs_failed ON message_logs (site_id, updated_at) WHERE status = 'FAILED';
