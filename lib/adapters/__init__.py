"""The world outside the process: PostgreSQL (pool, named queries, migrations), Kafka, HTTP pieces, the provider
APIs. Imports ``lib.domain`` and ``lib.common``, never a service."""
