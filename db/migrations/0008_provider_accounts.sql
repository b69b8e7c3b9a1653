-- 0008: a site may bring its own provider account per channel (its own SendGrid or WASender API key). The key
-- is stored sealed (lib/adapters/sealing.py: a Fernet token under NOTIFY_KEY_ENCRYPTION_KEYS), never in clear;
-- key_fingerprint tells keys apart without revealing them. Without a row, the channel's global account sends.
CREATE TABLE provider_accounts (
    site_id uuid NOT NULL REFERENCES frappe_sites(id) ON DELETE CASCADE,
    channel channel NOT NULL,
    sealed_key text NOT NULL,
    key_fingerprint text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, channel)
);
CREATE TRIGGER provider_accounts_updated_at BEFORE UPDATE ON provider_accounts
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
