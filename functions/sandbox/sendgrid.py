"""Fake SendGrid v3 Mail Send: ``POST /v3/mail/send`` with SendGrid's auth, validation and answers.

Accepted: 202, an empty body and ``X-Message-Id``. Refused: ``{"errors": [{"message", "field", "help"}]}``
with SendGrid's own wording (401 bad key, 400 validation, 413 too large, 429 with the ``X-RateLimit-*``
headers, and whatever an injected fault asks for).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import time
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse, Response

from functions.sandbox.calls import Arrival, FakeEndpoint, Refusals
from functions.sandbox.faults import Faults
from functions.sandbox.ledger import Ledger, Record
from functions.sandbox.webhooks import EventWebhook
from lib.common.settings import Secret

MAX_BYTES = 30 * 1024 * 1024  # SendGrid: the whole message, attachments included, under 30 MB
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000  # to + cc + bcc, over all personalizations
MAX_CUSTOM_ARGS_BYTES = 10_000  # per personalization, global and personalization custom_args merged
MAX_ADDRESS_LENGTH = 320
RATE_LIMIT = 600  # what X-RateLimit-Limit advertises

HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#"
BAD_KEY = "The provided authorization grant is invalid, expired, or revoked"
INVALID_ADDRESS = "Does not contain a valid address."
PERSONALIZATIONS_REQUIRED = "The personalizations field is required and must have at least one personalization."
TO_REQUIRED = (
    "The to array is required for all personalization objects, and must have at least one email object with a "
    "valid email address."
)
FROM_REQUIRED = (
    "The from object must be provided for every email send. It is an object that requires the email parameter, "
    'but may also contain a name parameter.  e.g. {"email" : "example@example.com"}  or '
    '{"email" : "example@example.com", "name" : "Example Recipient"}.'
)
SUBJECT_REQUIRED = (
    "The subject is required. You can get around this requirement if you use a template with a subject defined "
    "or if every personalization has a subject defined."
)
SUBJECT_EMPTY = "The subject of your email must be a string at least one character in length."
CONTENT_REQUIRED = (
    "Unless a valid template_id is provided, the content parameter is required. There must be at least one "
    "defined content block. We typically suggest both text/plain and text/html blocks are included, but only one "
    "block is required."
)
CONTENT_TYPE_REQUIRED = "A content type is required, this tells email clients how to display the email."
CONTENT_TYPE_CHARACTERS = "Cannot contain ';', or CRLF characters."
CONTENT_TWICE = "If present, text/plain and text/html may only be provided once."
CONTENT_VALUE_EMPTY = "The content value must be a string at least one character in length."
CONTENT_ORDER = (
    "Following RFC 1341, section 7.2, if either text/html or text/plain are to be sent in your email: text/plain "
    "needs to be first, followed by text/html, followed by any other content."
)
CUSTOM_ARGS_STRINGS = "All values of custom arguments object must be strings"
CUSTOM_ARGS_SIZE = (
    "The combined size of both global and personalization custom arguments may not exceed 10,000 bytes per "
    "personalization."
)
_EMAIL = re.compile(r"[^@\s\"(),:;<>\[\\\]]+@[^@\s\"(),:;<>\[\\\]]+\.[A-Za-z0-9-]{2,}")
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}

Problem = dict[str, str | None]


def problem(message: str, field: str | None = None, anchor: str | None = None) -> Problem:
    return {"message": message, "field": field, "help": HELP + anchor if anchor else None}


def errors(status: int, problems: list[Problem], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"errors": problems}, status, headers)


def failure(status: int, retry_after_s: int) -> Response:
    """SendGrid's answer for an injected failure status."""
    if status == 429:
        headers = {
            "Retry-After": str(retry_after_s),
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(time.time()) + retry_after_s),
        }
        return JSONResponse({"errors": [{"field": None, "message": "too many requests"}]}, 429, headers)
    messages = {
        400: "Bad Request",
        401: BAD_KEY,
        403: "access forbidden",
        413: "The JSON payload you have included in your request is too large.",
    }
    try:
        fallback = HTTPStatus(status).phrase.lower()
    except ValueError:
        fallback = "internal error"
    return errors(status, [problem(messages.get(status, fallback))])


def _json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), "unknown")


