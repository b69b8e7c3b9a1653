"""The sandbox providers over real HTTP: a uvicorn server on a free loopback port, driven by the official
``sendgrid`` client, by an httpx client written against WASender's docs, and by the workers' own adapters."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Mail

from functions.sandbox.app import build_app
from functions.sandbox.settings import SandboxSettings
from lib.adapters.providers.sendgrid import SendGridProvider, SendGridSettings
from lib.adapters.providers.wasender import WASenderProvider, WASenderSettings
from lib.common.settings import Secret
from lib.domain.notification import Content, OutgoingMessage

SENDGRID_KEY = "SG.sandbox-test-key"
WASENDER_KEY = "wasender-test-key"
BAD_GRANT = "The provided authorization grant is invalid, expired, or revoked"
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#"
WASENDER_PAT = "sandbox-test-pat"


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    settings = SandboxSettings(
        sendgrid_api_key=Secret(SENDGRID_KEY),
        wasender_api_key=Secret(WASENDER_KEY),
        wasender_personal_access_token=Secret(WASENDER_PAT),
        sendgrid_webhook_private_key=Secret(""),
        wasender_webhook_secret=Secret("wasender-webhook-secret"),
        max_records=1000,
    )
    config = uvicorn.Config(build_app(settings), host="127.0.0.1", port=0, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the sandbox did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def sandbox(sandbox_url: str) -> Iterator[httpx.Client]:
    """A client for the sandbox, every record and fault setting cleared."""
    with httpx.Client(base_url=sandbox_url, timeout=60) as client:
        client.delete("/_sandbox/messages").raise_for_status()
        for provider in ("sendgrid", "wasender"):
            client.delete(f"/_sandbox/faults/{provider}").raise_for_status()
        yield client


@pytest.fixture
def sendgrid(sandbox_url: str) -> SendGridAPIClient:
    return SendGridAPIClient(SENDGRID_KEY, host=sandbox_url)


def mail(to: str = "ada@example.com", subject: str | None = "Invoice") -> Mail:
    message = Mail(
        from_email="notify@example.com",
        to_emails=to,
        subject=subject,
        plain_text_content="Your invoice",
        html_content="<p>Your invoice</p>",
    )
    message.custom_arg = [CustomArg("notify_message_id", "m-1"), CustomArg("notify_site_id", "s-1")]
    return message


def sendgrid_error(sendgrid: SendGridAPIClient, message: Mail | dict[str, Any]) -> HTTPError:
    with pytest.raises(HTTPError) as caught:
        sendgrid.send(message)
    return caught.value


def listing(sandbox: httpx.Client, what: str = "messages", **params: Any) -> list[dict[str, Any]]:
    response = sandbox.get(f"/_sandbox/{what}", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def faults(sandbox: httpx.Client, provider: str, **settings: Any) -> dict[str, Any]:
    response = sandbox.put(f"/_sandbox/faults/{provider}", json=settings)
    assert response.status_code == 200, response.text
    current: dict[str, Any] = response.json()
    return current


def whatsapp(sandbox: httpx.Client, body: dict[str, Any], key: str | None = WASENDER_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return sandbox.post("/api/send-message", json=body, headers=headers)


def valid_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [{"to": [{"email": "ada@example.com"}]}],
        "from": {"email": "notify@example.com"},
        "subject": "Hello",
        "content": [{"type": "text/plain", "value": "Hi"}],
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


# --- SendGrid v3 Mail Send through the official client ------------------------------------------------------------


def test_official_client_mail_is_accepted_with_a_message_id_and_listed(
    sandbox: httpx.Client, sendgrid: SendGridAPIClient
) -> None:
    response = sendgrid.send(mail())
    assert response.status_code == 202 and response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    [sent] = listing(sandbox, provider="sendgrid")
    assert sent["provider_message_id"] == message_id and sent["status"] == 202 and sent["auth_valid"] is True
    assert sent["to"] == ["ada@example.com"] and sent["from"] == "notify@example.com"
    assert (sent["subject"], sent["text"], sent["html"]) == ("Invoice", "Your invoice", "<p>Your invoice</p>")
    assert sent["custom_args"] == {"notify_message_id": "m-1", "notify_site_id": "s-1"}
    assert sent["received_at"] == pytest.approx(time.time(), abs=5)


def test_every_accepted_mail_gets_a_fresh_message_id(sandbox: httpx.Client, sendgrid: SendGridAPIClient) -> None:
    ids = [sendgrid.send(mail(f"user{i}@example.com")).headers["X-Message-Id"] for i in range(20)]
    assert len(set(ids)) == 20
    assert [m["provider_message_id"] for m in listing(sandbox, provider="sendgrid")] == ids


def test_a_wrong_key_gets_sendgrids_401(sandbox: httpx.Client, sandbox_url: str) -> None:
    error = sendgrid_error(SendGridAPIClient("SG.not-the-key", host=sandbox_url), mail())
    assert error.status_code == 401
    assert json.loads(error.body) == {"errors": [{"field": None, "message": BAD_GRANT, "help": None}]}
    missing = sandbox.post("/v3/mail/send", json=valid_body())
    assert missing.status_code == 401 and missing.json()["errors"][0]["message"] == BAD_GRANT
    assert listing(sandbox, provider="sendgrid") == []
    assert [c["auth_valid"] for c in listing(sandbox, "calls", provider="sendgrid")] == [False, False]
    assert sandbox.get("/_sandbox/stats").json()["sendgrid"] == {"401": 2}


def test_a_missing_subject_is_sendgrids_400_on_the_subject_field(
    sandbox: httpx.Client, sendgrid: SendGridAPIClient
) -> None:
    error = sendgrid_error(sendgrid, mail(subject=None))
    assert error.status_code == 400
    [problem] = json.loads(error.body)["errors"]
    assert problem["field"] == "subject" and problem["help"] == HELP + "message.subject"
    assert problem["message"].startswith("The subject is required.")
    assert listing(sandbox, provider="sendgrid") == []
    assert [c["status"] for c in listing(sandbox, "calls", provider="sendgrid")] == [400]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"personalizations": None}, "personalizations", "The personalizations field is required"),
        ({"personalizations": [{"to": []}]}, "personalizations.0.to", "The to array is required"),
        (
            {"personalizations": [{"to": [{"email": "ada@example.com"}, {"email": "not-an-address"}]}]},
            "personalizations.0.to.1.email",
            "Does not contain a valid address.",
        ),
        ({"from": None}, "from.email", "The from object must be provided"),
        ({"from": {"email": "nobody"}}, "from.email", "The from email does not contain a valid address."),
        ({"subject": ""}, "subject", "The subject of your email must be a string"),
        ({"content": None}, "content", "Unless a valid template_id is provided, the content parameter is required"),
        ({"content": [{"type": "text/plain", "value": ""}]}, "content.0.value", "The content value must be a string"),
        ({"content": [{"value": "Hi"}]}, "content.0.type", "A content type is required"),
        (
            {"content": [{"type": "text/html", "value": "<p>Hi</p>"}, {"type": "text/plain", "value": "Hi"}]},
            "content",
            "Following RFC 1341, section 7.2",
        ),
        ({"custom_args": {"n": 1}}, "custom_args", "All values of custom arguments object must be strings"),
        ({"custom_args": {"n": "x" * 10_001}}, "custom_args", "The combined size of both global and personalization"),
    ],
)
def test_sendgrid_validation_answers_in_sendgrids_words(
    sendgrid: SendGridAPIClient, changes: dict[str, Any], field: str, message: str
) -> None:
    error = sendgrid_error(sendgrid, valid_body(**changes))
    assert error.status_code == 400
    problems = json.loads(error.body)["errors"]
    assert any(p["field"] == field and p["message"].startswith(message) for p in problems), problems
    assert all(set(p) == {"message", "field", "help"} for p in problems)


def test_every_sendgrid_problem_is_reported_at_once(sendgrid: SendGridAPIClient) -> None:
    error = sendgrid_error(sendgrid, valid_body(**{"from": {"email": "x"}, "subject": None, "content": None}))
    assert {p["field"] for p in json.loads(error.body)["errors"]} == {"from.email", "subject", "content"}


@pytest.mark.parametrize(
    ("changes", "to", "subject"),
    [
        (
            {"subject": None, "personalizations": [{"to": [{"email": "a@example.com"}], "subject": "Per person"}]},
            ["a@example.com"],
            "Per person",
        ),
        ({"subject": None, "content": None, "template_id": "d-0123456789abcdef"}, ["ada@example.com"], None),
        (
            {"personalizations": [{"to": [{"email": "a@example.com"}], "cc": [{"email": "b@example.com"}]}]},
            ["a@example.com"],
            "Hello",
        ),
    ],
)
def test_sendgrid_accepts_subjects_per_personalization_and_templates(
    sandbox: httpx.Client, sendgrid: SendGridAPIClient, changes: dict[str, Any], to: list[str], subject: str | None
) -> None:
    response = sendgrid.send(valid_body(**changes))
    assert response.status_code == 202
    [sent] = listing(sandbox, provider="sendgrid")
    assert sent["provider_message_id"] == response.headers["X-Message-Id"]
    assert (sent["to"], sent["subject"]) == (to, subject)


def test_a_body_that_is_not_json_is_a_bad_request(sandbox: httpx.Client) -> None:
    response = sandbox.post("/v3/mail/send", content=b"{nope", headers={"Authorization": f"Bearer {SENDGRID_KEY}"})
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": "Bad Request", "field": None, "help": None}]}
    [call] = listing(sandbox, "calls", provider="sendgrid")
    assert (call["status"], call["body"], call["to"]) == (400, "{nope", [])


def test_a_body_over_30_mb_is_sendgrids_413(sandbox: httpx.Client) -> None:
    big = valid_body(content=[{"type": "text/plain", "value": "x" * (30 * 1024 * 1024)}])
    response = sandbox.post("/v3/mail/send", json=big, headers={"Authorization": f"Bearer {SENDGRID_KEY}"})
    assert response.status_code == 413
    assert "too large" in response.json()["errors"][0]["message"]
    assert sandbox.get("/_sandbox/stats").json()["sendgrid"] == {"413": 1}


def test_fail_next_gives_that_many_503s_then_a_202(sandbox: httpx.Client, sendgrid: SendGridAPIClient) -> None:
    assert faults(sandbox, "sendgrid", fail_next=2)["fail_status"] == 503
    assert [sendgrid_error(sendgrid, mail()).status_code for _ in range(2)] == [503, 503]
    assert sendgrid.send(mail()).status_code == 202
    assert [c["status"] for c in listing(sandbox, "calls", provider="sendgrid")] == [503, 503, 202]
    assert len(listing(sandbox, provider="sendgrid")) == 1  # failed calls are not "went out"
    assert sandbox.get("/_sandbox/stats").json()["sendgrid"] == {"202": 1, "503": 2}
    assert sandbox.get("/_sandbox/faults/sendgrid").json()["fail_next"] == 0


def test_rate_limit_next_answers_429_with_retry_after_and_rate_limit_headers(
    sandbox: httpx.Client, sendgrid: SendGridAPIClient
) -> None:
    faults(sandbox, "sendgrid", rate_limit_next=1, retry_after_s=7)
    error = sendgrid_error(sendgrid, mail())
    assert error.status_code == 429
    assert error.headers["Retry-After"] == "7" and error.headers["X-RateLimit-Remaining"] == "0"
    assert int(error.headers["X-RateLimit-Reset"]) >= int(time.time()) + 6
    assert int(error.headers["X-RateLimit-Limit"]) > 0
    assert json.loads(error.body) == {"errors": [{"field": None, "message": "too many requests"}]}
    assert sendgrid.send(mail()).status_code == 202


def test_a_rejected_recipient_is_sendgrids_invalid_address_400(
    sandbox: httpx.Client, sendgrid: SendGridAPIClient
) -> None:
    faults(sandbox, "sendgrid", reject_recipients=["Bounce@example.com"])
    error = sendgrid_error(sendgrid, mail("bounce@example.com"))
    assert error.status_code == 400
    assert json.loads(error.body)["errors"] == [
        {
            "message": "Does not contain a valid address.",
            "field": "personalizations.0.to.0.email",
            "help": HELP + "message.personalizations.to",
        }
    ]
    assert sendgrid.send(mail("fine@example.com")).status_code == 202
    assert [m["to"] for m in listing(sandbox, provider="sendgrid")] == [["fine@example.com"]]
    faults(sandbox, "sendgrid", reject_recipients=["bounce@example.com"], reject_status=403)
    assert sendgrid_error(sendgrid, mail("bounce@example.com")).status_code == 403


@pytest.mark.parametrize(("status", "message"), [(403, "access forbidden"), (500, "internal server error")])
def test_fail_status_picks_the_answer(
    sandbox: httpx.Client, sendgrid: SendGridAPIClient, status: int, message: str
) -> None:
    faults(sandbox, "sendgrid", fail_next=1, fail_status=status)
    error = sendgrid_error(sendgrid, mail())
    assert error.status_code == status
    assert json.loads(error.body)["errors"][0]["message"] == message


def test_fail_rate_fails_about_that_share(sandbox: httpx.Client) -> None:
    faults(sandbox, "sendgrid", fail_rate=0.5, fail_status=502)
    headers = {"Authorization": f"Bearer {SENDGRID_KEY}"}
    statuses = [sandbox.post("/v3/mail/send", json=valid_body(), headers=headers).status_code for _ in range(300)]
    assert set(statuses) == {202, 502}
    assert 75 <= statuses.count(502) <= 225
    faults(sandbox, "sendgrid", fail_rate=1.0)
    assert sandbox.post("/v3/mail/send", json=valid_body(), headers=headers).status_code == 503


def test_latency_delays_the_answer(sandbox: httpx.Client, sendgrid: SendGridAPIClient) -> None:
    faults(sandbox, "sendgrid", latency_ms=300, latency_jitter_ms=50)
    started = time.perf_counter()
    assert sendgrid.send(mail()).status_code == 202
    assert 0.3 <= time.perf_counter() - started < 2
    sandbox.delete("/_sandbox/faults/sendgrid")
    started = time.perf_counter()
    sendgrid.send(mail())
    assert time.perf_counter() - started < 0.3


def test_hang_takes_the_message_and_holds_the_answer_until_turned_off(sandbox: httpx.Client, sandbox_url: str) -> None:
    faults(sandbox, "sendgrid", hang=True)
    headers = {"Authorization": f"Bearer {SENDGRID_KEY}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sandbox_url}/v3/mail/send", json=valid_body(), headers=headers, timeout=0.5)
    assert len(listing(sandbox)) == 1  # taken, though its client never heard so
    held = threading.Thread(
        target=lambda: answers.append(
            httpx.post(f"{sandbox_url}/v3/mail/send", json=valid_body(), headers=headers, timeout=10).status_code
        )
    )
    answers: list[int] = []
    held.start()
    time.sleep(0.5)
    assert answers == []
    faults(sandbox, "sendgrid")
    held.join(timeout=5)
    assert answers == [202] and len(listing(sandbox)) == 2


# --- WASender through httpx, as its docs describe it --------------------------------------------------------------


def test_wasender_accepts_a_text_and_lists_it(sandbox: httpx.Client) -> None:
    response = whatsapp(sandbox, {"to": "+14155550123", "text": "Order 42 shipped", "metadata": {"site": "s-1"}})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and set(body["data"]) == {"msgId", "jid", "status"}
    assert isinstance(body["data"]["msgId"], int) and body["data"]["status"] == "in_progress"
    assert body["data"]["jid"] == "+14155550123"
    [sent] = listing(sandbox, provider="whatsapp")  # the channel's name works for the provider's
    assert sent["provider"] == "wasender" and sent["provider_message_id"] == str(body["data"]["msgId"])
    assert sent["to"] == ["+14155550123"] and sent["text"] == "Order 42 shipped" and sent["auth_valid"] is True
    assert sent["extra"] == {"metadata": {"site": "s-1"}}
    assert sent["body"] == {"to": "+14155550123", "text": "Order 42 shipped", "metadata": {"site": "s-1"}}
    second = whatsapp(sandbox, {"to": "+14155550123", "text": "again"}).json()["data"]["msgId"]
    assert second != body["data"]["msgId"]


def test_wasender_refuses_a_missing_or_wrong_key(sandbox: httpx.Client) -> None:
    missing = whatsapp(sandbox, {"to": "+14155550123", "text": "hi"}, key=None)
    assert missing.status_code == 401 and missing.json() == {"success": False, "message": "API key is required"}
    wrong = whatsapp(sandbox, {"to": "+14155550123", "text": "hi"}, key="not-the-key")
    assert wrong.status_code == 401 and wrong.json()["success"] is False
    assert listing(sandbox, provider="wasender") == []
    assert sandbox.get("/_sandbox/stats").json()["wasender"] == {"401": 2}


def test_wasender_validation_is_a_422_with_field_errors(sandbox: httpx.Client) -> None:
    response = whatsapp(sandbox, {})
    assert response.status_code == 422
    assert response.json() == {
        "success": False,
        "message": "Validation failed",
        "errors": {
            "to": ["The to field is required."],
            "text": ["The text field is required when no media is present."],
        },
    }
    bad_number = whatsapp(sandbox, {"to": "0415 555", "text": "hi"})
    assert bad_number.status_code == 422 and set(bad_number.json()["errors"]) == {"to"}
    media_only = whatsapp(sandbox, {"to": "+14155550123", "imageUrl": "https://example.com/a.png"})
    assert media_only.status_code == 200
    assert [c["status"] for c in listing(sandbox, "calls", provider="wasender")] == [422, 422, 200]


def test_wasender_fail_next_then_success(sandbox: httpx.Client) -> None:
    faults(sandbox, "whatsapp", fail_next=2)
    statuses = [whatsapp(sandbox, {"to": "+14155550123", "text": "hi"}) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].json()["success"] is False
    assert len(listing(sandbox, provider="wasender")) == 1


def test_wasender_rate_limit_next_is_a_429_with_retry_after(sandbox: httpx.Client) -> None:
    faults(sandbox, "wasender", rate_limit_next=1, retry_after_s=60)
    limited = whatsapp(sandbox, {"to": "+14155550123", "text": "hi"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "60"
    assert limited.json()["retry_after"] == 60 and limited.headers["X-RateLimit-Remaining"] == "0"
    assert whatsapp(sandbox, {"to": "+14155550123", "text": "hi"}).status_code == 200


def test_wasender_rejected_recipient_is_a_422_on_to(sandbox: httpx.Client) -> None:
    assert faults(sandbox, "wasender", reject_recipients=["+14155550999"])["reject_status"] == 422
    rejected = whatsapp(sandbox, {"to": "+14155550999", "text": "hi"})
    assert rejected.status_code == 422 and set(rejected.json()["errors"]) == {"to"}
    assert whatsapp(sandbox, {"to": "+14155550123", "text": "hi"}).status_code == 200
    assert [m["to"] for m in listing(sandbox, provider="wasender")] == [["+14155550123"]]


# --- the workers' own adapters, unchanged ------------------------------------------------------------------------


def test_the_workers_adapters_get_the_ids_the_sandbox_lists(sandbox: httpx.Client, sandbox_url: str) -> None:
    message = OutgoingMessage("m-9", "s-9", Content("grace@example.com", "Body", subject="Subject", html="<p>Body</p>"))
    chat = OutgoingMessage("m-10", "s-9", Content("+14155550123", "Hello"))

    async def send_both() -> tuple[str, str]:
        email = SendGridProvider(
            SendGridSettings(api_key=Secret(SENDGRID_KEY), api_url=sandbox_url, sender="notify@example.com"),
            timeout_s=10,
            max_connections=2,
        )
        wa = WASenderProvider(
            WASenderSettings(api_key=Secret(WASENDER_KEY), api_url=f"{sandbox_url}/api"),
            timeout_s=10,
            max_connections=2,
        )
        try:
            return await email.send(message), await wa.send(chat)
        finally:
            await email.aclose()
            await wa.aclose()

    email_id, chat_id = asyncio.run(send_both())
    [mail_sent] = listing(sandbox, provider="sendgrid")
    [chat_sent] = listing(sandbox, provider="wasender")
    assert mail_sent["provider_message_id"] == email_id and mail_sent["custom_args"]["notify_message_id"] == "m-9"
    assert chat_sent["provider_message_id"] == chat_id and chat_sent["text"] == "Hello"


# --- the control API -----------------------------------------------------------------------------------------------


def test_listing_without_provider_merges_both_and_limit_keeps_the_newest(
    sandbox: httpx.Client, sendgrid: SendGridAPIClient
) -> None:
    sendgrid.send(mail("first@example.com"))
    whatsapp(sandbox, {"to": "+14155550123", "text": "second"})
    sendgrid.send(mail("third@example.com"))
    assert [m["provider"] for m in listing(sandbox)] == ["sendgrid", "wasender", "sendgrid"]
    assert [m["to"] for m in listing(sandbox, provider="sendgrid", limit=1)] == [["third@example.com"]]
    assert sandbox.get("/_sandbox/messages", params={"limit": "0"}).status_code == 422
    assert sandbox.get("/_sandbox/messages", params={"provider": "twilio"}).status_code == 404


def test_delete_messages_clears_records_and_stats_but_not_faults(
    sandbox: httpx.Client, sendgrid: SendGridAPIClient
) -> None:
    faults(sandbox, "sendgrid", latency_ms=1)
    sendgrid.send(mail())
    whatsapp(sandbox, {"to": "+14155550123", "text": "hi"})
    assert sandbox.get("/_sandbox/stats").json() == {"sendgrid": {"202": 1}, "wasender": {"200": 1}}
    assert sandbox.delete("/_sandbox/messages").status_code == 204
    assert listing(sandbox) == [] and listing(sandbox, "calls") == []
    assert sandbox.get("/_sandbox/stats").json() == {"sendgrid": {}, "wasender": {}}
    assert sandbox.get("/_sandbox/faults/sendgrid").json()["latency_ms"] == 1


def test_fault_settings_round_trip_and_reset(sandbox: httpx.Client) -> None:
    defaults = sandbox.get("/_sandbox/faults/sendgrid").json()
    assert defaults == {
        "latency_ms": 0.0,
        "latency_jitter_ms": 0.0,
        "fail_rate": 0.0,
        "fail_status": 503,
        "fail_next": 0,
        "rate_limit_next": 0,
        "retry_after_s": 1,
        "reject_recipients": [],
        "reject_status": 400,
        "hang": False,
        "account": None,
        "bounce_recipients": [],
    }
    current = faults(sandbox, "sendgrid", fail_next=3, reject_recipients=["a@example.com"])
    assert current == {**defaults, "fail_next": 3, "reject_recipients": ["a@example.com"]}
    assert sandbox.get("/_sandbox/faults/sendgrid").json() == current
    assert faults(sandbox, "sendgrid") == defaults  # a PUT is the whole setting: what it leaves out is reset
    faults(sandbox, "sendgrid", fail_rate=1.0)
    assert sandbox.delete("/_sandbox/faults/sendgrid").json() == defaults
    assert sandbox.get("/_sandbox/faults/whatsapp").json()["reject_status"] == 422


@pytest.mark.parametrize(
    "settings",
    [
        {"fail_rate": 2},
        {"fail_next": -1},
        {"fail_status": 200},
        {"latency_ms": "slow"},
        {"reject_recipients": "a"},
        {"fail_next": 1.5},
        {"fail_next": True},
        {"hang": 1},
        {"account": 7},
        {"surprise": 1},
    ],
)
def test_bad_fault_settings_are_refused_and_change_nothing(sandbox: httpx.Client, settings: dict[str, Any]) -> None:
    response = sandbox.put("/_sandbox/faults/sendgrid", json=settings)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"
    assert sandbox.get("/_sandbox/faults/sendgrid").json()["fail_next"] == 0
    assert sandbox.put("/_sandbox/faults/nobody", json={}).status_code == 404


def test_health_and_metrics(sandbox: httpx.Client, sendgrid: SendGridAPIClient) -> None:
    assert sandbox.get("/healthz").json() == {"status": "ok"}
    sendgrid.send(mail())
    metrics = sandbox.get("/metrics").text
    assert 'notify_sandbox_calls_total{provider="sendgrid",status="202"}' in metrics
    assert 'notify_http_requests_total{method="POST",route="/v3/mail/send",status="202"}' in metrics


def test_settings_come_from_the_environment_once_with_defaults() -> None:
    defaults = SandboxSettings.from_env({})
    assert (defaults.host, defaults.port, defaults.max_records) == ("127.0.0.1", 8090, 100_000)
    assert defaults.sendgrid_api_key.reveal() == "sandbox-sendgrid-key"
    assert defaults.wasender_api_key.reveal() == "sandbox-wasender-key"
    custom = SandboxSettings.from_env(
        {"SANDBOX_HOST": "0.0.0.0", "SANDBOX_PORT": "9000", "SANDBOX_SENDGRID_API_KEY": "SG.k"}
    )
    assert (custom.host, custom.port, custom.sendgrid_api_key.reveal()) == ("0.0.0.0", 9000, "SG.k")
    assert "SG.k" not in repr(custom)
