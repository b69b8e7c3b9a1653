-- 0009: email attachments. The bytes live here, never in a Kafka record: attachments holds each file once (a
-- bulk names one upload from a thousand messages), message_attachments links a message to its files in order,
-- with the name and content-id that message gives it. A file is purged once every message using it is final
-- for ATTACHMENT_RETENTION_DAYS (db/queries/attachments.sql: purge_attachments); a link then points at nothing
-- (attachment_id NULL), and a replay of that message fails with attachment_expired rather than send without it.
CREATE TABLE attachments (
    id uuid PRIMARY KEY,
    site_id uuid NOT NULL REFERENCES frappe_sites(id) ON DELETE CASCADE,
    filename text NOT NULL,
    content_type text NOT NULL,
    size integer NOT NULL,
    sha256 text NOT NULL,
    content bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX attachments_created ON attachments (created_at);

CREATE TABLE message_attachments (
    message_id uuid NOT NULL REFERENCES message_logs(id) ON DELETE CASCADE,
    position smallint NOT NULL,
    attachment_id uuid REFERENCES attachments(id) ON DELETE SET NULL,
    filename text NOT NULL,
    content_type text NOT NULL,
    content_id text,
    PRIMARY KEY (message_id, position)
);
CREATE INDEX message_attachments_attachment ON message_attachments (attachment_id);

-- The worker reads the files only of messages that have some.
ALTER TABLE message_logs ADD COLUMN attachment_count smallint NOT NULL DEFAULT 0;
