"""Email addresses in ASCII form (IDN), display-name quoting, and a site's sender policy."""

from __future__ import annotations

import email.headerregistry
import email.policy
from email.message import EmailMessage

import pytest

from lib.domain.addresses import Sender, SenderPolicy, ascii_email, is_email_address, quoted_display_name


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("ada@example.com", "ada@example.com"),
        ("Ada.Lovelace+inv@Example.COM", "Ada.Lovelace+inv@example.com"),  # the domain is case-free, the local part not
        ("info@bücher.de", "info@xn--bcher-kva.de"),
        ("info@BÜCHER.de", "info@xn--bcher-kva.de"),  # UTS 46 maps case before encoding
        ("kontakt@пример.рф", "kontakt@xn--e1afmkfd.xn--p1ai"),
        ("a@xn--bcher-kva.de", "a@xn--bcher-kva.de"),
    ],
)
def test_addresses_are_kept_in_ascii_form(given: str, stored: str) -> None:
    assert ascii_email(given) == stored


@pytest.mark.parametrize(
    "address",
    [
        "plain",
        "a@b",
        "ä@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a@-x.com",
        "a@exa mple.com",
        "a@☃",
        "@x.de",
    ],
)
def test_what_is_not_an_address(address: str) -> None:
    assert ascii_email(address) is None and not is_email_address(address)


@pytest.mark.parametrize(
    "name", ["Acme Billing", "Acme, Inc.", 'The "Best" Shop', "Back\\slash; and <angle>", "Müller GmbH"]
)
def test_display_names_read_back_as_written(name: str) -> None:
    """What a mail parser reads from ``quoted <address>`` is the name itself: quoting never changes it."""
    header = f"{quoted_display_name(name)} <billing@acme.example>"
    message = EmailMessage(policy=email.policy.default)
    message["From"] = header
    from_header = message["From"]
    assert isinstance(from_header, email.headerregistry.AddressHeader)
    [parsed] = from_header.addresses
    assert (parsed.display_name, parsed.addr_spec) == (name, "billing@acme.example")
    assert quoted_display_name(name).startswith('"') == any(c in name for c in ',;."<\\')


def test_a_policy_resolves_requested_senders() -> None:
    default = Sender("billing@acme.example", "Acme Billing", "accounts@acme.example")
    policy = SenderPolicy(default, (Sender("hr@acme.example", "Acme HR"),), ("news.acme.example",))
    assert policy.resolve(None) == default
    assert policy.resolve(Sender("BILLING@acme.example")) == default  # configured name and Reply-To kept
    assert policy.resolve(Sender("hr@acme.example", "Jane at HR")) == Sender("hr@acme.example", "Jane at HR")
    assert policy.resolve(Sender("anyone@news.acme.example")) == Sender("anyone@news.acme.example")
    assert not policy.allows(Sender("ceo@acme.example"))
    assert not policy.allows(Sender("x@other.example"))
    assert SenderPolicy().resolve(None) is None  # no senders: the global default
    assert not SenderPolicy().allows(Sender("billing@acme.example"))
    assert SenderPolicy.from_json(policy.to_json()) == policy
