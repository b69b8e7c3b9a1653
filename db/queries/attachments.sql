-- name: insert_attachments
INSERT INTO attachments (id, site_id, filename, content_type, size, sha256, content)
SELECT id, %(site_id)s, filename, content_type, size, sha256, content
FROM unnest(%(ids)s::uuid[], %(filenames)s::text[], %(content_types)s::text[], %(sizes)s::int[],
            %(sha256s)s::text[], %(contents)s::bytea[]) AS t(id, filename, content_type, size, sha256, content)
RETURNING id, filename, content_type, size, sha256, created_at;

-- name: owned_attachments
-- Uploaded files a send names: only the site's own.
SELECT id, filename, content_type, size FROM attachments
WHERE site_id = %(site_id)s AND id = ANY(%(ids)s::uuid[]);

-- name: message_attachment_files
-- The worker's read, in the message's order; content NULL once purged.
SELECT ma.filename, ma.content_type, ma.content_id, a.content
FROM message_attachments ma LEFT JOIN attachments a ON a.id = ma.attachment_id
WHERE ma.message_id = %(id)s ORDER BY ma.position;

-- name: purge_attachments
-- Files older than the retention that no message still needs: every message using one is final, and has been
-- for the retention period. Uploads nothing used go after the same period.
DELETE FROM attachments a
WHERE a.created_at < now() - make_interval(days => %(days)s)
  AND NOT EXISTS (
      SELECT 1 FROM message_attachments ma JOIN message_logs m ON m.id = ma.message_id
      WHERE ma.attachment_id = a.id
        AND (m.status NOT IN ('SENT', 'FAILED', 'DELIVERED', 'BOUNCED', 'READ', 'CANCELLED')
             OR m.updated_at > now() - make_interval(days => %(days)s)))
  AND NOT EXISTS (  -- a WhatsApp message's uploaded media
      SELECT 1 FROM message_logs m
      WHERE m.media ? 'attachment_id' AND (m.media->>'attachment_id')::uuid = a.id
        AND (m.status NOT IN ('SENT', 'FAILED', 'DELIVERED', 'BOUNCED', 'READ', 'CANCELLED')
             OR m.updated_at > now() - make_interval(days => %(days)s)))
RETURNING a.id;

-- name: attachment_content
-- A signed media link's file (the signature names it; no site is asked).
SELECT filename, content_type, content FROM attachments WHERE id = %(id)s;
