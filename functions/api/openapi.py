"""The OpenAPI 3.1 description served at /openapi.json; a test keeps it in step with the routes."""

from __future__ import annotations

from functools import cache
from typing import Any

from lib.adapters.http import MAX_HEAD_BYTES
from lib.domain.attachments import ALLOWED_CONTENT_TYPES, MAX_ATTACHMENTS, MEDIA_KINDS
from lib.domain.vocabulary import CHANNELS, MESSAGE_STATUSES, SITE_STATUSES, MessageStatus
from lib.services.site_metrics import COUNTS
from lib.services.sites import MAX_RATE

ERROR_CODES = {
    400: ["invalid_json", "invalid_content_length", "bad_request"],
    401: ["missing_api_key", "invalid_api_key", "admin_token_required", "invalid_admin_token", "webhook_unsigned"],
    403: [
        "site_suspended",
        "channel_disabled",
        "forbidden",
        "webhook_signature_invalid",
        "webhook_not_configured",
        "override_not_allowed",
    ],
    404: ["not_found"],
    405: ["method_not_allowed"],
    408: ["request_timeout"],
    409: [
        "site_exists",
        "site_managed_elsewhere",
        "idempotency_key_conflict",
        "idempotency_key_in_use",
        "not_cancellable",
        "session_exists",
        "wasender_refused",
    ],
    413: ["payload_too_large"],
    415: ["unsupported_media_type"],
    422: ["validation_failed", "unstorable_message", "recipient_suppressed"],
    429: ["rate_limited", "auth_rate_limited"],
    503: [
        "database_unavailable",
        "kafka_unavailable",
        "server_busy",
        "key_encryption_not_configured",
        "sessions_not_configured",
        "wasender_unavailable",
    ],
}
_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_STR = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), "error codes: " + ", ".join(ERROR_CODES[s])) for s in statuses}


