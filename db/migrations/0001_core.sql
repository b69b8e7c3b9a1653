-- 0001: sites, message log, per-site daily metrics kept in step with the log by triggers.

CREATE TYPE site_status AS ENUM ('active', 'suspended', 'deactivated');
CREATE TYPE channel AS ENUM ('email', 'whatsapp');
-- PENDING -> PROCESSING -> SENT | FAILED; provider webhooks later move SENT to DELIVERED/BOUNCED/READ.
CREATE TYPE message_status AS ENUM ('PENDING', 'PROCESSING', 'SENT', 'FAILED', 'DELIVERED', 'BOUNCED', 'READ');

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TABLE frappe_sites (
    id               uuid PRIMARY KEY,
    site_name        text NOT NULL UNIQUE,
    site_url         text,
    status           site_status NOT NULL DEFAULT 'active',
    -- The public half of the API key: one indexed row is checked per key, never every site.
    key_lookup_id    text NOT NULL UNIQUE,
    key_hash         text NOT NULL,
    key_created_at   timestamptz NOT NULL DEFAULT now(),
    enabled_channels channel[] NOT NULL DEFAULT '{email,whatsapp}',
    rate_limit_per_minute integer CHECK (rate_limit_per_minute IS NULL OR rate_limit_per_minute > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER frappe_sites_updated_at BEFORE UPDATE ON frappe_sites
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE message_logs (
    id                      uuid PRIMARY KEY,
    site_id                 uuid NOT NULL REFERENCES frappe_sites (id),
    channel                 channel NOT NULL,
    recipient               text NOT NULL,
    subject                 text,
    body                    text NOT NULL,
    html                    text,
    metadata                jsonb NOT NULL DEFAULT '{}',
    status                  message_status NOT NULL DEFAULT 'PENDING',
    attempts                integer NOT NULL DEFAULT 0,
    last_error              text,
    -- A stable machine-readable reason next to last_error (enqueue_failed, provider_rejected, ...).
    failure_code            text,
    provider_message_id     text,
    idempotency_key         text,
    -- Hash of the request that first used idempotency_key: a reuse with another body is a conflict.
    idempotency_fingerprint text,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    sent_at                 timestamptz,
    CONSTRAINT message_logs_site_idempotency_key UNIQUE (site_id, idempotency_key)
);

-- Listing: newest first per site, optionally by status or channel.
CREATE INDEX message_logs_site_created ON message_logs (site_id, created_at DESC, id DESC);
CREATE INDEX message_logs_site_status_created ON message_logs (site_id, status, created_at DESC, id DESC);
-- The stuck-PENDING sweeper looks only at PENDING rows.
CREATE INDEX message_logs_pending_updated ON message_logs (updated_at) WHERE status = 'PENDING';

CREATE TRIGGER message_logs_updated_at BEFORE UPDATE ON message_logs
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE site_metrics_daily (
    site_id    uuid NOT NULL REFERENCES frappe_sites (id),
    day        date NOT NULL,
    channel    channel NOT NULL,
    total      bigint NOT NULL DEFAULT 0,
    pending    bigint NOT NULL DEFAULT 0,
    processing bigint NOT NULL DEFAULT 0,
    sent       bigint NOT NULL DEFAULT 0,
    failed     bigint NOT NULL DEFAULT 0,
    delivered  bigint NOT NULL DEFAULT 0,
    bounced    bigint NOT NULL DEFAULT 0,
    read       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, day, channel)
);

-- Metrics follow the log through statement-level triggers with transition tables: a bulk insert of
-- 1000 rows is one upsert per (site, day, channel), and the upsert's row lock makes concurrent writers
-- add up instead of overwriting each other. The day is the message's creation day in UTC.
CREATE FUNCTION apply_metric_deltas(deltas jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO site_metrics_daily AS m
        (site_id, day, channel, total, pending, processing, sent, failed, delivered, bounced, read)
    SELECT d.site_id, d.day, d.channel, d.total, d.pending, d.processing, d.sent, d.failed,
           d.delivered, d.bounced, d.read
    FROM jsonb_to_recordset(deltas) AS d(
        site_id uuid, day date, channel channel, total bigint, pending bigint, processing bigint,
        sent bigint, failed bigint, delivered bigint, bounced bigint, read bigint)
    ORDER BY d.site_id, d.day, d.channel
    ON CONFLICT (site_id, day, channel) DO UPDATE SET
        total      = m.total + EXCLUDED.total,
        pending    = m.pending + EXCLUDED.pending,
        processing = m.processing + EXCLUDED.processing,
        sent       = m.sent + EXCLUDED.sent,
        failed     = m.failed + EXCLUDED.failed,
        delivered  = m.delivered + EXCLUDED.delivered,
        bounced    = m.bounced + EXCLUDED.bounced,
        read       = m.read + EXCLUDED.read
$$;

CREATE FUNCTION message_logs_metrics_on_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
BEGIN
    SELECT jsonb_agg(row_to_json(x)) INTO deltas FROM (
        SELECT site_id, (created_at AT TIME ZONE 'UTC')::date AS day, channel,
               count(*) AS total,
               count(*) FILTER (WHERE status = 'PENDING') AS pending,
               count(*) FILTER (WHERE status = 'PROCESSING') AS processing,
               count(*) FILTER (WHERE status = 'SENT') AS sent,
               count(*) FILTER (WHERE status = 'FAILED') AS failed,
               count(*) FILTER (WHERE status = 'DELIVERED') AS delivered,
               count(*) FILTER (WHERE status = 'BOUNCED') AS bounced,
               count(*) FILTER (WHERE status = 'READ') AS read
        FROM new_rows GROUP BY 1, 2, 3
    ) x;
    IF deltas IS NOT NULL THEN
        PERFORM apply_metric_deltas(deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION message_logs_metrics_on_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
BEGIN
    -- Only rows whose status changed move counts: one minus on the old status, one plus on the new.
    SELECT jsonb_agg(row_to_json(x)) INTO deltas FROM (
        SELECT n.site_id, (n.created_at AT TIME ZONE 'UTC')::date AS day, n.channel,
               0 AS total,
               sum((n.status = 'PENDING')::int - (o.status = 'PENDING')::int) AS pending,
               sum((n.status = 'PROCESSING')::int - (o.status = 'PROCESSING')::int) AS processing,
               sum((n.status = 'SENT')::int - (o.status = 'SENT')::int) AS sent,
               sum((n.status = 'FAILED')::int - (o.status = 'FAILED')::int) AS failed,
               sum((n.status = 'DELIVERED')::int - (o.status = 'DELIVERED')::int) AS delivered,
               sum((n.status = 'BOUNCED')::int - (o.status = 'BOUNCED')::int) AS bounced,
               sum((n.status = 'READ')::int - (o.status = 'READ')::int) AS read
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE n.status IS DISTINCT FROM o.status
        GROUP BY 1, 2, 3
    ) x;
    IF deltas IS NOT NULL THEN
        PERFORM apply_metric_deltas(deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION message_logs_metrics_on_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    deltas jsonb;
BEGIN
    SELECT jsonb_agg(row_to_json(x)) INTO deltas FROM (
        SELECT site_id, (created_at AT TIME ZONE 'UTC')::date AS day, channel,
               -count(*) AS total,
               -count(*) FILTER (WHERE status = 'PENDING') AS pending,
               -count(*) FILTER (WHERE status = 'PROCESSING') AS processing,
               -count(*) FILTER (WHERE status = 'SENT') AS sent,
               -count(*) FILTER (WHERE status = 'FAILED') AS failed,
               -count(*) FILTER (WHERE status = 'DELIVERED') AS delivered,
               -count(*) FILTER (WHERE status = 'BOUNCED') AS bounced,
               -count(*) FILTER (WHERE status = 'READ') AS read
        FROM old_rows GROUP BY 1, 2, 3
    ) x;
    IF deltas IS NOT NULL THEN
        PERFORM apply_metric_deltas(deltas);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER message_logs_metrics_insert AFTER INSERT ON message_logs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_logs_metrics_on_insert();
CREATE TRIGGER message_logs_metrics_update AFTER UPDATE ON message_logs
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_logs_metrics_on_update();
CREATE TRIGGER message_logs_metrics_delete AFTER DELETE ON message_logs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION message_logs_metrics_on_delete();
