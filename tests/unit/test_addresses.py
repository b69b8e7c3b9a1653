"""Email addresses in ASCII form (IDN), display-name quoting, a site's sender policy; media URLs and signed links."""

from __future__ import annotations

import email.headerregistry
import email.policy
import uuid
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

import pytest

from lib.common.settings import Secret
from lib.domain.addresses import Sender, SenderPolicy, ascii_email, is_email_address, quoted_display_name
from lib.domain.attachments import media_url_problem
from lib.domain.media_links import LINK_TTL_S, link_is_valid, signed_link


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


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://cdn.acme.example/invoice.pdf", True),
        ("https://xn--bcher-kva.example/a.png?x=1", True),
        ("http://cdn.acme.example/a.png", False),
        ("https://user:pw@cdn.acme.example/a.png", False),
        ("https://127.0.0.1/a.png", False),
        ("https://[::1]/a.png", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://localhost/a.png", False),
        ("file:///etc/passwd", False),
        ("https://" + "a" * 2100 + ".example/", False),
    ],
)
def test_a_media_url_is_https_on_a_public_host_name(url: str, ok: bool) -> None:
    assert (media_url_problem(url) is None) == ok


def test_signed_media_links_expire_and_name_one_file() -> None:
    key, file_id, other = Secret("k"), uuid.uuid4(), uuid.uuid4()
    link = signed_link("https://notify.example.com/", key, file_id, now=1000.0)
    query = parse_qs(urlsplit(link).query)
    expires, signature = query["expires"][0], query["signature"][0]
    assert urlsplit(link).path == f"/media/{file_id}" and expires == str(1000 + LINK_TTL_S)
    assert link_is_valid(key, file_id, expires, signature, now=1000.0)
    assert not link_is_valid(key, file_id, expires, signature, now=1000.0 + LINK_TTL_S + 1)  # expired
    assert not link_is_valid(key, other, expires, signature, now=1000.0)  # another file
    assert not link_is_valid(Secret("other"), file_id, expires, signature, now=1000.0)
    assert not link_is_valid(key, file_id, str(int(expires) + 3600), signature, now=1000.0)  # a longer life forged
    assert not link_is_valid(key, file_id, "१२", signature, now=0.0)  # digits only in ASCII
