-- name: set_provider_account
INSERT INTO provider_accounts AS a (site_id, channel, sealed_key, key_fingerprint)
SELECT id, %(channel)s::channel, %(sealed_key)s, %(key_fingerprint)s FROM frappe_sites WHERE site_name = %(site_name)s
ON CONFLICT (site_id, channel) DO UPDATE SET sealed_key = EXCLUDED.sealed_key,
                                            key_fingerprint = EXCLUDED.key_fingerprint
RETURNING site_id, channel::text, key_fingerprint, created_at, updated_at;

-- name: delete_provider_account
DELETE FROM provider_accounts a USING frappe_sites s
WHERE a.site_id = s.id AND s.site_name = %(site_name)s AND a.channel = %(channel)s::channel
RETURNING a.site_id;

-- name: provider_accounts_of_site
-- What a site's accounts are, never their keys.
SELECT channel::text, key_fingerprint, created_at, updated_at
FROM provider_accounts WHERE site_id = %(site_id)s ORDER BY channel;

-- name: provider_account_key
-- The worker's read: the sealed key of a site's account on its channel, if it has one.
SELECT sealed_key, key_fingerprint FROM provider_accounts
WHERE site_id = %(site_id)s AND channel = %(channel)s::channel;

-- name: sealed_provider_keys
SELECT site_id, channel::text, sealed_key FROM provider_accounts ORDER BY site_id, channel;

-- name: reseal_provider_key
UPDATE provider_accounts SET sealed_key = %(sealed_key)s
WHERE site_id = %(site_id)s AND channel = %(channel)s::channel AND sealed_key = %(old_sealed_key)s;

-- name: whatsapp_session_of_site
SELECT s.site_id, s.session_id, s.phone_number, s.status, s.created_at, s.updated_at
FROM whatsapp_sessions s JOIN frappe_sites f ON f.id = s.site_id WHERE f.site_name = %(site_name)s;

-- name: insert_whatsapp_session
INSERT INTO whatsapp_sessions (site_id, session_id, phone_number, status)
SELECT id, %(session_id)s, %(phone_number)s, %(status)s FROM frappe_sites WHERE site_name = %(site_name)s
ON CONFLICT (site_id) DO NOTHING
RETURNING site_id, session_id, phone_number, status, created_at, updated_at;

-- name: set_whatsapp_session_status
UPDATE whatsapp_sessions SET status = %(status)s WHERE session_id = %(session_id)s
RETURNING site_id, session_id, phone_number, status, created_at, updated_at;

-- name: delete_whatsapp_session
DELETE FROM whatsapp_sessions WHERE session_id = %(session_id)s;
