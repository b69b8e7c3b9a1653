-- 0006: scheduled sends. A message with a send_at in the future is stored SCHEDULED and published when due
-- (db/queries/messages.sql: take_due_scheduled); a site may cancel it before then (CANCELLED). The daily
-- metrics count both statuses, so their triggers and the delta type gain two columns.

ALTER TABLE message_logs ADD COLUMN send_at timestamptz;
-- What the scheduler reads each second: the due rows, oldest first, and nothing else.
CREATE INDEX message_logs_scheduled_due ON message_logs (send_at) WHERE status = 'SCHEDULED';

ALTER TABLE site_metrics_daily
    ADD COLUMN scheduled bigint NOT NULL DEFAULT 0,
    ADD COLUMN cancelled bigint NOT NULL DEFAULT 0;
ALTER TYPE metric_delta ADD ATTRIBUTE scheduled bigint, ADD ATTRIBUTE cancelled bigint;

CREATE OR REPLACE FUNCTION add_metric_deltas(deltas metric_delta[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO site_metrics_daily AS m
        (site_id, day, channel, total, pending, processing, sent, failed, delivered, bounced, read,
         scheduled, cancelled)
    SELECT * FROM unnest(deltas) ORDER BY 1, 2, 3
    ON CONFLICT (site_id, day, channel) DO UPDATE SET
        total      = m.total + EXCLUDED.total,
        pending    = m.pending + EXCLUDED.pending,
        processing = m.processing + EXCLUDED.processing,
        sent       = m.sent + EXCLUDED.sent,
        failed     = m.failed + EXCLUDED.failed,
        delivered  = m.delivered + EXCLUDED.delivered,
        bounced    = m.bounced + EXCLUDED.bounced,
        read       = m.read + EXCLUDED.read,
        scheduled  = m.scheduled + EXCLUDED.scheduled,
        cancelled  = m.cancelled + EXCLUDED.cancelled;
END $$;

CREATE OR REPLACE FUNCTION message_logs_metrics_on_insert_or_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    direction CONSTANT bigint := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM add_metric_deltas(array_agg(ROW(x.*)::metric_delta)) FROM (
        SELECT site_id, (created_at AT TIME ZONE 'UTC')::date, channel,
               direction * count(*),
               direction * count(*) FILTER (WHERE status = 'PENDING'),
               direction * count(*) FILTER (WHERE status = 'PROCESSING'),
               direction * count(*) FILTER (WHERE status = 'SENT'),
               direction * count(*) FILTER (WHERE status = 'FAILED'),
               direction * count(*) FILTER (WHERE status = 'DELIVERED'),
               direction * count(*) FILTER (WHERE status = 'BOUNCED'),
               direction * count(*) FILTER (WHERE status = 'READ'),
               direction * count(*) FILTER (WHERE status = 'SCHEDULED'),
               direction * count(*) FILTER (WHERE status = 'CANCELLED')
        FROM changed_rows GROUP BY 1, 2, 3
    ) x HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION message_logs_metrics_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM add_metric_deltas(array_agg(ROW(x.*)::metric_delta)) FROM (
        SELECT n.site_id, (n.created_at AT TIME ZONE 'UTC')::date, n.channel,
               0::bigint,
               sum((n.status = 'PENDING')::int - (o.status = 'PENDING')::int),
               sum((n.status = 'PROCESSING')::int - (o.status = 'PROCESSING')::int),
               sum((n.status = 'SENT')::int - (o.status = 'SENT')::int),
               sum((n.status = 'FAILED')::int - (o.status = 'FAILED')::int),
               sum((n.status = 'DELIVERED')::int - (o.status = 'DELIVERED')::int),
               sum((n.status = 'BOUNCED')::int - (o.status = 'BOUNCED')::int),
               sum((n.status = 'READ')::int - (o.status = 'READ')::int),
               sum((n.status = 'SCHEDULED')::int - (o.status = 'SCHEDULED')::int),
               sum((n.status = 'CANCELLED')::int - (o.status = 'CANCELLED')::int)
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status
        GROUP BY 1, 2, 3
    ) x HAVING count(*) > 0;
    RETURN NULL;
END $$;
