#!/usr/bin/env bash
# The README walkthrough against the running local stack: register a site, send an email and a WhatsApp
# message, follow them to SENT, and show what the sandbox providers received.
set -euo pipefail
# shellcheck source=scripts/stack.env
source "$(dirname "${BASH_SOURCE[0]}")/stack.env"
API=http://127.0.0.1:${API_PORT:-8080}
SANDBOX=http://127.0.0.1:$SANDBOX_PORT
py() { "$(dirname "${BASH_SOURCE[0]}")/../.venv/bin/python" -c "$@"; }
field() { py "import json,sys; print(json.load(sys.stdin)$1)"; }

site="demo-$(date +%s).example.com"
echo "1. register $site (admin token)"
registered=$(curl -fsS -X POST "$API/api/v1/site/register" -H "Authorization: Bearer $NOTIFY_ADMIN_TOKEN" \
  -H 'Content-Type: application/json' -d "{\"site_name\": \"$site\", \"site_url\": \"https://$site\"}")
key=$(field '["api_key"]' <<<"$registered")
echo "   site_id $(field '["site_id"]' <<<"$registered"), api_key ${key:0:24}... (shown once)"

echo "2. send an email and a WhatsApp message"
email=$(curl -fsS -X POST "$API/api/v1/notifications/send" -H "X-Site-Key: $key" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: demo-invoice-$site" \
  -d '{"channel": "email", "recipient": "customer@example.com", "subject": "Your invoice SINV-0001",
       "body": "Hello, your invoice is ready.", "html": "<p>Hello, your invoice is <b>ready</b>.</p>",
       "metadata": {"doctype": "Sales Invoice", "name": "SINV-0001"}}')
whatsapp=$(curl -fsS -X POST "$API/api/v1/notifications/send" -H "X-Site-Key: $key" -H 'Content-Type: application/json' \
  -d '{"channel": "whatsapp", "recipient": "+14155550123", "body": "Your order SO-0001 has shipped."}')
echo "   email    -> $email"
echo "   whatsapp -> $whatsapp"

echo "3. follow them to SENT"
for id in $(field '["message_id"]' <<<"$email") $(field '["message_id"]' <<<"$whatsapp"); do
  for _ in $(seq 1 100); do
    status=$(curl -fsS "$API/api/v1/notifications/$id" -H "X-Site-Key: $key")
    case $(field '["status"]' <<<"$status") in SENT | FAILED) break ;; esac
    sleep 0.2
  done
  py "import json,sys; m=json.loads(sys.argv[1]); print(f\"   {m['message_id']} {m['channel']:9} {m['status']:7} attempts={m['attempts']} provider_id={m['provider_message_id']}\")" "$status"
done

echo "4. what the sandbox providers received (GET $SANDBOX/_sandbox/messages)"
curl -fsS "$SANDBOX/_sandbox/messages?provider=sendgrid&limit=1" | py "import json,sys
m=json.load(sys.stdin)['items'][-1]; print(f\"   sendgrid: to={m['to']} subject={m['subject']!r} id={m['provider_message_id']}\")"
curl -fsS "$SANDBOX/_sandbox/messages?provider=wasender&limit=1" | py "import json,sys
m=json.load(sys.stdin)['items'][-1]; print(f\"   wasender: to={m['to']} text={m['text']!r} id={m['provider_message_id']}\")"

echo "5. today's metrics for the site"
curl -fsS "$API/api/v1/metrics" -H "X-Site-Key: $key"
echo
