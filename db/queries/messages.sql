-- name: insert_messages
-- One statement for many rows (a bulk request, or concurrent /send requests gathered in one loop turn),
-- passed as one JSON array: a single parameter is far cheaper to send than ten arrays. Each element is the
-- message's Kafka record (its keys name the columns; the others are ignored), plus the row's own fields
-- when it has them (the idempotency pair; send_at, and status SCHEDULED): each message is encoded once. Rows
-- whose idempotency key was already used are skipped (the caller finds them by the ids missing from the answer);
-- rows to a suppressed recipient come back marked suppressed.
-- A message's attachments (ids and names: the files are stored already) become its message_attachments rows in
-- the same statement.
WITH rows AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS t(
        message_id uuid, site_id uuid, channel channel, recipient text, subject text, body text, html text,
        metadata jsonb, idempotency_key text, idempotency_fingerprint text, send_at timestamptz,
        status message_status, sender jsonb, attachments jsonb, media jsonb, transactional boolean)
), suppressed AS (  -- a recipient on the site's suppression list for the channel: refused, not stored
    SELECT r.message_id FROM rows r
    JOIN suppressions s ON s.site_id = r.site_id AND s.channel = r.channel AND s.recipient = r.recipient
    WHERE r.transactional IS NOT TRUE  -- a site the admin allows sends its transactional messages anyway
), inserted AS (
    INSERT INTO message_logs
        (id, site_id, channel, recipient, subject, body, html, metadata, idempotency_key,
         idempotency_fingerprint, send_at, status, sender, attachment_count, media)
    SELECT message_id, site_id, channel, recipient, subject, body, html, coalesce(metadata, '{}'), idempotency_key,
           idempotency_fingerprint, send_at, coalesce(status, 'PENDING'), sender,
           coalesce(jsonb_array_length(attachments), 0), media
    FROM rows WHERE message_id NOT IN (SELECT message_id FROM suppressed)
    ON CONFLICT (site_id, idempotency_key) DO NOTHING
    RETURNING id
), linked AS (
    INSERT INTO message_attachments (message_id, position, attachment_id, filename, content_type, content_id)
    SELECT r.message_id, f.position, (f.file->>'id')::uuid, f.file->>'filename', f.file->>'content_type',
           f.file->>'content_id'
    FROM rows r JOIN inserted i ON i.id = r.message_id,
         jsonb_array_elements(r.attachments) WITH ORDINALITY AS f(file, position)
    WHERE r.attachments IS NOT NULL
)
SELECT id, false AS suppressed FROM inserted
UNION ALL
SELECT message_id, true FROM suppressed;

-- name: messages_by_idempotency_keys
SELECT id, idempotency_key, idempotency_fingerprint, status::text, failure_code
FROM message_logs WHERE site_id = %(site_id)s AND idempotency_key = ANY(%(idempotency_keys)s::text[]);

-- name: mark_enqueue_failed
-- Each message with the error Kafka gave for its own record.
UPDATE message_logs AS m
SET status = 'FAILED', failure_code = 'enqueue_failed', last_error = f.error
FROM unnest(%(ids)s::uuid[], %(errors)s::text[]) AS f(id, error)
WHERE m.id = f.id AND m.status = 'PENDING';

-- name: reopen_enqueue_failed
-- A client retrying with the same Idempotency-Key after a 503 gets its message enqueued again.
UPDATE message_logs
SET status = 'PENDING', failure_code = NULL, last_error = NULL
WHERE id = %(id)s AND status = 'FAILED' AND failure_code = 'enqueue_failed'
RETURNING id;

-- name: message_payloads
SELECT id, site_id, channel::text, recipient, subject, body, html, metadata, sender, created_at
FROM message_logs WHERE id = ANY(%(ids)s::uuid[]);

-- name: message_for_site
SELECT id, channel::text, recipient, subject, status::text, attempts, last_error, failure_code,
       provider_message_id, idempotency_key, metadata, created_at, updated_at, sent_at, send_at, sender
FROM message_logs WHERE id = %(id)s AND site_id = %(site_id)s;

-- name: list_messages_for_site
-- Keyset pagination, newest first: (created_at, id) strictly below the cursor.
SELECT id, channel::text, recipient, subject, status::text, attempts, last_error, failure_code,
       provider_message_id, idempotency_key, metadata, created_at, updated_at, sent_at, send_at, sender
FROM message_logs
WHERE site_id = %(site_id)s
  AND (%(status)s::message_status IS NULL OR status = %(status)s::message_status)
  AND (%(channel)s::channel IS NULL OR channel = %(channel)s::channel)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)
  AND (%(cursor_created_at)s::timestamptz IS NULL
       OR (created_at, id) < (%(cursor_created_at)s::timestamptz, %(cursor_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: claim_stuck_pending
-- Rows PENDING for longer than the threshold: published again (a worker's claim makes a duplicate
-- record harmless) and touched so the next sweep leaves them alone for another threshold.
UPDATE message_logs SET updated_at = now()
WHERE id IN (
    SELECT id FROM message_logs
    WHERE status = 'PENDING' AND updated_at < now() - make_interval(secs => %(older_than_s)s)
    ORDER BY updated_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, site_id, channel::text, recipient, subject, body, html, metadata, sender, created_at;

-- name: take_due_scheduled
-- Scheduled messages whose time has come become PENDING, to be published by the caller. SKIP LOCKED: several
-- API replicas run this at once, and each due row is taken by one of them. A replica that dies before its
-- publish leaves the rows PENDING, and the stuck-PENDING sweep publishes them.
UPDATE message_logs SET status = 'PENDING'
WHERE id IN (
    SELECT id FROM message_logs
    WHERE status = 'SCHEDULED' AND send_at <= now()
    ORDER BY send_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING id, site_id, channel::text, recipient, subject, body, html, metadata, sender, created_at, send_at;

-- name: cancel_message
-- Only a message not yet handed to a worker: SCHEDULED, or PENDING (a worker's claim takes a PENDING row
-- under its lock and re-checks the status, so a cancelled one is never claimed).
UPDATE message_logs SET status = 'CANCELLED', claimed_by = NULL, lease_until = NULL
WHERE id = %(id)s AND site_id = %(site_id)s AND status IN ('SCHEDULED', 'PENDING')
RETURNING id, channel::text, recipient, subject, status::text, attempts, last_error, failure_code,
          provider_message_id, idempotency_key, metadata, created_at, updated_at, sent_at, send_at, sender;

-- name: message_history_for_site
-- What the timeline is made of, besides the provider's events: only the site's own message.
SELECT id, created_at, send_at, sent_at, status::text, provider_message_id, attempt_errors
FROM message_logs WHERE id = %(id)s AND site_id = %(site_id)s;