def _wrong_type(value: Any, expected: str, field: str) -> Problem:
    return problem(f"Invalid type. Expected: {expected}, given: {_json_type(value)}.", field)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _objects(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def address_problem(address: Any, field: str, label: str, anchor: str) -> Problem | None:
    """What is wrong with one ``{"email", "name"}`` object, if anything."""
    email = address.get("email") if isinstance(address, dict) else None
    if isinstance(email, str) and len(email) > MAX_ADDRESS_LENGTH:
        return problem(f"The {label} email exceeds the maximum total length of 320 characters", field, anchor)
    if not isinstance(email, str) or not _EMAIL.fullmatch(email):
        return problem(INVALID_ADDRESS, field, anchor)
    return None


def recipients(body: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, email) of every to, cc and bcc address, in request order."""
    found = []
    personalizations = body.get("personalizations")
    for i, p in enumerate(personalizations if isinstance(personalizations, list) else []):
        for kind in ("to", "cc", "bcc"):
            addresses = p.get(kind) if isinstance(p, dict) else None
            for j, address in enumerate(addresses if isinstance(addresses, list) else []):
                email = address.get("email") if isinstance(address, dict) else None
                if isinstance(email, str):
                    found.append((f"personalizations.{i}.{kind}.{j}.email", email))
    return found


def personalization_problems(body: dict[str, Any]) -> list[Problem]:
    personalizations = body.get("personalizations")
    if personalizations is None or personalizations == []:
        return [problem(PERSONALIZATIONS_REQUIRED, "personalizations", "-Personalizations-Errors")]
    if not isinstance(personalizations, list):
        return [_wrong_type(personalizations, "array", "personalizations")]
    if len(personalizations) > MAX_PERSONALIZATIONS:
        message = (
            f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations per API request. "
            f"You have provided {len(personalizations)} personalizations. Please consider splitting this into "
            "multiple requests and resending your request."
        )
        return [problem(message, "personalizations", "message.personalizations")]
    problems: list[Problem] = []
    total = 0
    for i, p in enumerate(personalizations):
        if not isinstance(p, dict):
            problems.append(_wrong_type(p, "object", f"personalizations.{i}"))
            continue
        if not isinstance(p.get("to"), list) or not p["to"]:
            problems.append(problem(TO_REQUIRED, f"personalizations.{i}.to", "message.personalizations.to"))
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            addresses = p.get(kind)
            if not isinstance(addresses, list):
                if addresses is not None and kind != "to":  # a bad "to" is already TO_REQUIRED
                    problems.append(_wrong_type(addresses, "array", f"personalizations.{i}.{kind}"))
                continue
            total += len(addresses)
            anchor = f"message.personalizations.{kind}"
            label = "To" if kind == "to" else kind.upper()
            for j, address in enumerate(addresses):
                wrong = address_problem(address, f"personalizations.{i}.{kind}.{j}.email", label, anchor)
                if wrong:
                    problems.append(wrong)
                    continue
                email = address["email"].lower()
                if email in seen:
                    message = (
                        "Each email address in the personalization block should be unique between to, cc, and bcc. "
                        f"We found the first duplicate instance of [{address['email']}] in the "
                        f"personalizations.{i}.{kind} field."
                    )
                    problems.append(problem(message, f"personalizations.{i}", "message.personalizations"))
                seen.add(email)
    if total > MAX_RECIPIENTS:
        message = "There is a limit of 1000 total recipients (to + cc + bcc) per request."
        problems.append(problem(message, "personalizations", "message.personalizations"))
    return problems


def sender_problems(body: dict[str, Any]) -> list[Problem]:
    problems = []
    sender = body.get("from")
    if sender is None or (isinstance(sender, dict) and sender.get("email") is None):
        problems.append(problem(FROM_REQUIRED, "from.email", "message.from"))
    elif not isinstance(sender, dict):
        problems.append(_wrong_type(sender, "object", "from"))
    else:
        wrong = address_problem(sender, "from.email", "From", "message.from")
        if wrong and wrong["message"] == INVALID_ADDRESS:
            wrong = problem("The from email does not contain a valid address.", "from.email", "message.from")
        if wrong:
            problems.append(wrong)
    reply_to = body.get("reply_to")
    if reply_to is not None:
        wrong = address_problem(reply_to, "reply_to.email", "Reply-To", "message.reply_to")
        if wrong:
            problems.append(wrong)
    return problems


def subject_problems(body: dict[str, Any]) -> list[Problem]:
    problems = []
    top = body.get("subject")
    if top is not None and not _text(top):
        problems.append(problem(SUBJECT_EMPTY, "subject", "message.subject"))
    personalizations = _objects(body.get("personalizations"))
    for i, p in enumerate(personalizations):
        if p.get("subject") is not None and not _text(p["subject"]):
            problems.append(problem(SUBJECT_EMPTY, f"personalizations.{i}.subject", "message.personalizations.subject"))
    every_one = bool(personalizations) and all(p.get("subject") is not None for p in personalizations)
    if top is None and not every_one and not body.get("template_id"):
        problems.append(problem(SUBJECT_REQUIRED, "subject", "message.subject"))
    return problems


def content_problems(body: dict[str, Any]) -> list[Problem]:
    content = body.get("content")
    if content is None or content == []:
        return [] if body.get("template_id") else [problem(CONTENT_REQUIRED, "content", "message.content")]
    if not isinstance(content, list):
        return [_wrong_type(content, "array", "content")]
    problems: list[Problem] = []
    types: list[str] = []
    for k, block in enumerate(content):
        if not isinstance(block, dict):
            problems.append(_wrong_type(block, "object", f"content.{k}"))
            continue
        kind = block.get("type")
        if not isinstance(kind, str) or not kind:
            problems.append(problem(CONTENT_TYPE_REQUIRED, f"content.{k}.type", "message.content.type"))
        elif any(c in kind for c in ";\r\n"):
            problems.append(problem(CONTENT_TYPE_CHARACTERS, f"content.{k}.type", "message.content.type"))
        else:
            types.append(kind.lower())
        if not _text(block.get("value")):
            problems.append(problem(CONTENT_VALUE_EMPTY, f"content.{k}.value", "message.content.value"))
    if types.count("text/plain") > 1 or types.count("text/html") > 1:
        problems.append(problem(CONTENT_TWICE, "content", "message.content"))
    elif types and types != sorted(types, key=lambda t: {"text/plain": 0, "text/html": 1}.get(t, 2)):
        problems.append(problem(CONTENT_ORDER, "content", "message.content.value"))
    return problems


def custom_args_problems(body: dict[str, Any]) -> list[Problem]:
    top = body.get("custom_args")
    places = [("custom_args", top)]
    for i, p in enumerate(_list(body.get("personalizations"))):
        if isinstance(p, dict) and p.get("custom_args") is not None:
            places.append((f"personalizations.{i}.custom_args", p["custom_args"]))
    problems: list[Problem] = []
    for field, args in places:
        if args is not None and not isinstance(args, dict):
            problems.append(_wrong_type(args, "object", field))
        elif args and not all(isinstance(v, str) for v in args.values()):
            problems.append(problem(CUSTOM_ARGS_STRINGS, field, "message.custom_args"))
    if problems:
        return problems
    for field, args in places[1:] or places:
        if len(json.dumps({**(top or {}), **(args or {})}).encode()) > MAX_CUSTOM_ARGS_BYTES:
            problems.append(problem(CUSTOM_ARGS_SIZE, field, "message.personalizations.custom_args"))
    return problems


ATTACHMENT_CONTENT = "The attachment content must be base64 encoded."
ATTACHMENT_FILENAME = "The attachment filename parameter is required."
ATTACHMENT_DISPOSITION = "The disposition of your attachment can be either 'inline' or 'attachment'."
ATTACHMENT_CONTENT_ID = "The content_id parameter is required if your attachment is inline."


def _decoded(content: Any) -> bytes | None:
    try:
        return base64.b64decode(content, validate=True) if isinstance(content, str) and content else None
    except (binascii.Error, ValueError):
        return None


def attachment_problems(body: dict[str, Any]) -> list[Problem]:
    """v3's attachment rules: content (base64) and filename required, type optional, disposition inline or
    attachment, and an inline one needs its content_id."""
    attachments = body.get("attachments")
    if attachments is None:
        return []
    if not isinstance(attachments, list):
        return [_wrong_type(attachments, "array", "attachments")]
    problems: list[Problem] = []
    for i, item in enumerate(attachments):
        item = item if isinstance(item, dict) else {}
        if _decoded(item.get("content")) is None:
            problems.append(problem(ATTACHMENT_CONTENT, f"attachments.{i}.content", "message.attachments.content"))
        if not _text(item.get("filename")):
            problems.append(problem(ATTACHMENT_FILENAME, f"attachments.{i}.filename", "message.attachments.filename"))
        disposition = item.get("disposition", "attachment")
        if disposition not in ("inline", "attachment"):
            anchor = "message.attachments.disposition"
            problems.append(problem(ATTACHMENT_DISPOSITION, f"attachments.{i}.disposition", anchor))
        elif disposition == "inline" and not _text(item.get("content_id")):
            anchor = "message.attachments.content_id"
            problems.append(problem(ATTACHMENT_CONTENT_ID, f"attachments.{i}.content_id", anchor))
    return problems


def validate(body: Any) -> list[Problem]:
    """Everything SendGrid's v3 validation would refuse in this body, in SendGrid's words."""
    if not isinstance(body, dict):
        return [problem("Bad Request")]
    return [
        *personalization_problems(body),
        *sender_problems(body),
        *subject_problems(body),
        *content_problems(body),
        *custom_args_problems(body),
        *attachment_problems(body),
    ]


def summary(body: Any) -> Record:
    """What the listing shows of one request (any JSON at all): recipients, sender, subject, text and html,
    and the custom_args (global, then each personalization's)."""
    body = body if isinstance(body, dict) else {}
    found: dict[str, list[str]] = {"to": [], "cc": [], "bcc": []}
    for field, email in recipients(body):
        found[field.split(".")[2]].append(email)
    personalizations = _objects(body.get("personalizations"))
    subjects = [body.get("subject"), *(p.get("subject") for p in personalizations)]
    content = {c["type"]: c.get("value") for c in _objects(body.get("content")) if isinstance(c.get("type"), str)}
    custom_args: dict[str, Any] = {}
    for args in [body.get("custom_args"), *(p.get("custom_args") for p in personalizations)]:
        custom_args.update(args if isinstance(args, dict) else {})
    sender = body.get("from")
    reply_to = body.get("reply_to")
    files = []
    for item in _objects(body.get("attachments")):
        data = _decoded(item.get("content")) or b""
        files.append(
            {
                "filename": item.get("filename"),
                "type": item.get("type"),
                "disposition": item.get("disposition", "attachment"),
                "content_id": item.get("content_id"),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return {
        **found,
        "from": sender.get("email") if isinstance(sender, dict) else None,
        "from_name": sender.get("name") if isinstance(sender, dict) else None,
        "reply_to": reply_to.get("email") if isinstance(reply_to, dict) else None,
        "subject": next((s for s in subjects if isinstance(s, str) and s), None),
        "text": content.get("text/plain"),
        "html": content.get("text/html"),
        "custom_args": custom_args,
        "attachments": files,
    }


_REFUSALS = Refusals(
    unauthorized=lambda _presented: errors(401, [problem(BAD_KEY)]),
    injected=failure,
    too_large=lambda: failure(413, 0),
)


class SendGridFake(FakeEndpoint):
    """The ``POST /v3/mail/send`` endpoint over one ledger and the one API key it accepts."""

    refusals = _REFUSALS
    max_bytes = MAX_BYTES

    def __init__(self, ledger: Ledger, api_key: Secret, webhook: EventWebhook | None = None) -> None:
        super().__init__(ledger, api_key)
        self._webhook = webhook

    def answer(self, arrival: Arrival) -> Response:
        received_at, raw, body = arrival.received_at, arrival.raw, arrival.body
        faults = self._ledger.faults
        problems = validate(body)
        if problems:
            return self._ledger.answer(received_at, raw, errors(400, problems), account=arrival.account)
        rejected = self._rejected(body, faults)
        if rejected:
            return self._ledger.answer(
                received_at, raw, errors(faults.reject_status, rejected), account=arrival.account
            )
        message_id = secrets.token_urlsafe(16)
        response = Response(status_code=202, headers={"X-Message-Id": message_id})
        if self._webhook is not None:
            bounced = any(email.strip().lower() in faults.bounced for _, email in recipients(body))
            self._webhook.message_taken(body, message_id, bounced)
        return self._ledger.answer(received_at, raw, response, provider_message_id=message_id, account=arrival.account)

    def _rejected(self, body: dict[str, Any], faults: Faults) -> list[Problem]:
        """SendGrid's invalid-address error for every recipient the faults reject."""
        if not faults.rejected:
            return []
        return [
            problem(INVALID_ADDRESS, field, f"message.personalizations.{field.split('.')[2]}")
            for field, email in recipients(body)
            if faults.rejects(email)
        ]
