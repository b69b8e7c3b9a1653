"""Building blocks that know nothing of notifications: settings, logging, group commit, token buckets, retry and
circuit-breaker policies. They import nothing of notify."""
