"""The project's exception hierarchy; the API maps each class to one status code."""

from __future__ import annotations


class RidePulseError(Exception):
    """Base of every error the platform raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidInput(RidePulseError):
    code, status = "invalid_input", 422


class OutsideServiceArea(InvalidInput):
    code = "outside_service_area"


class NotFound(RidePulseError):
    code, status = "not_found", 404


class Conflict(RidePulseError):
    code, status = "conflict", 409


class Unauthorized(RidePulseError):
    code, status = "unauthorized", 401


class Forbidden(RidePulseError):
    code, status = "forbidden", 403


class Overloaded(RidePulseError):
    """Come back later: the answer carries `Retry-After` (whole seconds)."""

    code, status = "overloaded", 429

    def __init__(self, detail: str, *, field: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(detail, field=field)
        self.retry_after_s = retry_after_s


class RateLimited(Overloaded):
    """This caller has used its allowance (per-rider limits): 429 with `Retry-After`."""

    code = "rate_limited"


class NotDurable(RidePulseError):
    """The write is in memory but no fsync confirmed it in time: retry (with the same
    Idempotency-Key) after `Retry-After` seconds."""

    code, status = "not_durable", 503

    def __init__(self, detail: str, *, field: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(detail, field=field)
        self.retry_after_s = retry_after_s


class InvalidEvent(RidePulseError):
    """A stream entry that cannot be decoded or fails its contract: it goes to dead letters."""

    code = "invalid_event"


class CannotStart(RidePulseError):
    """A service cannot begin its work (a port it must serve on is taken)."""


class RedisUnavailable(RidePulseError):
    code, status = "redis_unavailable", 503


class PayloadTooLarge(RidePulseError):
    code, status = "payload_too_large", 413


class UnsupportedEncoding(RidePulseError):
    """A body in a Content-Encoding the API does not decode (gzip, br): 415, whose answer says
    `Accept-Encoding: identity` (RFC 7694)."""

    code, status = "unsupported_content_encoding", 415


HTTP_ERROR_CODES = {
    400: "malformed_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    431: "request_head_too_large",
}


def http_error_code(status: int) -> str:
    """The `error` of an answer given before any route runs (by the server: a malformed, slow
    or oversized head; by the framework: no such route, a method the route lacks), the same in
    every service."""
    return HTTP_ERROR_CODES.get(status, "http_error")