SITE_KEY: list[dict[str, list[str]]] = [{"SiteKey": []}]
ADMIN: list[dict[str, list[str]]] = [{"AdminToken": []}]
_SITE_ERRORS = (401, 403, 429, 503)

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "stable machine-readable code"},
                    "message": {"type": "string"},
                    "details": {"description": "for validation errors: a list of {field, code, message}"},
                },
            }
        },
    },
    "Notification": {
        "type": "object",
        "required": ["channel", "recipient", "body"],
        "additionalProperties": False,
        "properties": {
            "channel": {"enum": list(CHANNELS)},
            "recipient": {
                "type": "string",
                "maxLength": 320,
                "description": "an email address, or an E.164 number (+14155550123) for whatsapp",
            },
            "subject": {"type": "string", "maxLength": 998, "description": "required for email"},
            "body": {"type": "string", "description": "text; at most 262144 characters (email) or 4096 (whatsapp)"},
            "html": {"type": "string", "maxLength": 524288, "description": "email only"},
            "metadata": {"type": "object", "description": "echoed back; at most 8 KiB as JSON"},
            "idempotency_key": {
                "type": "string",
                "maxLength": 255,
                "description": "bulk items only; /send takes the Idempotency-Key header",
            },
            "from": {
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "required": ["email"],
                        "additionalProperties": False,
                        "properties": {"email": {"type": "string"}, "name": {"type": "string", "maxLength": 128}},
                    },
                ],
                "description": "email only: one of the site's senders, by address (422 sender_not_allowed otherwise);"
                " absent: the site's default sender, else the service's",
            },
            "attachments": {
                "type": "array",
                "maxItems": MAX_ATTACHMENTS,
                "items": _ref("AttachmentItem"),
                "description": "email only: files, inline in base64 or uploaded before and named by id; at most"
                " API_ATTACHMENTS_MAX_BYTES decoded together (413 too_large)",
            },
            "transactional": {
                "type": "boolean",
                "description": "send even to a suppressed address (a site the admin allows: suppression_override;"
                " 403 override_not_allowed otherwise)",
            },
            "media": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind"],
                "properties": {
                    "kind": {"enum": list(MEDIA_KINDS)},
                    "url": {"type": "string", "format": "uri", "description": "https, a public host name"},
                    "attachment_id": {"type": "string", "format": "uuid", "description": "an upload, instead of url"},
                    "filename": {"type": "string", "maxLength": 255, "description": "a document's file name"},
                },
                "description": "whatsapp only: one file the provider fetches (an upload is served to it at a signed,"
                " expiring link); the body is its caption",
            },
            "send_at": {
                "type": "string",
                "format": "date-time",
                "description": "RFC 3339 with a time zone: the message is stored SCHEDULED and sent at that time"
                " (at most API_SCHEDULE_HORIZON_DAYS ahead, 422 too_far); a time not in the future sends at once",
            },
        },
    },
    "AttachmentItem": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "filename": {"type": "string", "maxLength": 255},
            "content_type": {"enum": sorted(ALLOWED_CONTENT_TYPES)},
            "content": {"type": "string", "contentEncoding": "base64", "description": "the file, base64"},
            "attachment_id": {"type": "string", "format": "uuid", "description": "an upload's id, instead of content"},
            "content_id": {"type": "string", "maxLength": 100, "description": "an inline image (cid:...)"},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["message_id", "status"],
        "properties": {
            "message_id": {"type": "string", "format": "uuid"},
            "status": {"enum": [MessageStatus.PENDING, MessageStatus.SCHEDULED]},
        },
    },
    "BulkResult": {
        "type": "object",
        "required": ["index", "status"],
        "properties": {
            "index": {"type": "integer"},
            "status": {"enum": ["accepted", "rejected"]},
            "message_id": {"type": "string", "format": "uuid"},
            "replayed": {"type": "boolean"},
            "scheduled": {"type": "boolean", "description": "true: stored SCHEDULED, sent at its send_at"},
            "error": {"$ref": "#/components/schemas/Error/properties/error"},
        },
    },
    "Message": {
        "type": "object",
        "properties": {
            "message_id": {"type": "string", "format": "uuid"},
            "channel": {"enum": list(CHANNELS)},
            "recipient": {"type": "string"},
            "subject": _NULLABLE_STR,
            "status": {"enum": list(MESSAGE_STATUSES)},
            "attempts": {"type": "integer"},
            "last_error": _NULLABLE_STR,
            "failure_code": _NULLABLE_STR,
            "provider_message_id": _NULLABLE_STR,
            "idempotency_key": _NULLABLE_STR,
            "metadata": {"type": "object"},
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "sent_at": {"type": ["string", "null"]},
            "send_at": {"type": ["string", "null"], "description": "when a scheduled message is (or was) due"},
            "sender": {"oneOf": [_ref("Sender"), {"type": "null"}], "description": "who an email goes out as"},
        },
    },
    "Site": {
        "type": "object",
        "properties": {
            "site_id": {"type": "string", "format": "uuid"},
            "site_name": {"type": "string"},
            "site_url": _NULLABLE_STR,
            "status": {"enum": list(SITE_STATUSES)},
            "enabled_channels": {"type": "array", "items": {"enum": list(CHANNELS)}},
            "rate_limit_per_minute": {"type": ["integer", "null"]},
            "key_created_at": _TIMESTAMP,
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "managed_by": {
                "type": ["string", "null"],
                "description": "who manages the site besides the admin API, e.g. the FrappeSite that registered it",
            },
            "suppression_override": {
                "type": "boolean",
                "description": "its sends marked transactional go past its suppression list",
            },
        },
    },
    "SiteWithKey": {
        "allOf": [
            _ref("Site"),
            {
                "type": "object",
                "required": ["api_key"],
                "properties": {"api_key": {"type": "string", "description": "shown only in this response"}},
            },
        ]
    },
    "NewKey": {
        "type": "object",
        "required": ["site_id", "api_key", "key_created_at"],
        "properties": {
            "site_id": {"type": "string"},
            "site_name": {"type": "string", "description": "in the admin route's answer"},
            "api_key": {"type": "string", "description": "shown only in this response"},
            "key_created_at": _TIMESTAMP,
        },
    },
    "Sender": {
        "type": "object",
        "required": ["email"],
        "additionalProperties": False,
        "properties": {
            "email": {"type": "string", "description": "an internationalised domain is kept in its ASCII (IDNA) form"},
            "name": {"type": "string", "maxLength": 128, "description": "display name, one line"},
            "reply_to": {"type": "string"},
        },
    },
    "Senders": {
        "type": "object",
        "properties": {
            "site_id": {"type": "string", "format": "uuid"},
            "default": {"oneOf": [_ref("Sender"), {"type": "null"}]},
            "allowed": {"type": "array", "items": _ref("Sender")},
            "domains": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ProviderAccounts": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "channel": {"enum": list(CHANNELS)},
                        "key_fingerprint": {"type": "string", "description": "SHA-256 of the key, 12 hex digits"},
                        "created_at": _TIMESTAMP,
                        "updated_at": _TIMESTAMP,
                    },
                },
            }
        },
    },
    "WhatsAppSession": {
        "type": "object",
        "properties": {
            "session_id": {"type": "integer"},
            "phone_number": {"type": "string"},
            "status": {"type": "string", "description": "WASender's: NEED_SCAN, connected, disconnected, ..."},
            "qr_code": {"type": ["string", "null"], "description": "connect only: the QR code's text to render"},
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
        },
    },
    "Suppressions": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "site_name": {"type": "string", "description": "the admin's listing only"},
                        "channel": {"enum": list(CHANNELS)},
                        "recipient": {"type": "string"},
                        "reason": {"enum": ["bounce", "spamreport", "unsubscribe"]},
                        "created_at": _TIMESTAMP,
                    },
                },
            }
        },
    },
    "DailyMetrics": {
        "type": "object",
        "properties": {
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "day": {"type": "string", "format": "date"},
                        "channel": {"enum": list(CHANNELS)},
                        **{k: {"type": "integer"} for k in COUNTS},
                    },
                },
            },
        },
    },
}


