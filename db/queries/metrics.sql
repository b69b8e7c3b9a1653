-- name: daily_metrics_for_site
SELECT day, channel::text, total, scheduled, pending, processing, sent, failed, delivered, bounced, read, cancelled
FROM site_metrics_daily
WHERE site_id = %(site_id)s AND day BETWEEN %(from)s AND %(to)s
  AND (%(channel)s::channel IS NULL OR channel = %(channel)s::channel)
ORDER BY day, channel;
