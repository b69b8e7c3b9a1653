"""The service's own words and rules, pure: the vocabulary (enums mirroring the SQL ones), the notification and
its projections, validation, errors, API keys. Imports only ``lib.common``."""
