-- name: suppressions_of_site
SELECT channel::text, recipient, reason, created_at FROM suppressions
WHERE site_id = %(site_id)s AND (%(channel)s::channel IS NULL OR channel = %(channel)s::channel)
ORDER BY created_at DESC, recipient
LIMIT %(limit)s;

-- name: delete_suppression
DELETE FROM suppressions WHERE site_id = %(site_id)s AND channel = %(channel)s::channel AND recipient = %(recipient)s
RETURNING recipient;

-- name: all_suppressions
SELECT f.site_name, s.channel::text, s.recipient, s.reason, s.created_at
FROM suppressions s JOIN frappe_sites f ON f.id = s.site_id
WHERE (%(site_name)s::text IS NULL OR f.site_name = %(site_name)s)
  AND (%(channel)s::channel IS NULL OR s.channel = %(channel)s::channel)
ORDER BY s.created_at DESC
LIMIT %(limit)s;
