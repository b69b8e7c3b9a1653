"""A site's sender identities: the admin sets them, the site reads its own, every email it sends goes out as one.

The whole policy is replaced at once (``PUT``): what the FrappeSite operator declares is what the site has.
"""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from lib.adapters import db
from lib.domain.addresses import SenderPolicy, ascii_domain
from lib.domain.errors import NotFound, ValidationFailed
from lib.domain.validation import Problems, parse_sender

MAX_SENDERS = 50
MAX_DOMAINS = 20


def parse_sender_policy(data: Any) -> SenderPolicy:
    """``{"default": sender | null, "allowed": [sender], "domains": ["acme.example"]}``, every problem listed."""
    problems = Problems()
    if not isinstance(data, dict):
        raise ValidationFailed(
            "the senders must be an object",
            details=[{"field": "", "code": "wrong_type", "message": "expected an object"}],
        )
    for unknown in sorted(set(data) - {"default", "allowed", "domains"}):
        problems.add(unknown, "unknown_field", f"unknown field {unknown!r}")
    default = parse_sender(data["default"], "default", problems, with_reply_to=True) if data.get("default") else None
    allowed_raw = data.get("allowed") or []
    domains_raw = data.get("domains") or []
    if not isinstance(allowed_raw, list) or len(allowed_raw) > MAX_SENDERS:
        problems.add("allowed", "invalid", f"allowed must be a list of at most {MAX_SENDERS} senders")
        allowed_raw = []
    if not isinstance(domains_raw, list) or len(domains_raw) > MAX_DOMAINS:
        problems.add("domains", "invalid", f"domains must be a list of at most {MAX_DOMAINS} domains")
        domains_raw = []
    allowed = [parse_sender(s, f"allowed[{i}]", problems, with_reply_to=True) for i, s in enumerate(allowed_raw)]
    domains = []
    for index, raw in enumerate(domains_raw):
        domain = ascii_domain(raw) if isinstance(raw, str) else None
        if domain is None:
            problems.add(f"domains[{index}]", "invalid", "must be a domain name such as acme.example")
        domains.append(domain)
    if problems.items:
        raise ValidationFailed("the senders are not valid", details=problems.items)
    return SenderPolicy(
        default,
        tuple(s for s in allowed if s is not None),
        tuple(dict.fromkeys(d for d in domains if d is not None)),
    )


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {"site_id": str(row["id"]), **SenderPolicy.from_json(row["senders"]).to_json()}


async def set_senders(pool: db.Pool, site_name: str, policy: SenderPolicy) -> dict[str, Any]:
    row = await db.fetch_one(pool, "set_site_senders", {"site_name": site_name, "senders": Jsonb(policy.to_json())})
    if row is None:
        raise NotFound("no such site")
    return _public(row)


async def senders_by_name(pool: db.Pool, site_name: str) -> dict[str, Any]:
    row = await db.fetch_one(pool, "site_senders_by_name", {"site_name": site_name})
    if row is None:
        raise NotFound("no such site")
    return _public(row)


async def senders_of(pool: db.Pool, site_id: uuid.UUID) -> dict[str, Any]:
    row = await db.fetch_one(pool, "site_senders_by_id", {"id": site_id})
    if row is None:
        raise NotFound("no such site")
    return _public(row)
