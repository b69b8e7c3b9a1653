"""What the API does, over the adapters: authentication, sites, accepting and reading messages, quotas, replay,
daily metrics. The worker side (``lib.delivery``) never imports these, nor they it."""
