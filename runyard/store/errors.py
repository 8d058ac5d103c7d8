"""Domain errors raised by the store, the worker and request validation.

The server maps each class to one HTTP status in one place (`runyard.server.errors`).
"""

from __future__ import annotations

__all__ = [
    "Conflict",
    "DomainError",
    "IdempotencyConflict",
    "InvalidCursor",
    "InvalidInput",
    "InvalidTransition",
    "LeaseLost",
    "NotFound",
    "PayloadTooLarge",
]


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotFound(DomainError):
    code = "not_found"

    @classmethod
    def of(cls, kind: str, id: str) -> "NotFound":
        return cls(f"{kind} {id} not found")


class Conflict(DomainError):
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class InvalidInput(DomainError):
    code = "validation_error"


class InvalidCursor(DomainError):
    code = "invalid_cursor"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class LeaseLost(Exception):
    """A worker's write was fenced off: another attempt owns the run now.

    Deliberately not a DomainError (nor caught by agent code's `except Exception` paths that
    look for DomainError): the worker must stop touching the run at once.
    """
