-- name: insert_site
INSERT INTO frappe_sites (id, site_name, site_url, key_lookup_id, key_hash, managed_by)
VALUES (%(id)s, %(site_name)s, %(site_url)s, %(key_lookup_id)s, %(key_hash)s, %(managed_by)s)
ON CONFLICT (site_name) DO NOTHING
RETURNING id, site_name, site_url, status::text, enabled_channels::text[], rate_limit_per_minute,
          key_created_at, created_at, updated_at, managed_by, suppression_override;

-- name: site_credentials_by_lookup_id
SELECT id, site_name, status::text, key_hash, enabled_channels::text[], rate_limit_per_minute, senders,
       suppression_override
FROM frappe_sites WHERE key_lookup_id = %(key_lookup_id)s;

-- name: site_by_id
SELECT id, site_name, site_url, status::text, enabled_channels::text[], rate_limit_per_minute,
       key_created_at, created_at, updated_at, managed_by, suppression_override
FROM frappe_sites WHERE id = %(id)s;

-- name: site_by_name
SELECT id, site_name, site_url, status::text, enabled_channels::text[], rate_limit_per_minute,
       key_created_at, created_at, updated_at, managed_by, suppression_override
FROM frappe_sites WHERE site_name = %(site_name)s;

-- name: list_sites
SELECT id, site_name, site_url, status::text, enabled_channels::text[], rate_limit_per_minute,
       key_created_at, created_at, updated_at, managed_by, suppression_override
FROM frappe_sites ORDER BY site_name;

-- name: replace_site_key
UPDATE frappe_sites
SET key_lookup_id = %(key_lookup_id)s, key_hash = %(key_hash)s, key_created_at = now()
WHERE id = %(id)s
RETURNING key_created_at;

-- name: update_site
-- A site managed by someone (managed_by) can be claimed by another only once it is deactivated or released
-- (managed_by set to NULL): no row back while the site exists means "managed elsewhere".
UPDATE frappe_sites SET
    status = coalesce(%(status)s::site_status, status),
    site_url = coalesce(%(site_url)s, site_url),
    enabled_channels = coalesce(%(enabled_channels)s::channel[], enabled_channels),
    rate_limit_per_minute = CASE WHEN %(set_rate_limit)s THEN %(rate_limit_per_minute)s
                                 ELSE rate_limit_per_minute END,
    managed_by = CASE WHEN %(set_managed_by)s THEN %(managed_by)s ELSE managed_by END,
    suppression_override = coalesce(%(suppression_override)s, suppression_override)
WHERE site_name = %(site_name)s
  AND (NOT %(set_managed_by)s OR %(managed_by)s::text IS NULL OR managed_by IS NULL
       OR managed_by = %(managed_by)s OR status = 'deactivated')
RETURNING id, site_name, site_url, status::text, enabled_channels::text[], rate_limit_per_minute,
          key_created_at, created_at, updated_at, managed_by, suppression_override;

-- name: key_lookup_ids_since
-- The auth filter's incremental refresh. A key's key_created_at is its transaction's start, which can be
-- earlier than a refresh that ran before it committed: the caller re-reads a margin behind its watermark.
SELECT key_lookup_id, key_created_at FROM frappe_sites WHERE key_created_at >= %(since)s;

-- name: site_senders_by_name
SELECT id, senders FROM frappe_sites WHERE site_name = %(site_name)s;

-- name: site_senders_by_id
SELECT id, senders FROM frappe_sites WHERE id = %(id)s;

-- name: set_site_senders
UPDATE frappe_sites SET senders = %(senders)s WHERE site_name = %(site_name)s
RETURNING id, senders;
