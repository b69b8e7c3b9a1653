-- The current schema, as the migrations in db/migrations build it (python -m lib.cli schema > db/schema.sql).
-- Read it to see the tables; change the schema with a new migration, then regenerate this file:
-- tests/test_database.py fails while the two differ.
CREATE TYPE public.channel AS ENUM (
    'email',
    'whatsapp'
);
CREATE TYPE public.message_status AS ENUM (
    'SCHEDULED',
    'PENDING',
    'PROCESSING',
    'SENT',
    'FAILED',
    'DELIVERED',
    'BOUNCED',
    'READ',
    'CANCELLED'
);
CREATE TYPE public.metric_delta AS (
	site_id uuid,
	day date,
	channel public.channel,
	total bigint,
	pending bigint,
	processing bigint,
	sent bigint,
	failed bigint,
	delivered bigint,
	bounced bigint,
	read bigint,
	scheduled bigint,
	cancelled bigint
);
CREATE TYPE public.site_status AS ENUM (
    'active',
    'suspended',
    'deactivated'
);
CREATE FUNCTION public.add_metric_deltas(deltas public.metric_delta[]) RETURNS void
    LANGUAGE plpgsql
    AS $$
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
CREATE FUNCTION public.message_logs_metrics_on_insert_or_delete() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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
CREATE FUNCTION public.message_logs_metrics_on_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
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
CREATE FUNCTION public.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TABLE public.attachments (
    id uuid NOT NULL,
    site_id uuid NOT NULL,
    filename text NOT NULL,
    content_type text NOT NULL,
    size integer NOT NULL,
    sha256 text NOT NULL,
    content bytea NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.frappe_sites (
    id uuid NOT NULL,
    site_name text NOT NULL,
    site_url text,
    status public.site_status DEFAULT 'active'::public.site_status NOT NULL,
    key_lookup_id text NOT NULL,
    key_hash text NOT NULL,
    key_created_at timestamp with time zone DEFAULT now() NOT NULL,
    enabled_channels public.channel[] DEFAULT '{email,whatsapp}'::public.channel[] NOT NULL,
    rate_limit_per_minute integer,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    managed_by text,
    senders jsonb DEFAULT '{}'::jsonb NOT NULL,
    suppression_override boolean DEFAULT false NOT NULL,
    CONSTRAINT frappe_sites_managed_by_check CHECK (((managed_by IS NULL) OR ((length(managed_by) >= 1) AND (length(managed_by) <= 512)))),
    CONSTRAINT frappe_sites_rate_limit_per_minute_check CHECK (((rate_limit_per_minute IS NULL) OR (rate_limit_per_minute > 0)))
);
CREATE TABLE public.message_attachments (
    message_id uuid NOT NULL,
    "position" smallint NOT NULL,
    attachment_id uuid,
    filename text NOT NULL,
    content_type text NOT NULL,
    content_id text
);
CREATE TABLE public.message_logs (
    id uuid NOT NULL,
    site_id uuid NOT NULL,
    channel public.channel NOT NULL,
    recipient text NOT NULL,
    subject text,
    body text NOT NULL,
    html text,
    metadata jsonb DEFAULT '{}'::jsonb NOT NULL,
    status public.message_status DEFAULT 'PENDING'::public.message_status NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    last_error text,
    failure_code text,
    provider_message_id text,
    idempotency_key text,
    idempotency_fingerprint text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    sent_at timestamp with time zone,
    claimed_by text,
    lease_until timestamp with time zone,
    attempt_errors jsonb DEFAULT '[]'::jsonb NOT NULL,
    send_at timestamp with time zone,
    sender jsonb,
    attachment_count smallint DEFAULT 0 NOT NULL,
    media jsonb
);
CREATE TABLE public.provider_accounts (
    site_id uuid NOT NULL,
    channel public.channel NOT NULL,
    sealed_key text NOT NULL,
    key_fingerprint text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.provider_events (
    id bigint NOT NULL,
    provider text NOT NULL,
    event_id text NOT NULL,
    message_id uuid,
    provider_message_id text,
    event text NOT NULL,
    reason text,
    occurred_at timestamp with time zone NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    processed_at timestamp with time zone
);
CREATE SEQUENCE public.provider_events_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE public.provider_events_id_seq OWNED BY public.provider_events.id;
CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.site_metrics_daily (
    site_id uuid NOT NULL,
    day date NOT NULL,
    channel public.channel NOT NULL,
    total bigint DEFAULT 0 NOT NULL,
    pending bigint DEFAULT 0 NOT NULL,
    processing bigint DEFAULT 0 NOT NULL,
    sent bigint DEFAULT 0 NOT NULL,
    failed bigint DEFAULT 0 NOT NULL,
    delivered bigint DEFAULT 0 NOT NULL,
    bounced bigint DEFAULT 0 NOT NULL,
    read bigint DEFAULT 0 NOT NULL,
    scheduled bigint DEFAULT 0 NOT NULL,
    cancelled bigint DEFAULT 0 NOT NULL
);
CREATE TABLE public.suppressions (
    site_id uuid NOT NULL,
    channel public.channel NOT NULL,
    recipient text NOT NULL,
    reason text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);
CREATE TABLE public.whatsapp_sessions (
    site_id uuid NOT NULL,
    session_id bigint NOT NULL,
    phone_number text NOT NULL,
    status text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);
ALTER TABLE ONLY public.provider_events ALTER COLUMN id SET DEFAULT nextval('public.provider_events_id_seq'::regclass);
ALTER TABLE ONLY public.attachments
    ADD CONSTRAINT attachments_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.frappe_sites
    ADD CONSTRAINT frappe_sites_key_lookup_id_key UNIQUE (key_lookup_id);
ALTER TABLE ONLY public.frappe_sites
    ADD CONSTRAINT frappe_sites_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.frappe_sites
    ADD CONSTRAINT frappe_sites_site_name_key UNIQUE (site_name);
ALTER TABLE ONLY public.message_attachments
    ADD CONSTRAINT message_attachments_pkey PRIMARY KEY (message_id, "position");
ALTER TABLE ONLY public.message_logs
    ADD CONSTRAINT message_logs_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.message_logs
    ADD CONSTRAINT message_logs_site_idempotency_key UNIQUE (site_id, idempotency_key);
ALTER TABLE ONLY public.provider_accounts
    ADD CONSTRAINT provider_accounts_pkey PRIMARY KEY (site_id, channel);
ALTER TABLE ONLY public.provider_events
    ADD CONSTRAINT provider_events_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.provider_events
    ADD CONSTRAINT provider_events_provider_event_id_key UNIQUE (provider, event_id);
ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);
ALTER TABLE ONLY public.site_metrics_daily
    ADD CONSTRAINT site_metrics_daily_pkey PRIMARY KEY (site_id, day, channel);
ALTER TABLE ONLY public.suppressions
    ADD CONSTRAINT suppressions_pkey PRIMARY KEY (site_id, channel, recipient);
ALTER TABLE ONLY public.whatsapp_sessions
    ADD CONSTRAINT whatsapp_sessions_pkey PRIMARY KEY (site_id);
ALTER TABLE ONLY public.whatsapp_sessions
    ADD CONSTRAINT whatsapp_sessions_session_id_key UNIQUE (session_id);
CREATE INDEX attachments_created ON public.attachments USING btree (created_at);
CREATE INDEX message_attachments_attachment ON public.message_attachments USING btree (attachment_id);
CREATE INDEX message_logs_failed ON public.message_logs USING btree (site_id, updated_at) WHERE (status = 'FAILED'::public.message_status);
CREATE INDEX message_logs_media_attachment ON public.message_logs USING btree ((((media ->> 'attachment_id'::text))::uuid)) WHERE (media ? 'attachment_id'::text);
CREATE INDEX message_logs_pending_updated ON public.message_logs USING btree (updated_at) WHERE (status = 'PENDING'::public.message_status);
CREATE INDEX message_logs_provider_message_id ON public.message_logs USING btree (provider_message_id) WHERE (provider_message_id IS NOT NULL);
CREATE INDEX message_logs_scheduled_due ON public.message_logs USING btree (send_at) WHERE (status = 'SCHEDULED'::public.message_status);
CREATE INDEX message_logs_site_created ON public.message_logs USING btree (site_id, created_at DESC, id DESC);
CREATE INDEX message_logs_site_status_created ON public.message_logs USING btree (site_id, status, created_at DESC, id DESC);
CREATE INDEX provider_events_message ON public.provider_events USING btree (message_id, occurred_at);
CREATE INDEX provider_events_pending ON public.provider_events USING btree (id) WHERE (processed_at IS NULL);
CREATE TRIGGER frappe_sites_updated_at BEFORE UPDATE ON public.frappe_sites FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
CREATE TRIGGER message_logs_metrics_delete AFTER DELETE ON public.message_logs REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION public.message_logs_metrics_on_insert_or_delete();
CREATE TRIGGER message_logs_metrics_insert AFTER INSERT ON public.message_logs REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION public.message_logs_metrics_on_insert_or_delete();
CREATE TRIGGER message_logs_metrics_update AFTER UPDATE ON public.message_logs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.message_logs_metrics_on_update();
CREATE TRIGGER message_logs_updated_at BEFORE UPDATE ON public.message_logs FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
CREATE TRIGGER provider_accounts_updated_at BEFORE UPDATE ON public.provider_accounts FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
CREATE TRIGGER whatsapp_sessions_updated_at BEFORE UPDATE ON public.whatsapp_sessions FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
ALTER TABLE ONLY public.attachments
    ADD CONSTRAINT attachments_site_id_fkey FOREIGN KEY (site_id) REFERENCES public.frappe_sites(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.message_attachments
    ADD CONSTRAINT message_attachments_attachment_id_fkey FOREIGN KEY (attachment_id) REFERENCES public.attachments(id) ON DELETE SET NULL;
ALTER TABLE ONLY public.message_attachments
    ADD CONSTRAINT message_attachments_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.message_logs(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.message_logs
    ADD CONSTRAINT message_logs_site_id_fkey FOREIGN KEY (site_id) REFERENCES public.frappe_sites(id);
ALTER TABLE ONLY public.provider_accounts
    ADD CONSTRAINT provider_accounts_site_id_fkey FOREIGN KEY (site_id) REFERENCES public.frappe_sites(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.site_metrics_daily
    ADD CONSTRAINT site_metrics_daily_site_id_fkey FOREIGN KEY (site_id) REFERENCES public.frappe_sites(id);
ALTER TABLE ONLY public.suppressions
    ADD CONSTRAINT suppressions_site_id_fkey FOREIGN KEY (site_id) REFERENCES public.frappe_sites(id) ON DELETE CASCADE;
ALTER TABLE ONLY public.whatsapp_sessions
    ADD CONSTRAINT whatsapp_sessions_site_id_fkey FOREIGN KEY (site_id) REFERENCES public.frappe_sites(id) ON DELETE CASCADE;
