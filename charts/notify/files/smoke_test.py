"""`helm test` for notify: one message end to end through the sandbox provider.

Registers a throwaway site with the admin token, sends one email with the site's key, waits until the message
is SENT (the email worker handed it to the sandbox's fake SendGrid), and deactivates the site whatever happened.
Runs in the API image (httpx is one of its dependencies); settings come from the environment.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import httpx

DONE = {"SENT", "DELIVERED", "READ"}
FAILED = {"FAILED", "BOUNCED"}


def register_site(client: httpx.Client, admin: dict[str, str], site_name: str) -> str:
    response = client.post("/api/v1/site/register", headers=admin, json={"site_name": site_name})
    response.raise_for_status()
    key: str = response.json()["api_key"]
    return key


def send_one(client: httpx.Client, site_key: str) -> str:
    body = {
        "channel": "email",
        "recipient": "helm-test@example.com",
        "subject": "notify helm test",
        "body": "This message only ever reaches the sandbox provider.",
    }
    response = client.post("/api/v1/notifications/send", headers={"X-Site-Key": site_key}, json=body)
    response.raise_for_status()
    message_id: str = response.json()["message_id"]
    return message_id


def wait_for_sent(client: httpx.Client, site_key: str, message_id: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    status = "PENDING"
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/notifications/{message_id}", headers={"X-Site-Key": site_key})
        response.raise_for_status()
        status = response.json()["status"]
        if status in DONE or status in FAILED:
            return str(status)
        time.sleep(2)
    return status


def deactivate(client: httpx.Client, admin: dict[str, str], site_name: str) -> None:
    response = client.patch(f"/api/v1/admin/sites/{site_name}", headers=admin, json={"status": "deactivated"})
    response.raise_for_status()


def run(client: httpx.Client, admin_token: str, timeout_s: float) -> int:
    """The whole test on one client: 0 when the message reached SENT, 1 otherwise; the site is always deactivated."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    site_name = f"helm-test-{uuid.uuid4().hex[:12]}.invalid"
    site_key = register_site(client, admin, site_name)
    try:
        message_id = send_one(client, site_key)
        status = wait_for_sent(client, site_key, message_id, timeout_s)
    finally:
        deactivate(client, admin, site_name)
    print(f"site {site_name}: message {message_id} is {status}")
    return 0 if status in DONE else 1


def main() -> int:
    timeout_s = float(os.environ.get("TEST_TIMEOUT_SECONDS", "180"))
    with httpx.Client(base_url=os.environ["NOTIFY_URL"], timeout=10.0) as client:
        return run(client, os.environ["NOTIFY_ADMIN_TOKEN"], timeout_s)


if __name__ == "__main__":
    sys.exit(main())
