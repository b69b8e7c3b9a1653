-- 0012: what providers tell after SENT (SendGrid's Event Webhook): each event stored once (provider, event_id),
-- then applied off the request path (lib.services.provider_events): the message's status follows the latest
-- status-bearing event by the provider's own timestamp, whatever order they arrive in.
CREATE TABLE provider_events (
    id bigserial PRIMARY KEY,
    provider text NOT NULL,
    event_id text NOT NULL,
    message_id uuid,
    provider_message_id text,
    event text NOT NULL,
    reason text,
    occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    UNIQUE (provider, event_id)
);
CREATE INDEX provider_events_pending ON provider_events (id) WHERE processed_at IS NULL;
CREATE INDEX provider_events_message ON provider_events (message_id, occurred_at);
-- The fallback match of an event without notify's id: the provider's message id.
CREATE INDEX message_logs_provider_message_id ON message_logs (provider_message_id)
    WHERE provider_message_id IS NOT NULL;