def _q(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


PATHS: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"}, "alive")}}},
    "/readyz": {
        "get": {
            "summary": "Readiness: PostgreSQL and Kafka reachable",
            "responses": {
                "200": _json({"type": "object"}, "ready"),
                "503": _json({"type": "object"}, "a dependency is down, or the process is stopping (status: draining)"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {}}}},
        }
    },
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _json({"type": "object"}, "OpenAPI")}}},
    "/api/v1/site/register": {
        "post": {
            "summary": "Register a site (admin); the API key is shown once",
            "security": ADMIN,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["site_name"],
                            "properties": {
                                "site_name": {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$"},
                                "site_url": {"type": ["string", "null"], "format": "uri"},
                                "managed_by": {"type": ["string", "null"], "minLength": 1, "maxLength": 512},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_ref("SiteWithKey"), "registered"),
                **_errors(400, 401, 409, 408, 413, 415, 422, 429, 503),
            },
        }
    },
    "/api/v1/site/rotate-key": {
        "post": {
            "summary": "Replace the caller's key; the old one stops working",
            "description": "Other API processes may accept the old key for up to AUTH_CACHE_TTL_SECONDS. A site may"
            " rotate its own key at most KEY_ROTATIONS_PER_HOUR times an hour (429 rate_limited).",
            "security": SITE_KEY,
            "responses": {
                "200": _json(_ref("NewKey"), "new key"),
                **_errors(*_SITE_ERRORS),
            },
        }
    },
    "/api/v1/site/me": {
        "get": {
            "summary": "The caller's site",
            "security": SITE_KEY,
            "responses": {"200": _json(_ref("Site"), "the site"), **_errors(*_SITE_ERRORS)},
        }
    },
    "/api/v1/site/senders": {
        "get": {
            "summary": "The caller's senders",
            "security": SITE_KEY,
            "responses": {"200": _json(_ref("Senders"), "the senders"), **_errors(*_SITE_ERRORS)},
        }
    },
    "/api/v1/site/provider-accounts": {
        "get": {
            "summary": "The caller's own provider accounts (fingerprints, never keys)",
            "security": SITE_KEY,
            "responses": {"200": _json(_ref("ProviderAccounts"), "accounts"), **_errors(*_SITE_ERRORS)},
        }
    },
    "/api/v1/site/whatsapp-session": {
        "get": {
            "summary": "The caller's own WhatsApp number, as last seen",
            "security": SITE_KEY,
            "responses": {"200": _json(_ref("WhatsAppSession"), "the session"), **_errors(*_SITE_ERRORS, 404)},
        }
    },
    "/api/v1/admin/sites": {
        "get": {
            "summary": "Every site (admin)",
            "security": ADMIN,
            "responses": {
                "200": _json(
                    {"type": "object", "properties": {"items": {"type": "array", "items": _ref("Site")}}}, "sites"
                ),
                **_errors(401, 429, 503),
            },
        }
    },
    "/api/v1/admin/sites/{site_name}": {
        "parameters": [{"name": "site_name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {
            "summary": "One site (admin)",
            "security": ADMIN,
            "responses": {"200": _json(_ref("Site"), "the site"), **_errors(401, 404, 422, 429, 503)},
        },
        "patch": {
            "summary": "Suspend, reactivate or deactivate a site, or change its channels or rate limit (admin)",
            "security": ADMIN,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "status": {"enum": list(SITE_STATUSES)},
                                "site_url": {"type": ["string", "null"]},
                                "enabled_channels": {"type": "array", "items": {"enum": list(CHANNELS)}},
                                "rate_limit_per_minute": {
                                    "type": ["integer", "null"],
                                    "minimum": 1,
                                    "maximum": MAX_RATE,
                                },
                                "suppression_override": {
                                    "type": "boolean",
                                    "description": "let the site's transactional sends past its suppression list",
                                },
                                "managed_by": {
                                    "type": ["string", "null"],
                                    "maxLength": 512,
                                    "description": "claim (or with null release) the site; a site managed by "
                                    "another can be claimed only once it is deactivated (409 site_managed_elsewhere)",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_ref("Site"), "updated"),
                **_errors(400, 401, 404, 409, 408, 413, 415, 422, 429, 503),
            },
        },
    },
    "/api/v1/admin/sites/{site_name}/rotate-key": {
        "parameters": [{"name": "site_name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": {
            "summary": "Replace a site's key (admin); the new key is shown once, the old one stops working",
            "security": ADMIN,
            "responses": {
                "200": _json(_ref("NewKey"), "new key"),
                **_errors(401, 404, 422, 429, 503),
            },
        },
    },
    "/api/v1/admin/sites/{site_name}/senders": {
        "parameters": [{"name": "site_name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {
            "summary": "A site's senders (admin)",
            "security": ADMIN,
            "responses": {"200": _json(_ref("Senders"), "the senders"), **_errors(401, 404, 422, 429, 503)},
        },
        "put": {
            "summary": "Replace a site's senders: its default, the addresses it may name in from, its domains (admin)",
            "description": "Any address at one of the domains may be named in from. Without a default the service's"
            " SENDGRID_FROM stays the site's default.",
            "security": ADMIN,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "default": {"oneOf": [_ref("Sender"), {"type": "null"}]},
                                "allowed": {"type": "array", "maxItems": 50, "items": _ref("Sender")},
                                "domains": {"type": "array", "maxItems": 20, "items": {"type": "string"}},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_ref("Senders"), "replaced"),
                **_errors(400, 401, 404, 408, 413, 415, 422, 429, 503),
            },
        },
    },
    "/api/v1/admin/sites/{site_name}/provider-accounts": {
        "parameters": [{"name": "site_name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {
            "summary": "A site's own provider accounts, by channel (admin); never their keys",
            "security": ADMIN,
            "responses": {"200": _json(_ref("ProviderAccounts"), "accounts"), **_errors(401, 404, 422, 429, 503)},
        },
    },
    "/api/v1/admin/sites/{site_name}/provider-accounts/{channel}": {
        "parameters": [
            {"name": "site_name", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "channel", "in": "path", "required": True, "schema": {"enum": list(CHANNELS)}},
        ],
        "put": {
            "summary": "Give a site its own provider account on a channel: its SendGrid or WASender API key (admin)",
            "description": "The key is sealed before it is stored (NOTIFY_KEY_ENCRYPTION_KEYS; 503"
            " key_encryption_not_configured without one) and never returned or logged; the answer names its"
            " fingerprint. The channel's worker sends the site's messages through it from then on.",
            "security": ADMIN,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["api_key"],
                            "additionalProperties": False,
                            "properties": {"api_key": {"type": "string", "minLength": 8, "maxLength": 512}},
                        }
                    }
                },
            },
            "responses": {
                "200": _json({"type": "object"}, "stored (channel, key_fingerprint, created_at, updated_at)"),
                **_errors(400, 401, 404, 408, 413, 415, 422, 429, 503),
            },
        },
        "delete": {
            "summary": "Back to the channel's global account (admin)",
            "security": ADMIN,
            "responses": {"204": {"description": "removed"}, **_errors(401, 404, 422, 429, 503)},
        },
    },
    "/api/v1/admin/sites/{site_name}/whatsapp-session": {
        "parameters": [{"name": "site_name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": {
            "summary": "Give a site a WhatsApp number of its own: a WASender session (admin)",
            "description": "Its API key becomes the site's whatsapp provider account (sealed, never shown).",
            "security": ADMIN,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["phone_number"],
                            "properties": {
                                "phone_number": {"type": "string", "description": "E.164"},
                                "name": {"type": "string", "maxLength": 64},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(_ref("WhatsAppSession"), "created"),
                **_errors(400, 401, 404, 408, 409, 413, 415, 422, 429, 503),
            },
        },
        "get": {
            "summary": "The session's status, as WASender tells it now (admin)",
            "security": ADMIN,
            "responses": {
                "200": _json(_ref("WhatsAppSession"), "the session"),
                **_errors(401, 404, 409, 422, 429, 503),
            },
        },
        "delete": {
            "summary": "Delete the session at WASender and here; the site sends from the global number again (admin)",
            "security": ADMIN,
            "responses": {"204": {"description": "deleted"}, **_errors(401, 404, 409, 422, 429, 503)},
        },
    },
    "/api/v1/admin/sites/{site_name}/whatsapp-session/connect": {
        "parameters": [{"name": "site_name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "post": {
            "summary": "Start pairing the session's phone: the QR code's text to render and scan (admin)",
            "security": ADMIN,
            "responses": {"200": _json(_ref("WhatsAppSession"), "pairing"), **_errors(401, 404, 409, 422, 429, 503)},
        },
    },
    "/api/v1/admin/replay": {
        "post": {
            "summary": "Re-enqueue dead-lettered (FAILED) messages: one id, a site's, or all since a time (admin)",
            "description": "A replayed message keeps its id and history; attempt_errors gains a 'replayed' entry.",
            "security": ADMIN,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "description": "at least one of message_id, site_name, since",
                            "properties": {
                                "message_id": {"type": "string", "format": "uuid"},
                                "site_name": {"type": "string"},
                                "since": {"type": "string", "format": "date-time"},
                                "channel": {"enum": list(CHANNELS)},
                            },
                        }
                    }
                },
            },
            "responses": {
                "202": _json(
                    {
                        "type": "object",
                        "properties": {
                            "replayed": {"type": "integer"},
                            "message_ids": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "re-enqueued",
                ),
                **_errors(400, 401, 408, 413, 415, 422, 429, 503),
            },
        }
    },
    "/api/v1/notifications/send": {
        "post": {
            "summary": "Accept one notification: stored, published to Kafka, then 202",
            "description": "413 payload_too_large also when the message's Kafka record (UTF-8) would exceed the queue's"
            " limit (the producer's message.max.bytes or the topics' max.message.bytes, the smaller); details name the"
            " largest field. Nothing is stored then, and no quota is charged.",
            "security": SITE_KEY,
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "same key and body from the same site: the same message_id, nothing new",
                }
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Notification")}}},
            "responses": {
                "202": _json(_ref("Accepted"), "accepted (header Idempotent-Replayed: true on a replay)"),
                **_errors(400, 401, 403, 409, 408, 413, 415, 422, 429, 503),
            },
        }
    },
    "/api/v1/notifications/bulk": {
        "post": {
            "summary": "Accept up to 1000 notifications, each validated on its own",
            "description": "The site's rate limit is charged for valid items only: as many as it has room for are"
            " accepted, the other valid items are rejected one by one with rate_limited; 429 only when none fits.",
            "security": SITE_KEY,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["items"],
                            "properties": {"items": {"type": "array", "maxItems": 1000, "items": _ref("Notification")}},
                        }
                    }
                },
            },
            "responses": {
                "202": _json(
                    {
                        "type": "object",
                        "properties": {
                            "accepted": {"type": "integer"},
                            "rejected": {"type": "integer"},
                            "results": {"type": "array", "items": _ref("BulkResult")},
                        },
                    },
                    "one result per item",
                ),
                **_errors(400, 401, 403, 408, 413, 415, 422, 429, 503),
            },
        }
    },
    "/api/v1/notifications": {
        "get": {
            "summary": "The caller's messages, newest first",
            "security": SITE_KEY,
            "parameters": [
                _q("status", "filter by status", {"enum": list(MESSAGE_STATUSES)}),
                _q("channel", "email or whatsapp", {"enum": list(CHANNELS)}),
                _q("since", "ISO 8601 timestamp with zone"),
                _q("limit", "1-200, default 50", {"type": "integer"}),
                _q("cursor", "next_cursor of the previous page"),
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": _ref("Message")},
                            "next_cursor": _NULLABLE_STR,
                        },
                    },
                    "a page",
                ),
                **_errors(*_SITE_ERRORS, 422),
            },
        }
    },
    "/api/v1/notifications/{message_id}": {
        "get": {
            "summary": "One of the caller's messages (another site's is a 404)",
            "security": SITE_KEY,
            "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json(_ref("Message"), "the message"), **_errors(*_SITE_ERRORS, 404)},
        }
    },
    "/api/v1/attachments": {
        "post": {
            "summary": "Upload a file once, to name it by id from many sends (a newsletter's PDF)",
            "description": "Kept ATTACHMENT_RETENTION_DAYS after the last message using it is final (or after the"
            " upload, if none does).",
            "security": SITE_KEY,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["filename", "content_type", "content"],
                            "additionalProperties": False,
                            "properties": {
                                "filename": {"type": "string", "maxLength": 255},
                                "content_type": {"enum": sorted(ALLOWED_CONTENT_TYPES)},
                                "content": {"type": "string", "contentEncoding": "base64"},
                                "content_id": {"type": "string", "maxLength": 100},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": _json(
                    {
                        "type": "object",
                        "properties": {
                            "attachment_id": {"type": "string", "format": "uuid"},
                            "filename": {"type": "string"},
                            "content_type": {"type": "string"},
                            "size": {"type": "integer"},
                            "sha256": {"type": "string"},
                            "created_at": _TIMESTAMP,
                        },
                    },
                    "stored",
                ),
                **_errors(*_SITE_ERRORS, 400, 408, 413, 415, 422),
            },
        }
    },
    "/media/{attachment_id}": {
        "get": {
            "summary": "An uploaded file, at the signed link a provider fetches WhatsApp media from",
            "description": "No key: the signature (HMAC-SHA256 under NOTIFY_MEDIA_SIGNING_KEY) is the credential. A"
            " wrong or expired link is a 403 that says nothing more.",
            "parameters": [
                {"name": "attachment_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "signature", "in": "query", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "the file, with its content type", "content": {"*/*": {}}},
                **_errors(403, 404, 503),
            },
        }
    },
    "/api/v1/notifications/{message_id}/events": {
        "get": {
            "summary": "One of the caller's messages, as a timeline: accepted, attempts, sent, the provider's events",
            "security": SITE_KEY,
            "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "message_id": {"type": "string"},
                            "status": {"enum": list(MESSAGE_STATUSES)},
                            "events": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"at": {"type": ["string", "null"]}, "event": {"type": "string"}},
                                },
                            },
                        },
                    },
                    "oldest first",
                ),
                **_errors(*_SITE_ERRORS, 404),
            },
        }
    },
    "/webhooks/wasender": {
        "post": {
            "summary": "WASender's webhook: a message's status updates (sent, delivered, read, played, error)",
            "description": "Its X-Webhook-Signature must be WASENDER_WEBHOOK_SECRET (WASender's scheme: the secret"
            " itself). Each update is stored once and applied off the request path.",
            "parameters": [
                {"name": "X-Webhook-Signature", "in": "header", "required": True, "schema": {"type": "string"}}
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": _json({"type": "object"}, "received"), **_errors(400, 401, 403, 408, 413, 415, 503)},
        }
    },
    "/api/v1/suppressions": {
        "get": {
            "summary": "The caller's suppression list: addresses its messages are not sent to on a channel",
            "security": SITE_KEY,
            "parameters": [
                _q("channel", "email or whatsapp", {"enum": list(CHANNELS)}),
                _q("limit", "1-1000, default 100", {"type": "integer"}),
            ],
            "responses": {"200": _json(_ref("Suppressions"), "newest first"), **_errors(*_SITE_ERRORS, 422)},
        }
    },
    "/api/v1/suppressions/{channel}/{recipient}": {
        "delete": {
            "summary": "Send to this address again (the site knows it is good now)",
            "security": SITE_KEY,
            "parameters": [
                {"name": "channel", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "recipient", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "responses": {"204": {"description": "removed"}, **_errors(*_SITE_ERRORS, 404)},
        }
    },
    "/api/v1/admin/suppressions": {
        "get": {
            "summary": "Every site's suppressions, or one site's (admin)",
            "security": ADMIN,
            "parameters": [
                _q("site_name", "one site"),
                _q("channel", "email or whatsapp", {"enum": list(CHANNELS)}),
                _q("limit", "1-1000, default 100", {"type": "integer"}),
            ],
            "responses": {"200": _json(_ref("Suppressions"), "newest first"), **_errors(401, 422, 429, 503)},
        }
    },
    "/webhooks/sendgrid": {
        "post": {
            "summary": "SendGrid's Event Webhook (signed): delivered, bounce, dropped and the engagement events",
            "description": "Verified with SENDGRID_WEBHOOK_PUBLIC_KEY_BASE64 (ECDSA over the timestamp header and the"
            " raw body; at most WEBHOOK_MAX_AGE_SECONDS old) before anything is read; stored once per sg_event_id and"
            " applied off the request path.",
            "parameters": [
                {
                    "name": "X-Twilio-Email-Event-Webhook-Signature",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {
                    "name": "X-Twilio-Email-Event-Webhook-Timestamp",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
            },
            "responses": {"204": {"description": "stored"}, **_errors(400, 401, 403, 408, 413, 415, 503)},
        }
    },
    "/api/v1/notifications/{message_id}/cancel": {
        "post": {
            "summary": "Cancel one of the caller's messages that no worker has taken yet (SCHEDULED or PENDING)",
            "description": "The message ends CANCELLED and is never sent. 409 not_cancellable when it is taken, sent"
            " or final already (details name its status); another site's message is a 404.",
            "security": SITE_KEY,
            "parameters": [{"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json(_ref("Message"), "cancelled"), **_errors(*_SITE_ERRORS, 404, 409)},
        }
    },
    "/api/v1/metrics": {
        "get": {
            "summary": "The caller's daily metrics (UTC days; default the last 30)",
            "security": SITE_KEY,
            "parameters": [
                _q("from", "YYYY-MM-DD"),
                _q("to", "YYYY-MM-DD"),
                _q("channel", "email or whatsapp", {"enum": list(CHANNELS)}),
            ],
            "responses": {"200": _json(_ref("DailyMetrics"), "per day and channel"), **_errors(*_SITE_ERRORS, 422)},
        }
    },
}


@cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notify",
            "version": "1.0.0",
            "description": "Multi-tenant notification gateway: email (SendGrid) and WhatsApp (WASender). "
            'Every error is {"error": {"code", "message", "details"}}; so are the two the server itself gives before'
            " any route: 408 request_timeout (a request head not whole within API_HEAD_TIMEOUT_SECONDS) and 431"
            f" headers_too_large (request line and headers over {MAX_HEAD_BYTES // 1024} KiB).",
        },
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "SiteKey": {"type": "apiKey", "in": "header", "name": "X-Site-Key"},
                "AdminToken": {"type": "http", "scheme": "bearer"},
            },
        },
    }
