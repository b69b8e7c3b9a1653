-- name: claim_messages
-- Take messages for delivery: PENDING ones, or ones whose holder's lease ran out. The first attempt starts
-- here (attempts + 1), so a claim costs no extra round trip, and concurrent claims share one statement.
-- Returns the state before the claim, so the caller knows whether it took over from a worker that may have
-- been inside a provider call. Rows are locked in id order: two workers never deadlock on a shared batch.
UPDATE message_logs m
SET status = 'PROCESSING', claimed_by = %(worker)s, attempts = m.attempts + 1,
    lease_until = now() + make_interval(secs => %(lease_s)s)
FROM (SELECT id, status AS old_status, attempts AS old_attempts
      FROM message_logs WHERE id = ANY(%(ids)s::uuid[]) ORDER BY id FOR UPDATE) o
WHERE m.id = o.id
  AND (m.status = 'PENDING' OR (m.status = 'PROCESSING' AND m.lease_until < now()))
RETURNING m.id, m.site_id, m.channel::text, m.recipient, m.subject, m.body, m.html, m.metadata, m.sender,
          m.attachment_count, m.media, m.attempts,
          o.old_status::text AS old_status, o.old_attempts;

-- name: message_state
SELECT status::text, lease_until, lease_until > now() AS leased, claimed_by
FROM message_logs WHERE id = %(id)s;

-- name: start_attempt
UPDATE message_logs
SET attempts = attempts + 1, lease_until = now() + make_interval(secs => %(lease_s)s)
WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'PROCESSING'
RETURNING attempts;

-- name: renew_lease
UPDATE message_logs SET lease_until = now() + make_interval(secs => %(lease_s)s)
WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'PROCESSING'
RETURNING id;

-- name: record_attempt_error
UPDATE message_logs
SET last_error = %(error)s, attempt_errors = attempt_errors || %(entry)s::jsonb
WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'PROCESSING';

-- name: mark_sent_many
-- Completions are written in small batches: one statement for every message finished in a few ms.
UPDATE message_logs m
SET status = 'SENT', provider_message_id = d.provider_message_id, sent_at = now(),
    claimed_by = NULL, lease_until = NULL, failure_code = NULL
FROM unnest(%(ids)s::uuid[], %(provider_ids)s::text[]) AS d(id, provider_message_id)
WHERE m.id = d.id AND m.claimed_by = %(worker)s AND m.status = 'PROCESSING'
RETURNING m.id;

-- name: mark_failed
UPDATE message_logs
SET status = 'FAILED', failure_code = %(code)s, last_error = %(error)s,
    attempt_errors = attempt_errors || %(entry)s::jsonb, claimed_by = NULL, lease_until = NULL
WHERE id = %(id)s AND claimed_by = %(worker)s AND status = 'PROCESSING'
RETURNING id;

-- name: mark_unknown_failed
-- A record whose row is PENDING/PROCESSING but which cannot be delivered at all (e.g. unreadable).
UPDATE message_logs
SET status = 'FAILED', failure_code = %(code)s, last_error = %(error)s, claimed_by = NULL, lease_until = NULL
WHERE id = %(id)s AND status IN ('PENDING', 'PROCESSING')
RETURNING id;

-- name: release_claims
-- Shutdown: messages not inside a provider call go back to PENDING for the next owner, at once.
UPDATE message_logs
SET status = 'PENDING', claimed_by = NULL, lease_until = NULL
WHERE id = ANY(%(ids)s::uuid[]) AND claimed_by = %(worker)s AND status = 'PROCESSING';

-- name: replay_failed
-- Dead-lettered messages go back to PENDING with their id and history; each gets a "replayed" entry.
UPDATE message_logs
SET status = 'PENDING', failure_code = NULL,
    attempt_errors = attempt_errors || jsonb_build_array(jsonb_build_object('event', 'replayed', 'at', now()))
WHERE status = 'FAILED'
  AND (%(id)s::uuid IS NULL OR id = %(id)s::uuid)
  AND (%(site_id)s::uuid IS NULL OR site_id = %(site_id)s::uuid)
  AND (%(since)s::timestamptz IS NULL OR updated_at >= %(since)s::timestamptz)
  AND (%(channel)s::channel IS NULL OR channel = %(channel)s::channel)
RETURNING id, site_id, channel::text, recipient, subject, body, html, metadata, sender, created_at;
