-- 0013: suppression lists. A hard bounce, a spam report or an unsubscribe puts the address on its site's list
-- for that channel (lib.services.provider_events); a later send to it is refused at accept
-- (db/queries/messages.sql: insert_messages). Sites list and remove their own entries.
CREATE TABLE suppressions (
    site_id uuid NOT NULL REFERENCES frappe_sites(id) ON DELETE CASCADE,
    channel channel NOT NULL,
    recipient text NOT NULL,
    reason text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, channel, recipient)
);
