"""Email addresses as notify stores and sends them, and the sender a site's email goes out as.

An address is kept in its ASCII form: an internationalised domain (``bücher.de``) becomes its IDNA A-label
(``xn--bcher-kva.de``, UTS 46 mapping as browsers and mail clients do) and the domain is lower-cased, so one
mailbox has one spelling in the log, the suppression of later issues and the provider call. Local parts stay
ASCII (SendGrid takes no SMTPUTF8 mailbox names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import idna

_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$")
NAME_LIMIT = 128
# RFC 5322 "specials": a display name holding one is sent as a quoted-string. SendGrid splits an unquoted name
# at a comma or semicolon and drops the message (its documented limitation).
_SPECIALS = frozenset('()<>[]:;@\\,."')


def ascii_email(value: str) -> str | None:
    """The address with its domain in ASCII and lower case, or None if it is not an address."""
    local, at, domain = value.rpartition("@")
    if not at or not _LOCAL.match(local) or ".." in local or local.startswith(".") or local.endswith("."):
        return None
    ascii_form = ascii_domain(domain)
    return f"{local}@{ascii_form}" if ascii_form is not None else None


def ascii_domain(domain: str) -> str | None:
    """A mail domain as its lower-case IDNA A-labels, or None if it is not one."""
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    domain = domain.lower()
    return domain if len(domain) <= 253 and _DOMAIN.match(domain) else None


def is_email_address(value: str) -> bool:
    return ascii_email(value) is not None


def email_domain(address: str) -> str:
    return address.rpartition("@")[2]


def quoted_display_name(name: str) -> str:
    """The display name as a header may carry it: as it is, or a quoted-string when it holds a special."""
    if not any(ch in _SPECIALS for ch in name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True)
class Sender:
    """Who an email is from: an address (ASCII form), a display name, and the Reply-To it brings."""

    email: str
    name: str | None = None
    reply_to: str | None = None

    def to_json(self) -> dict[str, str]:
        found = {"email": self.email, "name": self.name, "reply_to": self.reply_to}
        return {k: v for k, v in found.items() if v is not None}

    @classmethod
    def from_json(cls, data: Any) -> Sender | None:
        """A sender as stored (a row's or a record's ``sender``); None for none."""
        if not isinstance(data, dict) or not isinstance(data.get("email"), str):
            return None
        return cls(data["email"], data.get("name"), data.get("reply_to"))


@dataclass(frozen=True)
class SenderPolicy:
    """A site's senders: its default, the other addresses it may name in ``from``, and whole domains it owns."""

    default: Sender | None = None
    allowed: tuple[Sender, ...] = ()
    domains: tuple[str, ...] = ()

    def resolve(self, requested: Sender | None) -> Sender | None:
        """The sender a message goes out as: the requested one if the site may use it (its configured name and
        Reply-To filling what the request leaves out), the site's default when none is requested, and None
        (the global default) for a site without senders. A sender the site may not use: None from here, and
        ``allows`` says so first."""
        if requested is None:
            return self.default
        for known in (self.default, *self.allowed):
            if known is not None and known.email.lower() == requested.email.lower():
                return replace(known, name=requested.name or known.name)
        return requested if email_domain(requested.email) in self.domains else None

    def allows(self, requested: Sender) -> bool:
        return self.resolve(requested) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "default": self.default.to_json() if self.default else None,
            "allowed": [s.to_json() for s in self.allowed],
            "domains": list(self.domains),
        }

    @classmethod
    def from_json(cls, data: Any) -> SenderPolicy:
        if not isinstance(data, dict):
            return cls()
        allowed = (Sender.from_json(s) for s in data.get("allowed") or [])
        return cls(
            Sender.from_json(data.get("default")),
            tuple(s for s in allowed if s is not None),
            tuple(d for d in data.get("domains") or [] if isinstance(d, str)),
        )
