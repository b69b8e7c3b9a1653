-- name: insert_provider_events
-- Each event once: the same event posted again changes nothing.
INSERT INTO provider_events (provider, event_id, message_id, provider_message_id, event, reason, occurred_at, payload)
SELECT provider, event_id, message_id, provider_message_id, event, reason, occurred_at, payload
FROM jsonb_to_recordset(%(events)s::jsonb) AS t(
    provider text, event_id text, message_id uuid, provider_message_id text, event text, reason text,
    occurred_at timestamptz, payload jsonb)
ON CONFLICT (provider, event_id) DO NOTHING;

-- name: take_pending_provider_events
-- A batch of events not applied yet, with the message each names (by notify's id, else the provider's); each
-- replica takes its own (SKIP LOCKED, within the caller's transaction).
SELECT e.id, coalesce(e.message_id, m2.id) AS message_id
FROM provider_events e
LEFT JOIN message_logs m2 ON e.message_id IS NULL AND m2.provider_message_id = e.provider_message_id
WHERE e.processed_at IS NULL
ORDER BY e.id
LIMIT %(limit)s
FOR UPDATE OF e SKIP LOCKED;

-- name: status_events_of_messages
-- Every status-bearing event of these messages (applied or not): the latest by the provider's clock decides.
SELECT coalesce(e.message_id, m.id) AS message_id, e.id, e.event, e.payload->>'type' AS bounce_type, e.occurred_at,
       e.reason
FROM provider_events e
LEFT JOIN message_logs m ON e.message_id IS NULL AND m.provider_message_id = e.provider_message_id
WHERE coalesce(e.message_id, m.id) = ANY(%(ids)s::uuid[])
  AND e.event IN ('delivered', 'bounce', 'dropped', 'read', 'played', 'failed')
ORDER BY e.id;

-- name: settle_message_status
-- Only a message the provider has (SENT or after): an event that outruns notify's own SENT write waits for it.
UPDATE message_logs
SET status = %(status)s::message_status,
    failure_code = CASE WHEN %(status)s = 'FAILED' THEN 'provider_dropped' ELSE failure_code END,
    last_error = CASE WHEN %(status)s IN ('FAILED', 'BOUNCED') THEN %(reason)s ELSE last_error END
WHERE id = %(id)s AND status IN ('SENT', 'DELIVERED', 'BOUNCED', 'READ', 'FAILED')
  AND (status <> 'FAILED' OR failure_code = 'provider_dropped')
  AND status IS DISTINCT FROM %(status)s::message_status
RETURNING id;

-- name: messages_past_delivery
-- Messages no worker will touch again (an event waits while its message is still on its way).
SELECT id FROM message_logs
WHERE id = ANY(%(ids)s::uuid[]) AND status NOT IN ('SCHEDULED', 'PENDING', 'PROCESSING');

-- name: add_suppressions
-- What suppresses an address for its site and channel: a hard bounce, a spam report, an unsubscribe.
INSERT INTO suppressions (site_id, channel, recipient, reason)
SELECT DISTINCT ON (m.site_id, m.channel, m.recipient) m.site_id, m.channel, m.recipient, e.event
FROM provider_events e
JOIN message_logs m ON m.id = coalesce(e.message_id, (
    SELECT x.id FROM message_logs x WHERE x.provider_message_id = e.provider_message_id LIMIT 1))
WHERE e.id = ANY(%(ids)s::bigint[])
  AND (e.event IN ('spamreport', 'unsubscribe') OR (e.event = 'bounce' AND coalesce(e.payload->>'type', 'bounce') = 'bounce'))
ORDER BY m.site_id, m.channel, m.recipient, e.occurred_at
ON CONFLICT DO NOTHING;

-- name: mark_provider_events_processed
UPDATE provider_events SET processed_at = now() WHERE id = ANY(%(ids)s::bigint[]);

-- name: provider_events_of_message
SELECT provider, event, reason, occurred_at, payload->>'type' AS bounce_type
FROM provider_events WHERE message_id = %(id)s OR (message_id IS NULL AND provider_message_id = %(provider_message_id)s)
ORDER BY occurred_at, id;
