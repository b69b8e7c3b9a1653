"""What each channel accepts, in one registry that validation reads.

A new channel is: a label in the ``channel`` ENUM (a migration) and in ``Channel``, one entry here, one entry in
``lib.delivery.channels`` (its provider adapter's settings and default rate), one provider adapter
(``lib/adapters/providers/``), and its worker deployable (``functions/<channel>/__main__.py``, which only names
the channel). A second provider for a channel is an adapter and a change to that delivery entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lib.domain.addresses import ascii_email
from lib.domain.vocabulary import Channel

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def e164_number(value: str) -> str | None:
    return value if _E164.match(value) is not None else None


@dataclass(frozen=True)
class ChannelRules:
    recipient_form: Callable[[str], str | None]  # the recipient as stored and sent, or None if it is not valid
    recipient_code: str  # the validation code of a recipient that is not valid
    recipient_rule: str  # ... and its message
    body_limit: int  # characters
    subject_required: bool
    html_allowed: bool
    sender_allowed: bool  # ``from`` names one of the site's senders
    attachments_allowed: bool
    media_allowed: bool  # ``media``: one image, video, document or audio the provider fetches by URL
    reply_to: bool  # metadata.reply_to is the message's Reply-To address (checked as one)


RULES: dict[Channel, ChannelRules] = {
    Channel.EMAIL: ChannelRules(
        recipient_form=ascii_email,
        recipient_code="invalid_email",
        recipient_rule="recipient must be a valid email address",
        body_limit=256 * 1024,
        subject_required=True,
        html_allowed=True,
        sender_allowed=True,
        attachments_allowed=True,
        media_allowed=False,
        reply_to=True,
    ),
    Channel.WHATSAPP: ChannelRules(
        recipient_form=e164_number,
        recipient_code="invalid_phone",
        recipient_rule="recipient must be an E.164 number such as +14155550123",
        body_limit=4096,  # WhatsApp's own text limit
        subject_required=False,
        html_allowed=False,
        sender_allowed=False,  # a WhatsApp message goes out from its session's number
        attachments_allowed=False,  # WhatsApp media is another shape (a URL the provider fetches)
        media_allowed=True,
        reply_to=False,
    ),
}
