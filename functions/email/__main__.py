"""``python -m functions.email``: the email worker (the same command runs in the image); its settings and provider
are the channel's entry in ``lib.delivery.channels``."""

from __future__ import annotations

from lib.delivery.worker import main
from lib.domain.vocabulary import Channel

if __name__ == "__main__":
    main(Channel.EMAIL)
