"""Shared code of notify's deployables: services, adapters to PostgreSQL and Kafka, settings helpers."""
