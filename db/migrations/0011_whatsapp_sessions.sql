-- 0011: a site's own WhatsApp number, a WASender session created for it. The session's API key is the site's
-- provider account on the whatsapp channel (provider_accounts, sealed); this row is what the session is.
CREATE TABLE whatsapp_sessions (
    site_id uuid PRIMARY KEY REFERENCES frappe_sites(id) ON DELETE CASCADE,
    session_id bigint NOT NULL UNIQUE,
    phone_number text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER whatsapp_sessions_updated_at BEFORE UPDATE ON whatsapp_sessions
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
