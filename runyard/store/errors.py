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
    "is_unavailable",
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
    def of(cls, kind: str, id: str) -> NotFound:
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


# SQLSTATE classes of a lost or refused connection: 08 connection exception, 57P admin or
# crash shutdown / cannot connect now, 53300 too many connections.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


def is_unavailable(exc: BaseException) -> bool:
    """A lost, refused or exhausted database connection (retry later), as opposed to a bad
    statement or bad stored data (a bug). The one classification the API and workers share."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, (DisconnectionError, PoolTimeout)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return True
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain and len(chain) < 10:  # the driver's error hides below
        chain.append(cause)
        cause = getattr(cause, "orig", None) or cause.__cause__
    for error in chain:
        sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
    return False
