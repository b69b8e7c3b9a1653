-- 0010: a WhatsApp message's media ({kind, url | attachment_id, filename}: lib.domain.attachments.MediaSpec).
-- An uploaded file it names is kept while the message needs it (purge_attachments reads this index).
ALTER TABLE message_logs ADD COLUMN media jsonb;
CREATE INDEX message_logs_media_attachment ON message_logs (((media->>'attachment_id')::uuid))
    WHERE media ? 'attachment_id';
